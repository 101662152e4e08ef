"""Early stopping, reduce-on-plateau, callbacks, and the non-finite stop."""

from __future__ import annotations

import json
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


def torch_plateau(metrics, lrs, *, mode="min", factor=0.1, patience=10, threshold=1e-4,
                  threshold_mode="rel", cooldown=0, min_lr=0.0, eps=1e-8):
    """PyTorch's ``ReduceLROnPlateau.step`` as documented, in plain Python float64: the rate
    of every group after each metric value."""
    min_lrs = list(min_lr) if isinstance(min_lr, list) else [min_lr] * len(lrs)
    lrs = list(lrs)
    best = math.inf if mode == "min" else -math.inf
    bad = cooling = 0
    out = []
    for a in metrics:
        if mode == "min" and threshold_mode == "rel":
            better = a < best * (1.0 - threshold)
        elif mode == "min":
            better = a < best - threshold
        elif threshold_mode == "rel":
            better = a > best * (threshold + 1.0)
        else:
            better = a > best + threshold
        if better:
            best, bad = a, 0
        else:
            bad += 1
        if cooling > 0:
            cooling -= 1
            bad = 0
        if bad > patience:
            for i, old in enumerate(lrs):
                new = max(old * factor, min_lrs[i])
                if old - new > eps:
                    lrs[i] = new
            cooling, bad = cooldown, 0
        out.append(list(lrs))
    return out


def recorded_cases():
    path = os.path.join(os.path.dirname(__file__), "data", "plateau_pytorch.json")
    with open(path, encoding="utf-8") as f:
        return json.load(f)["cases"]


@pytest.mark.parametrize("case", recorded_cases(), ids=lambda c: c["name"])
def test_plateau_rates_equal_pytorchs(case):
    """Recorded from torch 2.13 (the recorder is in the JSON file): the plain-Python reference
    reproduces them exactly, and the rates our optimizer uses after each evaluation equal
    them in float32."""
    expected = case["rates"]
    assert torch_plateau(case["metrics"], case["lrs"], **case["kwargs"]) == expected
    parts = [optim.SGD(learning_rate=lr) for lr in case["lrs"]]
    opt = parts[0] if len(parts) == 1 else optim.MultiOptimizer(
        parts, [lambda path, _: path == "w0"][: len(parts) - 1])
    kwargs = {"patience": 10, **case["kwargs"]}
    plateau = ReduceLROnPlateau(opt, **kwargs)
    params = {f"w{i}": mx.zeros((1,)) for i in range(len(parts))}
    opt.init(params)
    used = []
    for step, value in enumerate(case["metrics"]):
        plateau({"event": "eval", "step": step, "eval_loss": value})
        opt.update(params, {k: mx.zeros((1,)) for k in params})  # zero gradients, one update
        used.append([p.state["learning_rate"].item() for p in parts])
    np.testing.assert_allclose(used, expected, rtol=2e-7, atol=0)
    assert len({tuple(r) for r in expected}) > 1  # the case reduces at least once


def test_plateau_on_a_schedule_floors_the_product_and_never_lifts_the_schedule(tmp_path):
    total, floor = 24, 0.004
    x, y = regression_data(32, 4, 2)
    opt = optim.SGD(learning_rate=optim.cosine_decay(0.1, total))
    plateau = ReduceLROnPlateau(opt, "eval_const", patience=0, factor=0.1, min_lr=floor)
    Trainer(linear_model(4, 2), mse, opt, ArrayBatches((x, y), 8), run_dir=tmp_path,
            max_steps=total, eval_data=[(x, y)], eval_every=3, report_every=0,
            metrics={"const": constant_metric}, callbacks=[plateau]).fit()
    # evals at 3 (best), then every 3 steps a reduction, skipped once the floor holds
    cosine = [0.05 * (1 + math.cos(math.pi * t / total)) for t in range(total)]
    factor, f = [], 1.0
    for t in range(total):
        if t in (6, 9, 12, 15, 18, 21) and cosine[t] * f - max(cosine[t] * f * 0.1, floor) > 1e-8:
            f *= 0.1  # a reduction that moves the rate at the evaluation's step
        factor.append(f)
    expected = [min(c, max(c * f, floor)) for c, f in zip(cosine, factor, strict=True)]
    rows = [r for r in read_jsonl(tmp_path / "log.jsonl") if r["kind"] == "train"]
    # float32 cosine near its end: absolute error ~1e-9
    np.testing.assert_allclose([r["learning_rate"] for r in rows], expected, rtol=1e-6, atol=1e-8)
    # reductions at 6 and 9; from 12 on the rate sits at the floor and reductions are skipped
    assert factor[-1] == pytest.approx(1e-2) and plateau.factors() == [pytest.approx(1e-2)]
    assert rows[-1]["learning_rate"] < floor  # the cosine's own tail, not lifted to the floor


def test_plateau_state_round_trip_continues_the_same_sequence():
    metrics = [1.0, 0.9, 0.95, 0.97, 0.96, 0.99, 0.98, 0.97, 0.99, 1.0, 0.5, 0.6, 0.7]
    settings = {"patience": 1, "factor": 0.5, "cooldown": 2, "threshold": 0.01}
    expected = torch_plateau(metrics, [1.0], **settings)
    whole = optim.SGD(learning_rate=1.0)
    one = ReduceLROnPlateau(whole, **settings)
    first = optim.SGD(learning_rate=1.0)
    a = ReduceLROnPlateau(first, **settings)
    for i, value in enumerate(metrics):
        one({"event": "eval", "eval_loss": value})
        if i < 5:
            a({"event": "eval", "eval_loss": value})
    saved = json.loads(json.dumps(a.state_dict()))  # checkpoints keep it as JSON
    second = optim.SGD(learning_rate=1.0)
    b = ReduceLROnPlateau(second, **settings)
    b.load_state_dict(saved)
    second.state["lr_factor"] = first.state["lr_factor"]  # the optimizer state's part
    for value in metrics[5:]:
        b({"event": "eval", "eval_loss": value})
    assert b.factors() == one.factors() == [pytest.approx(expected[-1][0])]
    assert b.state_dict() == one.state_dict()
    fresh = json.loads(json.dumps(ReduceLROnPlateau(optim.SGD(0.1), mode="max").state_dict()))
    c = ReduceLROnPlateau(optim.SGD(0.1), mode="max")
    c.load_state_dict(fresh)
    assert c.best == -math.inf


def test_plateau_deprecated_keywords_still_work():
    opt = optim.Adam(learning_rate=0.01)
    with pytest.warns(DeprecationWarning, match="min_lr"):
        plateau = ReduceLROnPlateau(opt, patience=0, factor=0.1, min_factor=0.05)
    for _ in range(3):
        plateau({"event": "eval", "eval_loss": 2.0})
    assert opt.state["lr_factor"].item() == pytest.approx(0.05)
    model = nn.Linear(2, 1)
    opt.init(model.trainable_parameters())
    opt.update(model, {"weight": mx.zeros((1, 2)), "bias": mx.zeros((1,))})
    assert opt.learning_rate.item() == pytest.approx(0.0005)
    with pytest.warns(DeprecationWarning, match="threshold_mode='abs'"):
        delta = ReduceLROnPlateau(optim.SGD(0.1), patience=0, min_delta=0.1)
    assert (delta.threshold, delta.threshold_mode) == (0.1, "abs")
    with pytest.raises(ValueError, match="already"):
        ReduceLROnPlateau(opt)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"factor": 1.5}, ValueError, "factor must be < 1.0, got 1.5"),
    ({"factor": 0.0}, ValueError, "factor must be > 0.0"),
    ({"mode": "mean"}, ValueError, "mode"),
    ({"threshold_mode": "relative"}, ValueError, "threshold_mode"),
    ({"threshold": -1e-4}, ValueError, "threshold must be >= 0.0"),
    ({"patience": -1}, ValueError, "patience"),
    ({"cooldown": 1.5}, TypeError, "cooldown"),
    ({"min_lr": -0.1}, ValueError, "min_lr must be >= 0.0"),
    ({"min_lr": [0.0, 0.1]}, ValueError, r"one per parameter group \(1\)"),
    ({"min_lr": float("nan")}, ValueError, "min_lr must be finite"),
])
def test_plateau_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        ReduceLROnPlateau(optim.SGD(learning_rate=0.1), **kwargs)
    with pytest.raises(KeyError, match="eval_missing"):
        ReduceLROnPlateau(optim.SGD(0.1), "eval_missing")({"event": "eval", "eval_loss": 1.0})


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
                         "run_dir": str(tmp_path), "finished": False}
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
