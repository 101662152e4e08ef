"""Early stopping, reduce-on-plateau, callbacks, and the non-finite stop."""

from __future__ import annotations

import math
import os

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from helpers_trainer import classification_data, linear_model, mse, read_jsonl, regression_data

from trainers import (
    ArrayBatches,
    EarlyStopping,
    NonFiniteError,
    ReduceLROnPlateau,
    Trainer,
    list_checkpoints,
    load_checkpoint,
)


def constant_metric(model, x, y):
    """An eval metric that never improves."""
    return mx.mean(y * 0.0) + 1.0



def nan_gradient_case(count: int, bad: int):
    """A loss whose value stays finite but whose gradient is NaN on batch ``bad``.

    ``0 * sqrt(|x w|)`` adds nothing to the loss, but at ``x = 0`` its gradient is
    ``0 * inf = NaN``; batch ``bad`` is all zeros.
    """

    def loss_fn(model, x, y):
        out = model(x)
        return nn.losses.mse_loss(out, y) + 0.0 * mx.mean(mx.sqrt(mx.abs(out)))

    rng = np.random.default_rng(0)
    batches = [(rng.normal(size=(4, 3)).astype(np.float32), np.zeros((4, 1), np.float32))
               for _ in range(count)]
    batches[bad] = (np.zeros((4, 3), np.float32), np.zeros((4, 1), np.float32))
    return loss_fn, batches


def test_early_stopping_after_patience_evals(tmp_path):
    x, y = regression_data(32, 4, 2)
    events = []
    result = Trainer(
        linear_model(4, 2), mse, optim.SGD(learning_rate=0.01), ArrayBatches((x, y), 8),
        run_dir=tmp_path, max_steps=50, eval_data=[(x, y)], eval_every=2, report_every=0,
        metrics={"const": constant_metric}, checkpoint_every=0,
        callbacks=[EarlyStopping("eval_const", patience=2), events.append],
    ).fit()
    # evals at 2 (best), 4, 6 (2 without improvement), 8 (3 > patience): stop after step 8
    assert result["step"] == 8
    evals = [r["step"] for r in read_jsonl(tmp_path / "log.jsonl") if r["kind"] == "eval"]
    assert evals == [2, 4, 6, 8]
    assert events[-1] == {"event": "end", "step": 8, "stopped_early": True}


def test_early_stopping_counts_real_improvements():
    stop = EarlyStopping("eval_accuracy", patience=1, mode="max", min_delta=0.05)
    values = [0.5, 0.52, 0.6, 0.61, 0.62]  # +0.02 and +0.01 are not improvements
    decisions = [stop({"event": "eval", "eval_accuracy": v}) for v in values]
    assert decisions == [None, None, None, None, "stop"]
    with pytest.raises(KeyError, match="eval_missing"):
        EarlyStopping("eval_missing")({"event": "eval", "eval_loss": 1.0})


def test_reduce_on_plateau_scales_the_schedule(tmp_path):
    total = 18
    x, y = regression_data(32, 4, 2)
    opt = optim.SGD(learning_rate=optim.cosine_decay(0.1, total))
    plateau = ReduceLROnPlateau(opt, "eval_const", patience=1, factor=0.5)
    Trainer(linear_model(4, 2), mse, opt, ArrayBatches((x, y), 8), run_dir=tmp_path,
            max_steps=total, eval_data=[(x, y)], eval_every=3, report_every=0,
            metrics={"const": constant_metric}, callbacks=[plateau]).fit()
    # evals at 3 (best), 6, 9 (2 > 1 bad: x0.5), 12, 15 (x0.5 again), 18
    factor = [1.0 if t < 9 else 0.5 if t < 15 else 0.25 for t in range(total)]
    expected = [0.05 * (1 + math.cos(math.pi * t / total)) * f for t, f in enumerate(factor)]
    rows = [r for r in read_jsonl(tmp_path / "log.jsonl") if r["kind"] == "train"]
    np.testing.assert_allclose([r["learning_rate"] for r in rows], expected, rtol=1e-6, atol=1e-9)
    assert opt.state["lr_factor"].item() == 0.25


def test_reduce_on_plateau_with_a_constant_rate_and_a_floor():
    opt = optim.Adam(learning_rate=0.01)
    plateau = ReduceLROnPlateau(opt, patience=0, factor=0.1, min_factor=0.05)
    for _ in range(3):
        plateau({"event": "eval", "eval_loss": 2.0})
    assert opt.state["lr_factor"].item() == pytest.approx(0.05)
    model = nn.Linear(2, 1)
    opt.init(model.trainable_parameters())
    opt.update(model, {"weight": mx.zeros((1, 2)), "bias": mx.zeros((1,))})
    assert opt.learning_rate.item() == pytest.approx(0.0005)
    with pytest.raises(ValueError, match="factor"):
        ReduceLROnPlateau(optim.SGD(learning_rate=0.1), factor=1.5)
    with pytest.raises(ValueError, match="already"):
        ReduceLROnPlateau(opt)


def test_callback_events_in_order(tmp_path):
    x, y = regression_data(16, 4, 2)
    events = []
    Trainer(linear_model(4, 2), mse, optim.SGD(learning_rate=0.01), ArrayBatches((x, y), 4),
            run_dir=tmp_path, max_steps=4, eval_data=[(x, y)], eval_every=2,
            checkpoint_every=2, report_every=0, callbacks=[events.append]).fit()
    kinds = [(e["event"], e["step"]) for e in events]
    assert kinds == [("start", 0), ("train", 0), ("train", 1), ("eval", 2), ("checkpoint", 2),
                     ("train", 2), ("train", 3), ("eval", 4), ("checkpoint", 4), ("end", 4)]
    assert events[-2]["path"].endswith("step_00000004")
    assert events[0] == {"event": "start", "step": 0, "resumed": False,
                         "run_dir": str(tmp_path)}
    assert set(events[1]) == {"event", "step", "epoch", "loss", "learning_rate"}


def test_nan_loss_names_the_step_keeps_last_good_checkpoint_and_log(tmp_path):
    x, y = regression_data(40, 4, 2)
    batches = [(x[i:i + 4], y[i:i + 4]) for i in range(0, 40, 4)]
    bad = 7
    batches[bad] = (np.full((4, 4), np.nan, np.float32), batches[bad][1])
    trainer = Trainer(linear_model(4, 2), mse, optim.SGD(learning_rate=0.01), batches,
                      run_dir=tmp_path, max_steps=10, checkpoint_every=3, log_every=50,
                      report_every=0)
    with pytest.raises(NonFiniteError, match=f"step {bad}") as info:
        trainer.fit()
    assert isinstance(info.value, FloatingPointError)
    assert info.value.step == bad and math.isnan(info.value.loss)
    assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == [3, 6]
    assert info.value.checkpoint.endswith("step_00000006")
    rows = read_jsonl(tmp_path / "log.jsonl")
    assert [r["step"] for r in rows] == list(range(bad + 1))
    assert all(math.isfinite(r["loss"]) for r in rows[:bad])
    model, opt = linear_model(4, 2), optim.SGD(learning_rate=0.01)
    opt.init(model.trainable_parameters())
    load_checkpoint(info.value.checkpoint, model, opt)
    assert np.all(np.isfinite(np.array(model.weight)))


def test_nan_gradient_with_finite_loss_is_caught(tmp_path):
    # 0 * sqrt(|x w|) adds nothing to the loss but its gradient at x = 0 is 0 * inf = NaN.
    loss_fn, batches = nan_gradient_case(count=6, bad=4)
    mx.random.seed(0)
    trainer = Trainer(nn.Linear(3, 1, bias=False), loss_fn, optim.SGD(learning_rate=0.01),
                      batches, run_dir=tmp_path, max_steps=6, report_every=0, grad_norm=True)
    with pytest.raises(NonFiniteError, match="step 4") as info:
        trainer.fit()
    assert info.value.loss == 0.0 and math.isnan(info.value.grad_norm)
    assert not list_checkpoints(tmp_path / "checkpoints")
    assert "no checkpoint" in str(info.value)


def test_clip_norm_bounds_the_update(tmp_path):
    x, y = classification_data(32)
    model = linear_model(6, 2)
    before = np.array(model.weight), np.array(model.bias)

    def loss_fn(m, x, y):
        return 1000.0 * nn.losses.cross_entropy(m(x), y, reduction="mean")

    result = Trainer(model, loss_fn, optim.SGD(learning_rate=1.0), [(x, y)], run_dir=tmp_path,
                     max_steps=1, clip_norm=0.1, report_every=0).fit()
    assert result["grad_norm"] > 1.0  # logged before clipping
    delta = np.sqrt(np.sum((np.array(model.weight) - before[0]) ** 2)
                    + np.sum((np.array(model.bias) - before[1]) ** 2))
    assert delta == pytest.approx(0.1, rel=1e-4)  # lr 1 x clipped norm 0.1
    assert os.path.exists(tmp_path / "checkpoints" / "step_00000001")


def test_without_grad_norm_the_column_is_absent_and_the_loss_still_checked(tmp_path):
    loss_fn, batches = nan_gradient_case(count=6, bad=2)
    mx.random.seed(0)
    trainer = Trainer(nn.Linear(3, 1, bias=False), loss_fn, optim.SGD(learning_rate=0.01),
                      batches, run_dir=tmp_path, max_steps=6, report_every=0, grad_norm=False)
    # the NaN gradient of step 2 poisons the weights; the loss shows it at step 3
    with pytest.raises(NonFiniteError, match="step 3"):
        trainer.fit()
    rows = read_jsonl(tmp_path / "log.jsonl")
    assert set(rows[0]) == {"kind", "step", "epoch", "loss", "learning_rate"}
    assert [r["step"] for r in rows] == [0, 1, 2, 3]


def test_stop_from_a_training_row_ends_the_run_at_the_block_boundary(tmp_path):
    from trainers import STOP

    x, y = regression_data(32, 4, 2)

    def stop_at_5(info):
        return STOP if info["event"] == "train" and info["step"] == 5 else None

    result = Trainer(linear_model(4, 2), mse, optim.SGD(learning_rate=0.01),
                     ArrayBatches((x, y), 8), run_dir=tmp_path, max_steps=50, log_every=4,
                     report_every=0, callbacks=[stop_at_5]).fit()
    assert result["step"] == 8  # row 5 arrives with the block of steps 4-7
    assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == [8]


def test_eager_step_and_no_run_dir_give_the_compiled_result(tmp_path):
    x, y = regression_data(32, 4, 2)
    weights = []
    for compile_step, run_dir in ((True, tmp_path), (False, None)):
        model = linear_model(4, 2, seed=3)
        opt = optim.SGD(learning_rate=optim.cosine_decay(0.1, 6), momentum=0.9)
        kwargs = {} if run_dir else {"log": False, "checkpoint_every": 0}
        Trainer(model, mse, opt, ArrayBatches((x, y), 8), run_dir=run_dir, max_steps=6,
                report_every=0, compile=compile_step, **kwargs).fit()
        weights.append(np.array(model.weight))
    np.testing.assert_allclose(weights[0], weights[1], rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="run_dir=None needs log=False"):
        Trainer(linear_model(4, 2), mse, optim.SGD(learning_rate=0.1), [(x, y)], run_dir=None,
                max_steps=1)


def test_without_grad_norm_a_bad_last_update_never_becomes_a_checkpoint(tmp_path):
    # The NaN gradient comes in the very last update, so no later loss can show it: the
    # weights check before the final checkpoint must.
    loss_fn, batches = nan_gradient_case(count=4, bad=3)
    mx.random.seed(0)
    trainer = Trainer(nn.Linear(3, 1, bias=False), loss_fn, optim.SGD(learning_rate=0.01),
                      batches, run_dir=tmp_path, max_steps=4, report_every=0, grad_norm=False,
                      checkpoint_every=2)
    with pytest.raises(NonFiniteError, match="step 3: its update left non-finite weights"):
        trainer.fit()
    saved = [step for step, _ in list_checkpoints(tmp_path / "checkpoints")]
    assert saved == [2]
    assert [r["step"] for r in read_jsonl(tmp_path / "log.jsonl") if r["kind"] == "train"] == [
        0, 1, 2, 3]
