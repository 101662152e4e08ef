"""Schedule-free SGD and AdamW against the paper's equations in float64, inside the trainer."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest
from helpers_trainer import flat_weights, linear_model, mse, read_jsonl, regression_data

import mlx_schedules as ms
from trainers import PAUSE, ArrayBatches, Trainer
from trainers.schedule_free import ScheduleFreeAdamW, ScheduleFreeSGD


def reference(weight, bias, batches, *, lr, beta, decay, warmup, adam=None):
    """Defazio et al. (2024), the published update, float64; ``adam=(beta2, eps)`` for
    AdamW. Returns the final (y, x) as dicts {"weight", "bias"}."""
    y = {"weight": np.array(weight, np.float64), "bias": np.array(bias, np.float64)}
    z, x = dict(y), dict(y)
    v = {k: np.zeros_like(a) for k, a in y.items()}
    total = 0.0
    for t, (xs, ys) in enumerate(batches, start=1):
        xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
        err = xs @ y["weight"].T + y["bias"] - ys
        grad = {"weight": 2.0 / err.size * err.T @ xs, "bias": 2.0 / err.size * err.sum(0)}
        gamma = lr * (min(1.0, t / warmup) if warmup else 1.0)
        if adam is not None:
            gamma *= math.sqrt(1 - adam[0] ** t)
        total += gamma**2
        c = gamma**2 / total
        for k in y:
            if adam is None:
                direction = grad[k]
            else:
                v[k] = adam[0] * v[k] + (1 - adam[0]) * grad[k] ** 2
                direction = grad[k] / (np.sqrt(v[k]) + adam[1])
            z[k] = z[k] - gamma * direction - gamma * decay * y[k]
            x[k] = (1 - c) * x[k] + c * z[k]
        y = {k: (1 - beta) * z[k] + beta * x[k] for k in y}
    return y, x


def setup(n_steps=12):
    x, y = regression_data(48, 4, 2)
    batches = [(x[i:i + 8], y[i:i + 8]) for i in range(0, 48, 8)] * (n_steps // 6 + 1)
    return batches[:n_steps], ArrayBatches((x, y), 8, shuffle=False)


@pytest.mark.parametrize("kind", ["sgd", "adamw"])
def test_updates_follow_the_papers_equations_in_a_compiled_step(tmp_path, kind):
    steps = 12
    batches, data = setup(steps)
    model = linear_model(4, 2)
    start = flat_weights(model)
    if kind == "sgd":
        opt = ScheduleFreeSGD(learning_rate=0.2, momentum=0.9, weight_decay=0.01,
                              warmup_steps=4)
        y, x = reference(start["weight"], start["bias"], batches, lr=0.2, beta=0.9,
                         decay=0.01, warmup=4)
    else:
        opt = ScheduleFreeAdamW(learning_rate=0.05, betas=(0.8, 0.99), eps=1e-8,
                                weight_decay=0.01, warmup_steps=4)
        y, x = reference(start["weight"], start["bias"], batches, lr=0.05, beta=0.8,
                         decay=0.01, warmup=4, adam=(0.99, 1e-8))
    Trainer(model, mse, opt, data, run_dir=tmp_path, max_steps=steps, report_every=0,
            compile=True).fit()
    for key in ("weight", "bias"):
        np.testing.assert_allclose(flat_weights(model)[key], y[key], rtol=2e-5, atol=1e-6)
        averaged = opt.averaged_parameters(model.trainable_parameters())[key]
        np.testing.assert_allclose(np.array(averaged), x[key], rtol=2e-5, atol=1e-6)
    assert not np.allclose(x["weight"], y["weight"])  # the two sequences do differ


def test_evaluations_run_on_the_averaged_weights(tmp_path):
    steps = 6
    batches, data = setup(steps)
    xs, ys = regression_data(48, 4, 2)
    model = linear_model(4, 2)
    start = flat_weights(model)
    opt = ScheduleFreeSGD(learning_rate=0.2, momentum=0.9)
    trainer = Trainer(model, mse, opt, data, run_dir=tmp_path, max_steps=steps,
                      eval_data=[(xs, ys)], eval_every=steps, report_every=0, compile=False)
    trainer.fit()  # the trainer evaluates the optimizer's averaged weights by itself
    y, x = reference(start["weight"], start["bias"], batches, lr=0.2, beta=0.9, decay=0.0,
                     warmup=0)

    def loss(w):
        err = xs.astype(np.float64) @ w["weight"].T + w["bias"] - ys
        return float(np.mean(err**2))

    logged = [r for r in read_jsonl(tmp_path / "log.jsonl") if r["kind"] == "eval"][-1]
    assert logged["eval_loss"] == pytest.approx(loss(x), rel=1e-5)
    assert abs(loss(x) - loss(y)) > 1e-3 * loss(x)  # not the loss at y
    np.testing.assert_allclose(flat_weights(model)["weight"], y["weight"], rtol=2e-5)  # y kept


def test_resume_is_exact(tmp_path):
    def run(run_dir, stop=None, resume=False):
        model = linear_model(4, 2)
        opt = ScheduleFreeAdamW(learning_rate=ms.linear_schedule(0.0, 0.05, 3))
        calls = [] if stop is None else [
            lambda e: PAUSE if e["event"] == "train" and e["step"] == stop - 1 else None]
        Trainer(model, mse, opt, setup()[1], run_dir=run_dir, max_steps=12, log_every=3,
                checkpoint_every=3, report_every=0, compile=False, callbacks=calls
                ).fit(resume=resume)
        return model, opt

    whole, whole_opt = run(tmp_path / "whole")
    run(tmp_path / "split", stop=6)
    split, split_opt = run(tmp_path / "split", resume=True)
    for key, value in flat_weights(whole).items():
        np.testing.assert_array_equal(flat_weights(split)[key], value)
    mx.eval(whole_opt.state, split_opt.state)
    for a, b in zip(whole_opt.averaged_parameters(whole.trainable_parameters()).values(),
                    split_opt.averaged_parameters(split.trainable_parameters()).values(),
                    strict=True):
        np.testing.assert_array_equal(np.array(a), np.array(b))


@pytest.mark.parametrize(("build", "error", "match"), [
    (lambda: ScheduleFreeSGD(-0.1), ValueError, "learning_rate must be >= 0.0"),
    (lambda: ScheduleFreeSGD(0.1, momentum=1.0), ValueError, "momentum must be < 1.0"),
    (lambda: ScheduleFreeSGD(0.1, warmup_steps=-1), ValueError, "warmup_steps"),
    (lambda: ScheduleFreeSGD(0.1, weight_decay=math.nan), ValueError, "weight_decay"),
    (lambda: ScheduleFreeAdamW(0.1, betas=(0.9,)), TypeError, "betas must be a pair"),
    (lambda: ScheduleFreeAdamW(0.1, betas=(0.9, 1.5)), ValueError, r"betas\[1\]"),
    (lambda: ScheduleFreeAdamW(0.1, eps=-1.0), ValueError, "eps must be >= 0.0"),
])
def test_bad_input(build, error, match):
    with pytest.raises(error, match=match):
        build()
