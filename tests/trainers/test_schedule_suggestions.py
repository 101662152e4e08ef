"""The range test's peak per schedule family, on hand-built curves with a known extremum."""

from __future__ import annotations

import math

import pytest

from trainers.lr_finder import KIND_DIVISORS, SCHEDULE_KINDS, schedule_suggestions

# The rules as the module docs state them: the extremum divided by this, per family.
EXPECTED_DIVISOR = {"one_cycle": 3, "triangular": 3, "constant": 10, "power": 10,
                    "cosine": 5, "warmup_cosine": 5, "wsd": 5, "wsd_sqrt": 5, "linear": 5,
                    "exponential": 5, "cyclic_exponential": 5, "schedule_free": 1}


def parabola_curve(best: float, n: int = 41) -> tuple[list[float], list[float]]:
    """Rates 1e-4 .. 10 (10 per decade, so 10**(k/10) exactly on the grid) and a loss
    ``(log10 r - log10 best)**2 + 1``: its minimum is at ``best``; NaN after divergence."""
    rates = [10.0 ** (k / 10 - 4) for k in range(n + 10)]
    curve = [(math.log10(r) - math.log10(best)) ** 2 + 1.0 for r in rates[:n]]
    return rates, curve + [math.nan] * 10


def test_every_family_has_its_documented_rule():
    assert set(SCHEDULE_KINDS) == set(EXPECTED_DIVISOR)
    for family, kind in SCHEDULE_KINDS.items():
        assert KIND_DIVISORS[kind] == EXPECTED_DIVISOR[family], family


@pytest.mark.parametrize("best_k", [5, 23, 37])
def test_peaks_are_the_extremum_over_the_divisor(best_k):
    best = 10.0 ** (best_k / 10 - 4)
    rates, curve = parabola_curve(best)
    found = schedule_suggestions(rates, curve)
    for family, divisor in EXPECTED_DIVISOR.items():
        assert found[family] == pytest.approx(best / divisor, rel=1e-12), family


def test_ordering_cycle_above_decay_above_constant():
    rates, curve = parabola_curve(0.5)
    found = schedule_suggestions(rates, curve)
    assert found["schedule_free"] > found["one_cycle"] > found["cosine"] > found["constant"]


def test_first_of_equal_minima_and_nan_only_curves():
    rates = [0.1, 0.2, 0.4, 0.8]
    found = schedule_suggestions(rates, [3.0, 1.0, 1.0, 2.0])  # a tie: the smaller rate
    assert found["one_cycle"] == pytest.approx(0.2 / 3)
    with pytest.raises(FloatingPointError, match="no finite point"):
        schedule_suggestions(rates, [math.nan] * 4)
