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


# Up to this many pieces, a piece's constants are picked with chains of elementwise
# selects, which a compiled step fuses into one kernel; gathers would not fuse.
MAX_SELECT_CHAIN = 8


def scalar_columns(columns: list[tuple[list, mx.Dtype]]) -> list[list[mx.array]]:
    """Columns of host numbers as 0-d arrays, made once when a schedule is built."""
    return [[mx.array(v, dtype) for v in values] for values, dtype in columns]


def pick_by_step(t: mx.array, starts: list[int], columns: list[list[mx.array]]
                 ) -> list[mx.array]:
    """For each column (see :func:`scalar_columns`), its entry for the piece ``t`` lies
    in: piece ``i`` runs from ``starts[i-1]`` (sorted host ints; piece 0 from step 0) to
    the next start."""
    later = [t >= start for start in starts]
    picked = []
    for values in columns:
        value = values[0]
        for is_later, next_value in zip(later, values[1:]):
            value = mx.where(is_later, next_value, value)
        picked.append(value)
    return picked


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


def blend(start_value: float, end_value: float, weight: mx.array) -> mx.array:
    """``end + (start - end)·w`` for a weight ``w`` in [0, 1], exactly ``start_value`` where
    ``w`` is 1 and exactly ``end_value`` where ``w`` is 0 (both as float32), and monotone
    in ``w``.

    ``end + (start - end)·w`` alone rounds ``start - end`` first, so at ``w = 1`` it can
    miss ``start`` by an ulp (``0.1 - 0.001``, then ``+ 0.001``, is not ``0.1`` in
    float32); the value there is pinned, and the values next to it are clamped so they do
    not overshoot it. A weighted sum ``start·w + end·(1 - w)`` would hit both ends too, but
    rounds its two terms apart and is not monotone.
    """
    if end_value == 0.0:
        # start·w is exact at w = 1 and never overshoots start
        return start_value * weight
    value = end_value + (start_value - end_value) * weight
    if start_value >= end_value:
        value = mx.minimum(value, start_value)
    else:
        value = mx.maximum(value, start_value)
    return mx.where(weight == 1.0, start_value, value)


def warmup_fraction(t: mx.array, steps: int, shape: str) -> mx.array:
    r"""How far a warmup of ``steps`` steps has come at step ``t < steps``, in ``[0, 1)``.

    ``linear`` :math:`t/w`; ``cosine`` :math:`\tfrac12(1 - \cos(\pi t/w))`, written as
    :math:`\sin^2(\tfrac\pi2 t/w)` so that it is exactly 0 at step 0; ``log``
    :math:`\ln(t+1)/\ln(w+1)`.
    """
    if shape == "linear":
        return to_float(t) / steps
    if shape == "cosine":
        return mx.square(mx.sin(to_float(t) * (0.5 * math.pi / steps)))
    return mx.log1p(to_float(t)) * (1.0 / math.log1p(steps))


def k_power(left: mx.array, k: float) -> mx.array:
    r"""``1 - (1 - left)**k`` for a fraction ``left`` of a horizon still to go.

    This is timm's k-decay: :math:`t/D` becomes :math:`(t/D)^k`, and the fraction to go
    :math:`1 - (t/D)^k` is formed as ``-expm1(k·log1p(-left))``, which keeps full
    precision at both ends: exactly 1 at ``left = 1`` (step 0) and 0 at ``left = 0``.
    """
    if k == 1.0:
        return left
    return -mx.expm1(k * mx.log1p(-left))


# Noise as a pure function of (key, step): a counter-based generator, so the same step
# gets the same draw on every call, on resume and on every rank, vectorised and compiled
# like any op. The seed is spread into a 64-bit key on the host with splitmix64 (Steele,
# Lea & Flood 2014); the step is hashed in 32-bit words with Wellons' "lowbias32"
# integer hash, which compiles to a few fused uint32 ops (64-bit integer ops cost a
# compiled step several times as much).
_MASK64 = (1 << 64) - 1
_MASK32 = (1 << 32) - 1


def splitmix64_host(value: int) -> int:
    """The splitmix64 output function on a host integer (spreads a seed over 64 bits)."""
    z = (value + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _u32(value: int) -> mx.array:
    return mx.array(value & _MASK32, dtype=mx.uint32)


_SHIFT8, _SHIFT15, _SHIFT16 = _u32(8), _u32(15), _u32(16)
_LOWBIAS1, _LOWBIAS2 = _u32(0x7FEB352D), _u32(0x846CA68B)


def _lowbias32(x: mx.array) -> mx.array:
    x = x ^ (x >> _SHIFT16)
    x = x * _LOWBIAS1
    x = x ^ (x >> _SHIFT15)
    x = x * _LOWBIAS2
    return x ^ (x >> _SHIFT16)


def counter_normal(t: mx.array, key: int) -> mx.array:
    r"""A standard normal number for each int64 step ``t`` (float32), a pure function of
    the 64-bit ``key`` and ``t``.

    With :math:`h` = lowbias32, the step's words :math:`t_{hi}, t_{lo}` and the key's
    :math:`k_{hi}, k_{lo}`: :math:`a = h(t_{hi} \oplus k_{hi})`,
    :math:`b = h(t_{lo} \oplus a \oplus k_{lo})`, :math:`c = h(b \oplus k_{hi})`; the top 24
    bits of :math:`b` and :math:`c` give :math:`u_1 \in (0, 1]` and
    :math:`u_2 \in [0, 1)`, and Box-Muller :math:`\sqrt{-2\ln u_1}\cos(2\pi u_2)`.
    """
    key_hi, key_lo = _u32(key >> 32), _u32(key)
    a = _lowbias32((t >> 32).astype(mx.uint32) ^ key_hi)
    b = _lowbias32(t.astype(mx.uint32) ^ a ^ key_lo)
    c = _lowbias32(b ^ key_hi)
    scale = 1.0 / (1 << 24)
    u1 = (to_float(b >> _SHIFT8) + 1.0) * scale
    u2 = to_float(c >> _SHIFT8) * scale
    return mx.sqrt(-2.0 * mx.log(u1)) * mx.cos((2.0 * math.pi) * u2)
