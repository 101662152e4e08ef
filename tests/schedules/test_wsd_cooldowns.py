"""The cooldowns of current language-model practice, as ``warmup_stable_decay`` shapes,
against the papers' formulas written out in float64."""

from __future__ import annotations

import math

import pytest
from schedule_reference import assert_close

import mlx_schedules as ms


def hagele_1_minus_sqrt(t, peak, total, warmup, cooldown):
    """Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed Training
    Durations": linear warmup, constant peak, then the 1-sqrt cooldown
    peak·(1 - sqrt((t - t0)/D)) from t0 = N - D to N."""
    t0 = total - cooldown
    if t < warmup:
        return peak * t / warmup
    if t < t0:
        return peak
    return peak * (1 - math.sqrt(min(t - t0, cooldown) / cooldown))


def bergsma_linear_to_zero(t, peak, total, warmup):
    """Bergsma et al. 2025, "Straight to Zero": linear warmup, then linear decay from the
    peak to 0 at the last step."""
    if t < warmup:
        return peak * t / warmup
    return peak * max(total - t, 0) / (total - warmup)


@pytest.mark.parametrize("total, warmup, cooldown", [(1000, 50, 200), (10**9, 10**6, 2 * 10**8),
                                                     (64, 0, 64)])
def test_sqrt_shape_is_hageles_1_minus_sqrt_cooldown(total, warmup, cooldown):
    lr = ms.warmup_stable_decay(3e-3, total, warmup_steps=warmup, decay_steps=cooldown,
                                decay_shape="sqrt")
    t0 = total - cooldown
    steps = sorted({0, 1, max(warmup - 1, 0), warmup, t0 - 1, t0, t0 + 1, t0 + cooldown // 4,
                    t0 + cooldown // 2, total - 2, total - 1, total, total + 1, 2**62}
                   - {-1})
    want = [hagele_1_minus_sqrt(t, 3e-3, total, warmup, cooldown) for t in steps]
    assert_close(lr.values(steps), want, 3e-3, steps)
    # a quarter into the cooldown 1 - sqrt(1/4) = half the peak is left
    assert lr.values([t0 + cooldown // 4]).item() == pytest.approx(1.5e-3, rel=1e-6)


@pytest.mark.parametrize("total, warmup", [(1000, 100), (123_457, 1_000)])
def test_linear_shape_decays_straight_to_zero(total, warmup):
    lr = ms.warmup_stable_decay(1e-3, total, warmup_steps=warmup, decay_steps=total - warmup,
                                decay_shape="linear")
    steps = [0, 1, warmup - 1, warmup, warmup + 1, (warmup + total) // 2, total - 1, total,
             total + 1, 2**62]
    want = [bergsma_linear_to_zero(t, 1e-3, total, warmup) for t in steps]
    assert_close(lr.values(steps), want, 1e-3, steps)
    assert lr.values([total, 2**62]).tolist() == [0.0, 0.0]
