"""The learning-rate range test on a quadratic problem whose divergence point is known."""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from helpers_trainer import flat_weights

from mlx_schedules._mlx_compat import schedules_of
from trainers import ArrayBatches, lr_range_test
from trainers.lr_finder import suggest_lrs


def problem():
    """Least squares y = x w + b; SGD on it diverges above 2 / largest Hessian eigenvalue."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32) * np.array([1, 2, 0.5, 1], np.float32)
    y = (x @ rng.normal(size=(4, 1)) + 0.1).astype(np.float32)
    design = np.hstack([x, np.ones((64, 1))])
    threshold = 2.0 / np.linalg.eigvalsh(2.0 / 64 * design.T @ design).max()
    mx.random.seed(0)
    return nn.Linear(4, 1), [(x, y)], threshold


def mse(model, x, y):
    return nn.losses.mse_loss(model(x), y)


def ema_reference(losses, beta):
    avg, out = 0.0, []
    for i, loss in enumerate(losses):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta ** (i + 1)))
    return out


def test_exponential_sweep_stops_after_divergence_and_suggests_a_safe_rate():
    model, data, threshold = problem()
    opt = optim.SGD(learning_rate=0.0)
    steps, lo, hi = 60, 1e-3, 10.0
    result = lr_range_test(model, mse, opt, data, min_lr=lo, max_lr=hi, steps=steps,
                           smoothing=0.9, check_every=7)
    n = len(result.losses)
    assert result.diverged_at == n - 1 < steps - 1  # stopped early, curve cut there
    expected_rates = [lo * (hi / lo) ** (i / (steps - 1)) for i in range(n)]
    np.testing.assert_allclose(result.learning_rates, expected_rates, rtol=2e-5)
    np.testing.assert_allclose(result.smoothed_losses, ema_reference(result.losses, 0.9),
                               rtol=1e-12)
    # below the threshold every update shrinks the loss, so divergence comes after it
    assert result.learning_rates[result.diverged_at] > threshold
    assert result.smoothed_losses[-1] > 4 * min(result.smoothed_losses)
    best = int(np.argmin(result.smoothed_losses))
    assert result.min_loss_lr == result.learning_rates[best]
    assert result.suggestions["minimum/10"] == pytest.approx(result.min_loss_lr / 10)
    assert result.suggested_lr == result.valley_lr == result.suggestions["valley"]
    assert result.suggested_lr < threshold and result.suggestions["minimum/10"] < threshold
    assert lo <= result.steepest_lr <= result.min_loss_lr


def test_linear_sweep_rates_and_no_divergence():
    model, data, threshold = problem()
    result = lr_range_test(model, mse, optim.SGD(learning_rate=0.0), data, min_lr=1e-3,
                           max_lr=0.5 * threshold, steps=20, mode="linear")
    assert result.diverged_at is None and len(result.losses) == 20
    step = (0.5 * threshold - 1e-3) / 19
    np.testing.assert_allclose(result.learning_rates, [1e-3 + step * i for i in range(20)],
                               rtol=1e-5)
    assert all(b < a for a, b in zip(result.losses, result.losses[1:], strict=False))


def test_model_is_left_trained_unless_restore_and_schedule_is_always_put_back():
    model, data, _ = problem()
    schedule = optim.cosine_decay(0.1, 100)
    opt = optim.SGD(learning_rate=schedule, momentum=0.9)
    before = flat_weights(model)
    lr_range_test(model, mse, opt, data, min_lr=1e-4, max_lr=1e-2, steps=5)
    assert not np.array_equal(flat_weights(model)["weight"], before["weight"])
    assert schedules_of(opt)["learning_rate"] is schedule
    assert opt.state["step"].item() == 5

    trained = flat_weights(model)
    momentum = np.array(opt.state["weight"]["v"])
    lr_range_test(model, mse, opt, data, min_lr=1e-4, max_lr=1e-2, steps=5, restore=True)
    for key, value in trained.items():
        np.testing.assert_array_equal(flat_weights(model)[key], value)
    np.testing.assert_array_equal(np.array(opt.state["weight"]["v"]), momentum)
    assert opt.state["step"].item() == 5
    assert schedules_of(opt)["learning_rate"] is schedule
    # the schedule still drives later updates
    grads = {"weight": mx.zeros((1, 4)), "bias": mx.zeros((1,))}
    opt.update(model, grads)
    assert opt.learning_rate.item() == pytest.approx(0.05 * (1 + math.cos(math.pi * 5 / 100)))


def test_bad_arguments():
    model, data, _ = problem()
    opt = optim.SGD(learning_rate=0.0)
    with pytest.raises(ValueError, match="min_lr must be <= max_lr"):
        lr_range_test(model, mse, opt, data, min_lr=1.0, max_lr=0.1)
    with pytest.raises(ValueError, match="mode"):
        lr_range_test(model, mse, opt, data, mode="cosine")
    with pytest.raises(ValueError, match="steps"):
        lr_range_test(model, mse, opt, data, steps=1)


def valley_by_the_rule(curve):
    """fastai's valley rule as stated (plain Python, O(n^2))."""
    longest = []
    for i, v in enumerate(curve):
        longest.append(1 + max([longest[j] for j in range(i) if curve[j] > v], default=0))
    end = longest.index(max(longest))
    begin = end - longest[end]
    third = (end - begin) / 3
    return begin + int(third) + int(third / 2)


def test_each_rule_on_closed_form_curves():
    x = np.linspace(math.log(1e-5), math.log(10.0), 61)
    rates = np.exp(x).tolist()
    # a parabola in log-rate with its minimum at x[30]: the descent is indices 0..30, so
    # L = 31, begin = -1, and the valley index is -1 + int(31/3) + int(31/6) = 14
    parabola = ((x - x[30]) ** 2).tolist()
    found = suggest_lrs(rates, parabola, skip_start=0, skip_end=0)
    assert found["valley"] == rates[14] == rates[valley_by_the_rule(parabola)]
    assert found["minimum/10"] == pytest.approx(math.exp(x[30]) / 10, rel=1e-12)
    # fastai's trimming: 5 points off each end; the descent is then 5..30 (L = 26 from -1)
    trimmed = suggest_lrs(rates, parabola, skip_start=5, skip_end=5)
    assert trimmed["valley"] == rates[5 + (-1 + int(26 / 3) + int(26 / 6))]
    # -tanh(x - x0) falls fastest at x0 = x[20] (odd symmetry about it)
    sigmoid = (-np.tanh(x - x[20])).tolist()
    assert suggest_lrs(rates, sigmoid)["steepest"] == pytest.approx(rates[20], rel=1e-12)
    # a blip inside the descent is skipped by the decreasing subsequence
    blip = [10.0, 9.0, 8.0, 9.5, 7.0, 6.0, 5.0, 6.0, 7.0]
    # 10, 9, 8, 7, 6, 5: L = 6 ending at index 6, begin 0, index 0 + 2 + 1 = 3
    assert suggest_lrs(rates[:9], blip, skip_start=0, skip_end=0)["valley"] == rates[3]
    # non-finite points are left out; none at all is an error
    assert suggest_lrs([1.0, 2.0, 3.0], [math.nan, 2.0, 1.0], skip_end=0)["minimum/10"] == 0.3
    with pytest.raises(FloatingPointError):
        suggest_lrs([1.0], [math.inf])


def test_seeds_report_medians_and_the_band():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4)).astype(np.float32)
    y = (x @ rng.normal(size=(4, 1)) + 0.3 * rng.normal(size=(256, 1))).astype(np.float32)

    def fresh():
        mx.random.seed(0)
        return nn.Linear(4, 1)

    data = ArrayBatches((x, y), 16)
    settings = {"min_lr": 1e-3, "max_lr": 10.0, "steps": 40, "compile": False}
    model = fresh()
    result = lr_range_test(model, mse, optim.SGD(0.0), data, seeds=[0, 1, 2], restore=True,
                           **settings)
    single = lr_range_test(fresh(), mse, optim.SGD(0.0), data, seed=0, **settings)
    assert result.runs[0].losses == single.losses  # seed 0 is the plain sweep
    assert result.runs[1].losses != result.runs[0].losses  # another data order
    for rule in ("valley", "steepest", "minimum/10"):
        values = [r.suggestions[rule] for r in result.runs]
        band = result.spread[rule]
        assert band["values"] == values and band["median"] == float(np.median(values))
        assert (band["low"], band["high"]) == (min(values), max(values))
        assert band["log10_range"] == pytest.approx(math.log10(max(values) / min(values)))
        assert result.suggestions[rule] == band["median"]
    assert result.suggested_lr == result.spread["valley"]["median"]
    assert result.extra["seeds"] == [0, 1, 2]
    np.testing.assert_array_equal(np.array(model.weight), np.array(fresh().weight))  # restored
    with pytest.raises(ValueError, match="suggestion"):
        lr_range_test(fresh(), mse, optim.SGD(0.0), data, suggestion="valey", **settings)
    with pytest.raises(TypeError, match="seeds"):
        lr_range_test(fresh(), mse, optim.SGD(0.0), data, seeds=3, **settings)
