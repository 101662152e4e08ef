"""The range test's peak per schedule family, on hand-built curves with a known extremum."""

from __future__ import annotations

import math

import pytest

from trainers.lr_finder import KIND_SCALES, SCHEDULE_KINDS, schedule_suggestions

# The rules as the module docs state them: the extremum times this, per family.
EXPECTED_SCALE = {"one_cycle": 1 / 3, "triangular": 1 / 3, "constant": 0.1, "power": 0.1,
                  "cosine": 0.2, "warmup_cosine": 0.2, "wsd": 0.2, "wsd_sqrt": 0.2,
                  "linear": 0.2, "exponential": 0.2, "cyclic_exponential": 0.2,
                  "schedule_free": 3.0}


def parabola_curve(best: float, n: int = 41) -> tuple[list[float], list[float]]:
    """Rates 1e-4 .. 10 (10 per decade, so 10**(k/10) exactly on the grid) and a loss
    ``(log10 r - log10 best)**2 + 1``: its minimum is at ``best``; NaN after divergence."""
    rates = [10.0 ** (k / 10 - 4) for k in range(n + 10)]
    curve = [(math.log10(r) - math.log10(best)) ** 2 + 1.0 for r in rates[:n]]
    return rates, curve + [math.nan] * 10


def test_every_family_has_its_documented_rule():
    assert set(SCHEDULE_KINDS) == set(EXPECTED_SCALE)
    for family, kind in SCHEDULE_KINDS.items():
        a, b = KIND_SCALES[kind]
        assert a / b == pytest.approx(EXPECTED_SCALE[family], rel=1e-15), family


@pytest.mark.parametrize("best_k", [5, 23, 37])
def test_peaks_are_the_extremum_scaled(best_k):
    best = 10.0 ** (best_k / 10 - 4)
    rates, curve = parabola_curve(best)
    found = schedule_suggestions(rates, curve)
    for family, scale in EXPECTED_SCALE.items():
        assert found[family] == pytest.approx(best * scale, rel=1e-12), family


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


def test_adaptive_optimizers_take_the_valley():
    rates, curve = parabola_curve(10.0 ** (30 / 10 - 4))  # minimum at index 30 of 41
    # fastai's valley on the first 36 points (the last 5 left out): the longest strictly
    # decreasing run ends at e = 30 with length L = 31; s = e - L = -1 and the rate is at
    # s + floor((e - s) / 3) + floor((e - s) / 6) = -1 + 10 + 5 = 14
    valley = 10.0 ** (14 / 10 - 4)
    found = schedule_suggestions(rates, curve, adaptive=True, skip_start=0)
    for family, kind in SCHEDULE_KINDS.items():
        expected = 3 * valley if kind == "schedule_free" else valley
        assert found[family] == pytest.approx(expected, rel=1e-12), family


def test_which_optimizers_are_adaptive():
    import mlx.optimizers as optim

    from trainers.lr_finder import is_adaptive
    from trainers.schedule_free import ScheduleFreeAdamW, ScheduleFreeSGD

    assert [is_adaptive(o) for o in (optim.Adam(1e-3), optim.AdamW(1e-3),
                                     ScheduleFreeAdamW(1e-3))] == [True] * 3
    assert [is_adaptive(o) for o in (optim.SGD(0.1), ScheduleFreeSGD(0.1))] == [False] * 2
    assert is_adaptive("AdamW") and not is_adaptive("SGD")
