"""Step arithmetic shared by the schedules.

Phases and cycles are located with integer operations on the ``int64`` step, and only
the position inside a phase is converted to float32. That keeps values accurate at step
counts far beyond 2**24, where float32 can no longer count.
"""

from __future__ import annotations

import math

import mlx.core as mx


def to_float(x: mx.array) -> mx.array:
    return x.astype(mx.float32)


def exact_ratio(steps: mx.array, length: int) -> mx.array:
    """``steps / length`` as float32, splitting off the integer part first."""
    whole = steps // length
    rest = steps - whole * length
    return to_float(whole) + to_float(rest) / length


def split(x: float) -> tuple[int, float]:
    """A host float as ``(floor, fraction)``, so ``t - x`` can be formed exactly."""
    whole = math.floor(x)
    return whole, x - whole


def offset(steps: mx.array, origin: float) -> mx.array:
    """``steps - origin`` in float32, subtracting the integer part of origin exactly."""
    whole, frac = split(origin)
    return to_float(steps - whole) - frac


def half_cosine(remaining: mx.array, scale: float = 1.0) -> mx.array:
    r"""``½(1 + cos(π·x))`` written as ``sin²(π/2·(1-x))`` with ``1-x = remaining·scale``.

    The two are equal, but the second keeps full relative precision where the value is
    tiny (the end of an annealing phase), which the first loses to cancellation. ``scale``
    (e.g. ``1/length`` for a count of steps left) folds into the one multiplication.
    """
    return mx.square(mx.sin(remaining * (0.5 * math.pi * scale)))


def power(base: float, exponent: mx.array) -> mx.array:
    """``base ** exponent`` for a host float ``base > 0`` via ``exp(exponent·ln base)``.

    The logarithm is taken in float64 on the host, which is far more accurate than
    raising a float32-rounded base to a large power.
    """
    return mx.exp(exponent * math.log(base))


def count_at_most(table: mx.array, steps: mx.array) -> mx.array:
    """How many entries of the sorted int64 ``table`` are ``<= steps`` (elementwise)."""
    size = table.size
    if size <= 16:
        return (steps[..., None] >= table).sum(axis=-1).astype(mx.int64)
    # Binary lifting: a fixed number of gathers, so it compiles to a static graph.
    count = mx.zeros(steps.shape, dtype=mx.int64)
    stride = 1 << (size.bit_length() - 1)
    while stride:
        candidate = count + stride
        index = mx.minimum(candidate, size) - 1
        ok = (candidate <= size) & (mx.take(table, index) <= steps)
        count = mx.where(ok, candidate, count)
        stride >>= 1
    return count
