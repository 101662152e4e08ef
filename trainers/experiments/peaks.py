"""Choosing a schedule's peak rate for a comparison: a grid that grows past its edges, and the
comparison of a range-test peak with the grid-tuned one.

A grid search whose best point is the grid's largest (or smallest) value has not found the
best peak, only a bound on it. :func:`tune_peak` therefore extends the grid by one point on
that side, spaced as the grid's two outermost points are (geometrically), and tries again,
until the best point is interior or ``max_extra`` points have been added on that side; the
result says which (``"interior"``, ``"grid edge (limit)"``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["PEAK_SOURCES", "peak_ratio", "tune_peak"]

#: where a comparison takes its peaks from: the grid, the range test, or both (each schedule
#: is then measured at both peaks and the difference reported)
PEAK_SOURCES = ("grid", "range-test", "both")


def tune_peak(train: Callable[[float], Any], peaks: Sequence[float],
              score: Callable[[Any], Any], *, max_extra: int = 3) -> dict[str, Any]:
    """The best peak of a grid, extending the grid past an edge that wins.

    Args:
        train: runs one trial at a peak, returns its result.
        peaks: the starting grid (at least 2 distinct positive rates to tune; one rate is
            returned as is, untried).
        score: a result's score, higher is better (a tuple sorts as usual); a diverged run
            should score below every finished one.
        max_extra: points added on each side at most.

    Returns:
        ``{"peak": best, "trials": {peak: result} (every tried peak), "grid": the tried
        peaks, sorted, "status": "interior" | "grid edge (limit)" | "single peak",
        "extended": {"low": n, "high": n}}``.

    Example:
        >>> tuned = tune_peak(lambda p: -abs(math.log10(p / 2.0)), [0.01, 0.1, 1.0],
        ...                   lambda s: s)
        >>> tuned["peak"], tuned["status"], tuned["extended"]
        (1.0, 'interior', {'low': 0, 'high': 1})
        >>> tune_peak(lambda p: p, [0.1, 1.0], lambda s: s, max_extra=2)["grid"]
        [0.1, 1.0, 10.0, 100.0]
    """
    grid = sorted({float(p) for p in peaks})
    if not grid or any(not (math.isfinite(p) and p > 0) for p in grid):
        raise ValueError(f"peaks must be positive finite rates, got {list(peaks)!r}")
    if isinstance(max_extra, bool) or not isinstance(max_extra, int) or max_extra < 0:
        raise ValueError(f"max_extra must be an int >= 0, got {max_extra!r}")
    if len(grid) == 1:
        return {"peak": grid[0], "trials": {}, "grid": grid, "status": "single peak",
                "extended": {"low": 0, "high": 0}}
    trials = {p: train(p) for p in grid}
    extended = {"low": 0, "high": 0}
    while True:
        best = max(grid, key=lambda p: score(trials[p]))
        if best == grid[-1] and extended["high"] < max_extra:
            new = grid[-1] * (grid[-1] / grid[-2])
            extended["high"] += 1
        elif best == grid[0] and extended["low"] < max_extra:
            new = grid[0] / (grid[1] / grid[0])
            extended["low"] += 1
        else:
            break
        trials[new] = train(new)
        grid = sorted(trials)
    status = "grid edge (limit)" if best in (grid[0], grid[-1]) else "interior"
    return {"peak": best, "trials": trials, "grid": grid, "status": status,
            "extended": extended}


def peak_ratio(suggested: float, tuned: float) -> float:
    """How far a suggested peak is from the tuned one, as a factor >= 1 either way.

    Example:
        >>> peak_ratio(0.15, 0.3), peak_ratio(0.6, 0.3)
        (2.0, 2.0)
    """
    return max(suggested / tuned, tuned / suggested)
