"""A grid search that grows past a winning edge (trainers.experiments.peaks.tune_peak)."""

from __future__ import annotations

import math

import pytest

from trainers.experiments.peaks import peak_ratio, tune_peak


def peaked_at(best: float):
    """A fake training run: its score falls with the log-distance from ``best``."""
    calls: list[float] = []

    def train(peak: float) -> float:
        calls.append(peak)
        return -abs(math.log10(peak) - math.log10(best))

    return train, calls


def test_grows_upwards_until_interior():
    train, calls = peaked_at(30.0)  # beyond the grid's top, 1.0
    found = tune_peak(train, [0.01, 0.1, 1.0], lambda s: s, max_extra=5)
    # 10 beats 1 (log-distance 0.48 < 1.48), then 100 (0.52) loses to 10: interior at 10
    assert found["peak"] == pytest.approx(10.0)
    assert found["grid"] == pytest.approx([0.01, 0.1, 1.0, 10.0, 100.0])
    assert found["status"] == "interior" and found["extended"] == {"low": 0, "high": 2}
    assert calls == pytest.approx([0.01, 0.1, 1.0, 10.0, 100.0])


def test_grows_downwards_with_the_grid_spacing():
    train, _ = peaked_at(0.002)
    found = tune_peak(train, [0.01, 0.03, 0.09], lambda s: s, max_extra=5)
    # spacing 3x: 0.01/3 = 0.00333, /3 = 0.00111; 0.00333 is closest to 0.002 (0.22 vs 0.26)
    assert found["peak"] == pytest.approx(0.01 / 3)
    assert found["grid"][0] == pytest.approx(0.01 / 9)
    assert found["status"] == "interior" and found["extended"] == {"low": 2, "high": 0}


def test_stops_at_the_limit_and_says_so():
    train, calls = peaked_at(1e6)
    found = tune_peak(train, [0.1, 1.0], lambda s: s, max_extra=2)
    assert found["peak"] == pytest.approx(100.0) and found["status"] == "grid edge (limit)"
    assert len(calls) == 4


def test_a_diverged_edge_is_not_extended():
    found = tune_peak(lambda p: None if p > 0.5 else p, [0.1, 0.3, 1.0],
                      lambda s: -math.inf if s is None else s)
    assert found["peak"] == 0.3 and found["status"] == "interior"
    assert found["grid"] == [0.1, 0.3, 1.0]


def test_single_peak_and_bad_grids():
    assert tune_peak(lambda p: 1 / 0, [0.1], lambda s: s)["status"] == "single peak"
    with pytest.raises(ValueError, match="peaks"):
        tune_peak(lambda p: p, [0.1, -1.0], lambda s: s)
    with pytest.raises(ValueError, match="max_extra"):
        tune_peak(lambda p: p, [0.1, 1.0], lambda s: s, max_extra=-1)


def test_peak_ratio_is_symmetric():
    assert peak_ratio(0.1, 0.4) == pytest.approx(4.0) == peak_ratio(0.4, 0.1)
