"""The training loop: numerics against float64 references, logs, eval, data paths, bad input."""

from __future__ import annotations

import csv
import os

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from helpers_trainer import (
    MLP,
    classification_data,
    linear_model,
    mse,
    one_cycle_reference,
    read_jsonl,
    regression_data,
    sgd_linear_reference,
    train_rows,
    xent,
)

from trainers import ArrayBatches, Trainer, accuracy

mlx_schedules = pytest.importorskip("mlx_schedules")


def _one_cycle_sgd(max_lr: float, total: int) -> optim.SGD:
    opt = optim.SGD(learning_rate=mlx_schedules.one_cycle(max_lr, total), momentum=0.9)
    return mlx_schedules.schedule_hyperparameters(
        opt, momentum=mlx_schedules.one_cycle_momentum(total)
    )


@pytest.mark.parametrize("clip_norm", [None, 0.5])
def test_matches_float64_sgd_with_one_cycle_and_momentum(tmp_path, clip_norm):
    total, max_lr = 20, 0.1
    x, y = regression_data(48, 4, 2)
    data = ArrayBatches((x, y), 8, seed=3)
    model = linear_model(4, 2)
    w0, b0 = np.array(model.weight), np.array(model.bias)
    trainer = Trainer(model, mse, _one_cycle_sgd(max_lr, total), data, run_dir=tmp_path,
                      max_steps=total, log_every=6, report_every=0, clip_norm=clip_norm,
                      grad_norm=True)
    trainer.fit()

    batches = [b for e in range(4) for b in data.epoch(e)][:total]
    schedule = [one_cycle_reference(t, max_lr, total) for t in range(total)]
    lrs, momenta = [s[0] for s in schedule], [s[1] for s in schedule]
    w, b, losses, norms = sgd_linear_reference(w0, b0, batches, lrs, momenta, clip_norm)
    np.testing.assert_allclose(np.array(model.weight), w, rtol=2e-4, atol=1e-5)
    np.testing.assert_allclose(np.array(model.bias), b, rtol=2e-4, atol=1e-5)

    rows = train_rows(tmp_path / "log.jsonl")
    assert [r["step"] for r in rows] == list(range(total))
    assert [r["epoch"] for r in rows] == [t // 6 for t in range(total)]  # 6 batches per epoch
    np.testing.assert_allclose([r["loss"] for r in rows], losses, rtol=1e-5)
    np.testing.assert_allclose([r["grad_norm"] for r in rows], norms, rtol=1e-5)
    np.testing.assert_allclose([r["learning_rate"] for r in rows], lrs, rtol=1e-5)
    np.testing.assert_allclose([r["momentum"] for r in rows], momenta, rtol=1e-6)


def test_csv_and_jsonl_hold_the_same_rows_with_documented_columns(tmp_path):
    x, y = classification_data(64)
    opt = optim.Adam(learning_rate=optim.cosine_decay(0.01, 10))
    trainer = Trainer(MLP(), xent, opt, ArrayBatches((x, y), 16), run_dir=tmp_path,
                      max_steps=10, eval_data=ArrayBatches((x, y), 32, shuffle=False),
                      metrics={"accuracy": accuracy}, eval_every=5, report_every=0)
    trainer.fit()
    jsonl = read_jsonl(tmp_path / "log.jsonl")
    with open(tmp_path / "log.csv", newline="") as f:
        table = list(csv.DictReader(f))
    # the default (grad_norm=False) logs no gradient norm column
    assert list(table[0]) == ["kind", "step", "epoch", "loss", "learning_rate",
                              "eval_loss", "eval_accuracy"]
    assert [(r["kind"], r["step"]) for r in jsonl] == (
        [("train", t) for t in range(5)] + [("eval", 5)]
        + [("train", t) for t in range(5, 10)] + [("eval", 10)]
    )
    assert len(table) == len(jsonl)
    for j, c in zip(jsonl, table, strict=True):
        for key, value in c.items():
            if value == "":
                assert key not in j
            elif key == "kind":
                assert j[key] == value
            else:
                assert float(value) == j[key]  # repr round-trips exactly
    # cosine decay, closed form: 0.5 * 0.01 * (1 + cos(pi t / 10))
    lrs = [r["learning_rate"] for r in jsonl if r["kind"] == "train"]
    np.testing.assert_allclose(lrs, [0.005 * (1 + np.cos(np.pi * t / 10)) for t in range(10)],
                               rtol=1e-6, atol=1e-9)


def test_eval_metrics_match_direct_computation(tmp_path):
    x, y = classification_data(100)
    model = MLP()
    trainer = Trainer(model, xent, optim.SGD(learning_rate=0.2), ArrayBatches((x, y), 20),
                      run_dir=tmp_path, max_steps=8, report_every=0,
                      eval_data=ArrayBatches((x, y), 30, shuffle=False, drop_last=False),
                      metrics={"accuracy": accuracy})
    result = trainer.fit()
    logits = np.array(model(mx.array(x)))
    expected_acc = np.mean(np.argmax(logits, -1) == y)
    shifted = logits - logits.max(-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    expected_loss = -np.mean(logp[np.arange(len(y)), y])
    # the last eval batch holds 10 rows, not 30: the mean must be weighted by batch size
    assert result["eval_accuracy"] == pytest.approx(expected_acc, abs=1e-6)
    assert result["eval_loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert read_jsonl(tmp_path / "log.jsonl")[-1]["eval_accuracy"] == result["eval_accuracy"]


def test_rows_are_fetched_in_blocks_not_per_step(tmp_path):
    seen = []
    x, y = regression_data(64, 4, 2)

    class Spy:
        trainer = None

        def __call__(self, info):
            if info["event"] == "train":
                seen.append((info["step"], self.trainer.step))

    spy = Spy()
    spy.trainer = Trainer(linear_model(4, 2), mse, optim.SGD(learning_rate=0.01),
                          ArrayBatches((x, y), 8), run_dir=tmp_path, max_steps=10,
                          log_every=4, report_every=0, callbacks=[spy])
    spy.trainer.fit()
    # rows of steps 0-3 arrive together once 4 updates are done, etc.; the tail at the end
    assert seen == [(t, min(10, (t // 4 + 1) * 4)) for t in range(10)]


def test_gradient_accumulation_equals_the_large_batch(tmp_path):
    x, y = regression_data(64, 4, 2)
    results = []
    for accum, batch in ((1, 16), (4, 4)):
        model = linear_model(4, 2, seed=1)
        opt = optim.SGD(learning_rate=optim.linear_schedule(0.1, 0.01, 6), momentum=0.5)
        Trainer(model, mse, opt, ArrayBatches((x, y), batch, shuffle=False),
                run_dir=tmp_path / f"a{accum}", max_steps=6, grad_accum=accum,
                report_every=0).fit()
        results.append((np.array(model.weight), train_rows(tmp_path / f"a{accum}/log.jsonl")))
        assert opt.state["step"].item() == 6  # one schedule step per update
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([r["loss"] for r in results[0][1]],
                               [r["loss"] for r in results[1][1]], rtol=1e-5)
    assert [r["learning_rate"] for r in results[0][1]] == [r["learning_rate"]
                                                         for r in results[1][1]]


def test_epochs_with_dict_batches_mlx_data_buffer_and_stream(tmp_path):
    dx = pytest.importorskip("mlx.data")
    x, y = regression_data(32, 4, 2)
    samples = [{"x": x[i], "y": y[i]} for i in range(32)]

    def loss(model, x, y):
        return mse(model, x, y)

    weights = {}
    sources = {
        "dict": ArrayBatches({"x": x, "y": y}, 8, shuffle=False),
        "buffer_of_samples": ArrayBatches(dx.buffer_from_vector(samples), 8, shuffle=False),
        "buffer_of_batches": dx.buffer_from_vector(samples).batch(8),
        "stream": dx.buffer_from_vector(samples).to_stream().batch(8),
    }
    for name, data in sources.items():
        model = linear_model(4, 2, seed=2)
        result = Trainer(model, loss, optim.SGD(learning_rate=0.05), data,
                         run_dir=tmp_path / name, epochs=3, report_every=0).fit()
        assert result["step"] == 12, name  # 3 epochs x 4 batches, also for the length-less stream
        assert result["epoch"] == 2
        weights[name] = np.array(model.weight)
    for name in sources:
        np.testing.assert_array_equal(weights[name], weights["dict"], err_msg=name)


def test_console_report_shows_loss_rate_speed_and_memory(tmp_path):
    import io

    out = io.StringIO()
    x, y = regression_data(32, 4, 2)
    Trainer(linear_model(4, 2), mse, optim.SGD(learning_rate=0.01), ArrayBatches((x, y), 8),
            run_dir=tmp_path, max_steps=6, report_every=3, stream=out).fit()
    lines = out.getvalue().splitlines()
    assert [line.split(" |")[0] for line in lines] == ["step 3/6", "step 6/6"]
    rows = train_rows(tmp_path / "log.jsonl")
    assert f"loss {rows[5]['loss']:.4f}" in lines[1]
    assert f"lr {rows[5]['learning_rate']:.3e}" in lines[1]
    assert "steps/s" in lines[1] and "peak mem" in lines[1]


# ---------------------------------------------------------------------------- bad input
def _trainer(tmp_path, data, **kwargs):
    kwargs.setdefault("max_steps", 4)
    kwargs.setdefault("report_every", 0)
    return Trainer(linear_model(4, 2), mse, optim.SGD(learning_rate=0.01), data,
                   run_dir=tmp_path / "run", **kwargs)


def test_wrong_batch_shape_names_the_step_and_shapes_and_keeps_the_log(tmp_path):
    x, y = regression_data(16, 4, 2)
    batches = [(x[:4], y[:4]), (x[4:8], y[4:8]), (np.ones((4, 5), np.float32), y[:4])]
    with pytest.raises(ValueError, match=r"step 2: .*\(4, 5\)"):
        _trainer(tmp_path, batches, max_steps=3).fit()
    assert [r["step"] for r in train_rows(tmp_path / "run/log.jsonl")] == [0, 1]


def test_inconsistent_batch_rows_are_rejected(tmp_path):
    x, y = regression_data(16, 4, 2)
    with pytest.raises(ValueError, match="leading"):
        _trainer(tmp_path, [(x[:4], y[:3])]).fit()


def test_bad_data_arguments(tmp_path):
    x, y = regression_data(16, 4, 2)
    with pytest.raises(ValueError, match="train_data is missing"):
        _trainer(tmp_path, None)
    with pytest.raises(TypeError, match="ArrayBatches"):
        _trainer(tmp_path, (x, y))
    with pytest.raises(TypeError, match="ArrayBatches"):
        _trainer(tmp_path, {"x": x})
    with pytest.raises(ValueError, match="run length"):
        _trainer(tmp_path, [(x, y)], max_steps=None)
    with pytest.raises(ValueError, match="eval_data is missing"):
        _trainer(tmp_path, [(x, y)], eval_every=2)
    with pytest.raises(TypeError, match="mlx.nn.Module"):
        Trainer(lambda v: v, mse, optim.SGD(learning_rate=0.1), [(x, y)], run_dir=tmp_path,
                max_steps=1)
    with pytest.raises(ValueError, match="no batch of 32"):
        ArrayBatches((x, y), 32)


def test_one_shot_iterator_cannot_give_a_second_epoch(tmp_path):
    x, y = regression_data(16, 4, 2)
    with pytest.raises(ValueError, match="one-shot iterator"):
        _trainer(tmp_path, iter([(x[:8], y[:8]), (x[8:], y[8:])]), max_steps=3).fit()


def test_non_writable_run_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ValueError, match="not writable"):
        Trainer(linear_model(4, 2), mse, optim.SGD(learning_rate=0.1), [(np.ones((2, 4)),)],
                run_dir=blocker / "run", max_steps=1).fit()
    if os.geteuid() != 0:  # root ignores permission bits
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ValueError, match="not writable"):
            _trainer(locked, [(np.ones((2, 4)),)]).fit()


def test_existing_run_is_not_overwritten_by_accident(tmp_path):
    x, y = regression_data(16, 4, 2)
    _trainer(tmp_path, [(x, y)], max_steps=2).fit()
    before = (tmp_path / "run/log.jsonl").read_bytes()
    with pytest.raises(ValueError, match="already holds a run"):
        _trainer(tmp_path, [(x, y)], max_steps=2).fit()
    assert (tmp_path / "run/log.jsonl").read_bytes() == before
    _trainer(tmp_path, [(x, y)], max_steps=3).fit(overwrite=True)
    assert len(train_rows(tmp_path / "run/log.jsonl")) == 3


def test_model_without_nn_wrapper_is_rejected_before_any_write(tmp_path):
    with pytest.raises(TypeError, match="optimizer"):
        Trainer(nn.Linear(2, 2), mse, object(), [(np.ones((2, 2)),)], run_dir=tmp_path / "r",
                max_steps=1)
    assert not (tmp_path / "r").exists()


def test_one_epoch_of_a_generator_and_epochs_of_a_callable(tmp_path):
    x, y = regression_data(24, 4, 2)
    batches = [(x[i:i + 8], y[i:i + 8]) for i in range(0, 24, 8)]
    result = _trainer(tmp_path, (b for b in batches), max_steps=None, epochs=1).fit()
    assert result["step"] == 3
    calls = []

    def per_epoch(e):
        calls.append(e)
        return batches[:2] if e % 2 else batches

    result = Trainer(linear_model(4, 2), mse, optim.SGD(learning_rate=0.01), per_epoch,
                     run_dir=tmp_path / "callable", epochs=3, report_every=0).fit()
    assert result["step"] == 3 + 2 + 3 and result["epoch"] == 2
    assert calls[:3] == [0, 1, 2]


