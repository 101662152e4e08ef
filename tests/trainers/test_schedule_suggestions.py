"""The range test's peak per schedule family, on hand-built curves with a known extremum."""

from __future__ import annotations

import math

import pytest

from trainers.lr_finder import (
    ADAPTIVE_SCALES,
    MEAN_FRACTIONS,
    SCHEDULE_KINDS,
    schedule_suggestions,
)

# The decaying families' mean rate over a run, as a fraction of the peak, in closed form
# (float64) for the shapes the module docs state: a 5% linear warm-up (mean 1/2 over it),
# cosines and linear decays (mean 1/2), a 1-sqrt cooldown (mean 1/3 over it) and an
# exponential decay to peak / 100 over 400 updates (a geometric series).
_Q = 0.01 ** (1 / 399)
CLOSED_FORM_MEANS = {
    "cosine": 0.5, "linear": 0.5,
    "warmup_cosine": 0.05 * 0.5 + 0.95 * (0.1 + 0.9 * 0.5),
    "wsd": 0.05 * 0.5 + 0.75 + 0.2 * 0.5,
    "wsd_sqrt": 0.05 * 0.5 + 0.75 + 0.2 * (1 - 2 / 3),
    "exponential": (1 - _Q ** 400) / (400 * (1 - _Q)),
}
# The rules as the module docs state them: the extremum times this, per family (SGD).
EXPECTED_SCALE = {"one_cycle": 1 / 3, "triangular": 1 / 3, "constant": 0.1, "power": 0.1,
                  **{f: min(0.5, 0.1 / m) for f, m in CLOSED_FORM_MEANS.items()},
                  "cyclic_exponential": 0.5,  # capped: its mean fraction is about 0.11
                  "schedule_free": 3.0}


def test_the_mean_fractions_are_those_of_the_shapes():
    for family, mean in CLOSED_FORM_MEANS.items():
        assert MEAN_FRACTIONS[family] == pytest.approx(mean, abs=0.003), family
    # CED: the exponential envelope times cycles between 0 and 1 (mean about a half)
    assert 0.4 * CLOSED_FORM_MEANS["exponential"] < MEAN_FRACTIONS["cyclic_exponential"] \
        < 0.6 * CLOSED_FORM_MEANS["exponential"]


def parabola_curve(best: float, n: int = 41) -> tuple[list[float], list[float]]:
    """Rates 1e-4 .. 10 (10 per decade, so 10**(k/10) exactly on the grid) and a loss
    ``(log10 r - log10 best)**2 + 1``: its minimum is at ``best``; NaN after divergence."""
    rates = [10.0 ** (k / 10 - 4) for k in range(n + 10)]
    curve = [(math.log10(r) - math.log10(best)) ** 2 + 1.0 for r in rates[:n]]
    return rates, curve + [math.nan] * 10


def test_every_family_has_a_documented_rule():
    assert set(SCHEDULE_KINDS) == set(EXPECTED_SCALE)
    assert set(MEAN_FRACTIONS) == {f for f, k in SCHEDULE_KINDS.items() if k == "decaying"}


@pytest.mark.parametrize("best_k", [5, 23, 37])
def test_peaks_are_the_extremum_scaled(best_k):
    best = 10.0 ** (best_k / 10 - 4)
    rates, curve = parabola_curve(best)
    found = schedule_suggestions(rates, curve)
    for family, scale in EXPECTED_SCALE.items():
        # the decaying families take the table's fractions (checked against the closed forms
        # above to 3 digits) exactly
        if family in MEAN_FRACTIONS:
            scale = min(0.5, 0.1 / MEAN_FRACTIONS[family])
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
    expected = {"cyclical": valley, "constant": valley / 2, "decaying": valley / 2,
                "schedule_free": 3 * valley}
    assert ADAPTIVE_SCALES == {k: v / valley for k, v in expected.items()}
    for family, kind in SCHEDULE_KINDS.items():
        assert found[family] == pytest.approx(expected[kind], rel=1e-12), family


def test_which_optimizers_are_adaptive():
    import mlx.optimizers as optim

    from trainers.lr_finder import is_adaptive
    from trainers.schedule_free import ScheduleFreeAdamW, ScheduleFreeSGD

    assert [is_adaptive(o) for o in (optim.Adam(1e-3), optim.AdamW(1e-3),
                                     ScheduleFreeAdamW(1e-3))] == [True] * 3
    assert [is_adaptive(o) for o in (optim.SGD(0.1), ScheduleFreeSGD(0.1))] == [False] * 2
    assert is_adaptive("AdamW") and not is_adaptive("SGD")
