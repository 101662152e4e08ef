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
from trainers import lr_range_test


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
    assert result.suggested_lr == pytest.approx(result.min_loss_lr / 10)
    assert result.suggested_lr < threshold
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
