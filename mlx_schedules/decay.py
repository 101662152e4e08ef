"""Monotone schedules: constant, exponential, step, multistep, cosine, linear,
polynomial, inverse-time and piecewise-constant decay."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import mlx.core as mx

from ._math import (
    MAX_SELECT_CHAIN,
    blend,
    count_at_most,
    exact_ratio,
    half_cosine,
    k_power,
    pick_by_step,
    power,
    scalar_columns,
    to_float,
)
from .base import StepFunction, bounded
from .checks import (
    MAX_STEP,
    check_bool,
    check_choice,
    check_growth,
    check_increasing_ints,
    check_int,
    check_positive,
    check_real,
    check_reals,
    check_span,
)
from .config import register


@register
def constant(value: float) -> StepFunction:
    r"""A constant value, :math:`\eta_t = v`.

    Example:
        >>> constant(0.25).values(3).tolist()
        [0.25, 0.25, 0.25]
    """
    value = check_real("value", value)
    return bounded(lambda t: mx.full(t.shape, value, dtype=mx.float32), abs(value))


@register
def exponential_decay(init: float, decay_rate: float, *, decay_steps: int = 1,
                      staircase: bool = False, begin: int = 0,
                      end: float | None = None) -> StepFunction:
    r"""Exponential decay (MLX's ``exponential_decay``, optax's ``exponential_decay``).

    .. math::
        \eta_t = \eta_0 \, r^{\max(t - b, 0) / d}

    with the exponent floored when ``staircase``. ``end`` bounds the value: a floor when
    ``decay_rate < 1``, a ceiling when ``decay_rate > 1``. The continuous form
    :math:`\eta_0 e^{-kt}` is ``exponential_decay(eta0, math.exp(-k))``.

    A growing schedule (``decay_rate > 1``) must stay within float32 up to step
    ``2**62``: it needs ``end`` as its ceiling (and ``init >= 0``, which the ceiling
    bounds), unless ``decay_steps`` is long enough that it never overflows.

    Args:
        init: the value at step 0 (and before ``begin``).
        decay_rate: the factor :math:`r` applied every ``decay_steps`` steps.
        decay_steps: steps per factor of ``decay_rate``.
        staircase: decay in whole steps of ``decay_steps``.
        begin: the step at which decay starts.
        end: optional bound on the value.

    Example:
        >>> import math
        >>> lr = exponential_decay(0.1, math.exp(-0.5))
        >>> [round(v, 5) for v in lr.values(4).tolist()]
        [0.1, 0.06065, 0.03679, 0.02231]
        >>> exponential_decay(1.0, 0.5, decay_steps=2, staircase=True).values(5).tolist()
        [1.0, 1.0, 0.5, 0.5, 0.25]
    """
    init = check_real("init", init)
    decay_rate = check_positive("decay_rate", decay_rate)
    decay_steps = check_int("decay_steps", decay_steps)
    staircase = check_bool("staircase", staircase)
    begin = check_int("begin", begin, minimum=0)
    end = None if end is None else check_real("end", end)
    # the largest |value|: init's (and end's) unless the value grows without a ceiling
    magnitude = max(abs(init), 0.0 if end is None else abs(end))
    if decay_rate > 1 and init != 0 and (end is None or init < 0):
        elapsed = MAX_STEP - begin
        exponent = elapsed // decay_steps if staircase else elapsed / decay_steps
        check_growth("decay_rate", exponent * math.log(decay_rate) + _log_abs(init),
                     f"with decay_rate={decay_rate!r} > 1 and no ceiling to bound it "
                     "(end, with init >= 0) the value")
        magnitude = max(magnitude, math.exp(exponent * math.log(decay_rate)
                                            + math.log(abs(init))))
    if decay_rate > 1 and init == 0:
        # 0 times an overflowing power would be NaN; the value is 0 throughout.
        value = 0.0 if end is None else min(0.0, end)
        return bounded(lambda t: mx.full(t.shape, value, dtype=mx.float32), abs(value))

    def body(t):
        # The common form (begin=0, decay_steps=1) skips ops that would be identities:
        # an eager call costs per op recorded.
        elapsed = mx.maximum(t - begin, 0) if begin else t
        if decay_steps == 1:
            exponent = to_float(elapsed)
        elif staircase:
            exponent = to_float(elapsed // decay_steps)
        else:
            exponent = exact_ratio(elapsed, decay_steps)
        value = init * power(decay_rate, exponent)
        if end is None:
            return value
        return mx.maximum(value, end) if decay_rate < 1 else mx.minimum(value, end)

    return bounded(body, magnitude)


@register
def step_decay(init: float, decay_rate: float, step_size: int) -> StepFunction:
    r"""Multiply by ``decay_rate`` every ``step_size`` steps (PyTorch ``StepLR``).

    .. math::
        \eta_t = \eta_0 \, r^{\lfloor t / s \rfloor}

    Example:
        >>> [round(v, 4) for v in step_decay(0.1, 0.5, step_size=2).values(5).tolist()]
        [0.1, 0.1, 0.05, 0.05, 0.025]
    """
    init = check_real("init", init)
    decay_rate = check_positive("decay_rate", decay_rate)
    step_size = check_int("step_size", step_size)
    magnitude = abs(init)
    if decay_rate > 1:
        check_growth("decay_rate", (MAX_STEP // step_size) * math.log(decay_rate)
                     + _log_abs(init), f"with decay_rate={decay_rate!r} > 1 the value")
        if init != 0:
            magnitude = math.exp((MAX_STEP // step_size) * math.log(decay_rate)
                                 + math.log(abs(init)))
    return bounded(lambda t: init * power(decay_rate, to_float(t // step_size)), magnitude)


@register
def multistep_decay(init: float, milestones: Sequence[int], gamma: float = 0.1) -> StepFunction:
    r"""Multiply by ``gamma`` at each milestone (PyTorch ``MultiStepLR``).

    .. math::
        \eta_t = \eta_0 \, \gamma^{\#\{m \in M : m \le t\}}

    Example:
        >>> lr = multistep_decay(1.0, [2, 4], gamma=0.5)
        >>> lr.values(6).tolist()
        [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    """
    init = check_real("init", init)
    milestones = check_increasing_ints("milestones", milestones, minimum=0)
    gamma = check_positive("gamma", gamma)
    if gamma > 1:
        check_growth("gamma", len(milestones) * math.log(gamma) + _log_abs(init),
                     f"with gamma={gamma!r} > 1 the value after the last milestone")
    host_levels = [init * gamma**k for k in range(len(milestones) + 1)]
    levels = mx.array(host_levels, dtype=mx.float32)
    table = mx.array(milestones, dtype=mx.int64)
    return bounded(lambda t: mx.take(levels, count_at_most(table, t)),
                   max(abs(v) for v in host_levels))


@register
def cosine_decay(init: float, decay_steps: int, end: float = 0.0, *,
                 exponent: float = 1.0, k_decay: float = 1.0) -> StepFunction:
    r"""Cosine annealing from ``init`` to ``end`` over ``decay_steps``, then ``end``.

    .. math::
        \eta_t = \eta_{end} + (\eta_0 - \eta_{end})
                 \Bigl(\tfrac12\bigl(1 + \cos(\pi\, \min(t, T)^k/T^k)\bigr)\Bigr)^{p}

    Matches ``mlx.optimizers.cosine_decay``, optax's ``cosine_decay_schedule`` (with
    ``alpha = end/init``) and PyTorch's ``CosineAnnealingLR`` over its first half-period.
    ``k_decay`` (:math:`k`) is timm's k-decay (Zhang & Li 2020, ``CosineLRScheduler(k_decay=)``):
    above 1 the rate stays high longer and falls later. Step 0 gives exactly ``init`` and
    every step from ``decay_steps`` on exactly ``end`` (as float32).

    Example:
        >>> [round(v, 4) for v in cosine_decay(1.0, 4).values(6).tolist()]
        [1.0, 0.8536, 0.5, 0.1464, 0.0, 0.0]
        >>> [round(v, 4) for v in cosine_decay(1.0, 4, k_decay=2.0).values(5).tolist()]
        [1.0, 0.9904, 0.8536, 0.4025, 0.0]
    """
    init = check_real("init", init)
    decay_steps = check_int("decay_steps", decay_steps)
    end = check_real("end", end)
    exponent = check_positive("exponent", exponent)
    k_decay = check_positive("k_decay", k_decay)
    check_span("init", init, "end", end)

    def body(t):
        left = to_float(decay_steps - mx.minimum(t, decay_steps))
        if k_decay == 1.0:
            shape = half_cosine(left, 1 / decay_steps)
        else:
            shape = half_cosine(k_power(left / decay_steps, k_decay))
        if exponent != 1.0:
            shape = mx.power(shape, exponent)
        return blend(init, end, shape)

    return bounded(body, max(abs(init), abs(end)))


@register
def linear_schedule(init: float, end: float, steps: int) -> StepFunction:
    r"""Linear from ``init`` to ``end`` over ``steps``, then ``end``.

    .. math::
        \eta_t = \eta_0 + (\eta_{end} - \eta_0) \min(t, n)/n

    Example:
        >>> linear_schedule(0.0, 1.0, steps=4).values(6).tolist()
        [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    """
    init = check_real("init", init)
    end = check_real("end", end)
    steps = check_int("steps", steps)
    check_span("init", init, "end", end)

    def body(t):
        # The fraction to go is exactly 1 at step 0 (x/x is 1 in IEEE arithmetic,
        # x·(1/x) need not be) and 0 from `steps` on, so the ends are init and end.
        return blend(init, end, to_float(steps - mx.minimum(t, steps)) / steps)

    return bounded(body, max(abs(init), abs(end)))


@register
def polynomial_decay(init: float, decay_steps: int, end: float = 0.0, *, power: float = 1.0,
                     cycle: bool = False, k_decay: float = 1.0) -> StepFunction:
    r"""Polynomial decay (Keras ``PolynomialDecay``).

    .. math::
        \eta_t = (\eta_0 - \eta_{end}) (1 - t^k/D^k)^{p} + \eta_{end}

    with :math:`t` clamped to :math:`D` = ``decay_steps``; with ``cycle`` the horizon
    grows instead to the next multiple of ``decay_steps``, :math:`D \lceil t/D \rceil`.
    ``k_decay`` (:math:`k`, default 1) is timm's k-decay (``PolyLRScheduler(k_decay=)``).

    Example:
        >>> polynomial_decay(1.0, 4, power=2.0).values(6).tolist()
        [1.0, 0.5625, 0.25, 0.0625, 0.0, 0.0]
        >>> polynomial_decay(1.0, 4, k_decay=2.0).values(5).tolist()
        [1.0, 0.9375, 0.75, 0.4375, 0.0]
    """
    init = check_real("init", init)
    decay_steps = check_int("decay_steps", decay_steps)
    end = check_real("end", end)
    exponent = check_positive("power", power)
    cycle = check_bool("cycle", cycle)
    k_decay = check_positive("k_decay", k_decay)
    check_span("init", init, "end", end)

    def body(t):
        if cycle:
            horizon = decay_steps * mx.maximum((t + decay_steps - 1) // decay_steps, 1)
            remaining = to_float(horizon - t) / to_float(horizon)
        else:
            remaining = to_float(decay_steps - mx.minimum(t, decay_steps)) / decay_steps
        weight = k_power(remaining, k_decay)
        if exponent != 1.0:
            weight = mx.power(weight, exponent)
        return blend(init, end, weight)

    return bounded(body, max(abs(init), abs(end)))


@register
def inverse_time_decay(init: float, decay_steps: int, decay_rate: float, *,
                       staircase: bool = False) -> StepFunction:
    r"""Inverse-time decay (Keras ``InverseTimeDecay``).

    .. math::
        \eta_t = \frac{\eta_0}{1 + r\, t / d}

    with :math:`t/d` floored when ``staircase``.

    Example:
        >>> inverse_time_decay(1.0, decay_steps=1, decay_rate=1.0).values(4).tolist()
        [1.0, 0.5, 0.3333333432674408, 0.25]
    """
    init = check_real("init", init)
    decay_steps = check_int("decay_steps", decay_steps)
    decay_rate = check_real("decay_rate", decay_rate, low=0.0)
    staircase = check_bool("staircase", staircase)

    def body(t):
        ratio = to_float(t // decay_steps) if staircase else exact_ratio(t, decay_steps)
        return init / (1.0 + decay_rate * ratio)

    return bounded(body, abs(init))   # the denominator is at least 1


@register
def piecewise_constant(boundaries: Sequence[int], values: Sequence[float]) -> StepFunction:
    r"""Piecewise-constant values (Keras ``PiecewiseConstantDecay``).

    ``values[i]`` holds while ``t <= boundaries[i]`` (and after the previous boundary);
    the last value holds after the last boundary.

    Example:
        >>> piecewise_constant([1, 3], [1.0, 0.5, 0.1]).values(5).tolist()
        [1.0, 1.0, 0.5, 0.5, 0.10000000149011612]
    """
    boundaries = check_increasing_ints("boundaries", boundaries, minimum=0)
    values = check_reals("values", values)
    if len(values) != len(boundaries) + 1:
        raise ValueError(f"values must have one more entry than boundaries: got "
                         f"{len(values)} values for {len(boundaries)} boundaries")
    levels = mx.array(values, dtype=mx.float32)
    # value i holds while t <= b_i, so count the boundaries strictly below t: b < t <=> b+1 <= t
    table = mx.array([b + 1 for b in boundaries], dtype=mx.int64)
    return bounded(lambda t: mx.take(levels, count_at_most(table, t)),
                   max(abs(v) for v in values))



@register
def inverse_sqrt(init: float, warmup_steps: int, *, timescale: int | None = None) -> StepFunction:
    r"""Linear warmup, then decay as the inverse square root of the step (Hugging Face's
    ``get_inverse_sqrt_schedule``, the original transformer's schedule).

    .. math::
        \eta_t = \eta_0 \begin{cases}
            t / w & t < w \\
            1 / \sqrt{(t - w + \tau)/\tau} & t \ge w
        \end{cases}

    with :math:`\tau` = ``timescale``, by default ``warmup_steps`` (10,000 when that is
    0). The peak ``init`` is reached exactly at step :math:`w`; the value at step 0 is
    exactly 0 (exactly ``init`` without warmup). It has no horizon: it decays for ever.

    Example:
        >>> [round(v, 4) for v in inverse_sqrt(1.0, 2).values(7).tolist()]
        [0.0, 0.5, 1.0, 0.8165, 0.7071, 0.6325, 0.5774]
    """
    init = check_real("init", init)
    warmup_steps = check_int("warmup_steps", warmup_steps, minimum=0)
    if timescale is None:
        timescale = warmup_steps or 10_000
    else:
        timescale = check_int("timescale", timescale)

    def body(t):
        # (t - w + tau)/tau = (t - w)/tau + 1, split so that no int64 sum can overflow
        after = mx.maximum(t - warmup_steps, 0) if warmup_steps else t
        value = init / mx.sqrt(exact_ratio(after, timescale) + 1.0)
        if warmup_steps:
            value = mx.where(t < warmup_steps, init * (to_float(t) / warmup_steps), value)
        return value

    return bounded(body, abs(init))


@register
def tanh_decay(init: float, decay_steps: int, end: float = 0.0, *, lower: float = -7.0,
               upper: float = 3.0) -> StepFunction:
    r"""Hyperbolic-tangent decay (Hsueh et al. 2019; timm's ``TanhLRScheduler``, one cycle).

    .. math::
        \eta_t &= \eta_{end} + \tfrac12(\eta_0 - \eta_{end})
                  \bigl(1 - \tanh(l\,(1 - t/D) + u\,t/D)\bigr) \quad (t < D) \\
        \eta_t &= \eta_{end} \quad (t \ge D)

    with :math:`l` = ``lower`` and :math:`u` = ``upper``. The value holds near the start
    and drops steeply at the end; as in timm it starts at
    :math:`\eta_{end} + \tfrac12(\eta_0 - \eta_{end})(1 - \tanh l)` (for the defaults
    :math:`\eta_0 (1 - 8.3\cdot10^{-7})`, the float32 of that exactly) and steps to
    ``end`` at :math:`D` (from :math:`\eta_{end} + 0.0025(\eta_0 - \eta_{end})`).

    Example:
        >>> [round(v, 4) for v in tanh_decay(1.0, 4).values(6).tolist()]
        [1.0, 0.9999, 0.982, 0.2689, 0.0, 0.0]
    """
    init = check_real("init", init)
    decay_steps = check_int("decay_steps", decay_steps)
    end = check_real("end", end)
    lower = check_real("lower", lower)
    upper = check_real("upper", upper)
    check_span("init", init, "end", end)
    check_span("upper", upper, "lower", lower)
    # The stated start, in float64: the body's float32 tanh could miss it by an ulp.
    start = end + 0.5 * (init - end) * (1.0 - math.tanh(lower))

    def body(t):
        r = to_float(t) / decay_steps
        # ½(1 - tanh x) = 1/(1 + e^{2x}): no cancellation where tanh x is near 1
        x = lower + (upper - lower) * r
        value = blend(init, end, 1.0 / (1.0 + mx.exp(2.0 * x)))
        value = mx.where(t >= decay_steps, end, value)
        return mx.where(t == 0, start, value)

    return bounded(body, max(abs(init), abs(end)))


INTERPOLATIONS = ("linear", "cosine")


def _boundaries_and_scales(value: Any) -> list[tuple[int, float]]:
    """The sorted ``(step, scale)`` pairs of a mapping whose keys are steps (ints, or
    their decimal strings as JSON writes them) and whose values are scales >= 0."""
    name = "boundaries_and_scales"
    if value is None:
        return []
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a dict of step -> scale, got {value!r} "
                        f"({type(value).__name__})")
    pairs: dict[int, float] = {}
    for key, scale in value.items():
        step = key
        if isinstance(key, str) and key.strip().isdigit():
            step = int(key)   # JSON turns integer keys into strings
        step = check_int(f"{name} key {key!r}", step)
        if step in pairs:
            raise ValueError(f"{name} names step {step} twice (keys {list(value)!r})")
        pairs[step] = check_real(f"{name}[{key!r}]", scale, low=0.0)
    return sorted(pairs.items())


@register
def piecewise_interpolate(init: float, boundaries_and_scales: Mapping[int, float] | None, *,
                          interpolate: str = "linear") -> StepFunction:
    r"""Interpolate between levels that are products of scales (optax's
    ``piecewise_interpolate_schedule``).

    With the boundaries :math:`b_1 < \dots < b_n` and scales :math:`s_i` of
    ``boundaries_and_scales`` (``{b_i: s_i}``), the level at :math:`b_i` is
    :math:`v_i = \eta_0 \prod_{j \le i} s_j` (:math:`v_0 = \eta_0` at :math:`b_0 = 0`), and

    .. math::
        \eta_t = v_i + (v_{i+1} - v_i)\, f\bigl((t - b_i)/(b_{i+1} - b_i)\bigr),
        \quad b_i \le t < b_{i+1}; \qquad \eta_t = v_n \quad (t \ge b_n)

    with :math:`f(x) = x` (``"linear"``) or :math:`\tfrac12(1 - \cos \pi x)`
    (``"cosine"``). Boundaries are steps >= 1 (optax's value at a boundary 0 is NaN);
    scales are >= 0. Keys may be the decimal strings JSON turns integer keys into.

    Example:
        >>> lr = piecewise_interpolate(1.0, {2: 0.5, 4: 0.1})
        >>> [round(v, 4) for v in lr.values(6).tolist()]
        [1.0, 0.75, 0.5, 0.275, 0.05, 0.05]
        >>> lr = piecewise_interpolate(1.0, {4: 0.5}, interpolate="cosine")
        >>> [round(v, 4) for v in lr.values(5).tolist()]
        [1.0, 0.9268, 0.75, 0.5732, 0.5]
    """
    init = check_real("init", init)
    pairs = _boundaries_and_scales(boundaries_and_scales)
    interpolate = check_choice("interpolate", interpolate, INTERPOLATIONS)
    levels = [init]
    for step, scale in pairs:
        levels.append(check_real(f"the level from step {step} of boundaries_and_scales",
                                 levels[-1] * scale))
    if not pairs:
        return bounded(lambda t: mx.full(t.shape, init, dtype=mx.float32), abs(init))
    bounds = [0] + [step for step, _ in pairs]
    # past the last boundary: length 1 and a rise of 0, so the level holds exactly
    columns: list[tuple[list[Any], mx.Dtype]] = [(bounds, mx.int64),
               ([b - a for a, b in zip(bounds, bounds[1:])] + [1], mx.float32),
               (levels, mx.float32),
               ([b - a for a, b in zip(levels, levels[1:])] + [0.0], mx.float32)]
    if len(pairs) <= MAX_SELECT_CHAIN:
        scalars = scalar_columns(columns)

        def piece(t):
            return pick_by_step(t, bounds[1:], scalars)
    else:
        table = mx.array(bounds[1:], dtype=mx.int64)
        tables = [mx.array(values, dtype=dtype) for values, dtype in columns]

        def piece(t):
            i = count_at_most(table, t)
            return [mx.take(values, i) for values in tables]

    def body(t):
        start, length, level, rise = piece(t)
        x = to_float(t - start) / length
        if interpolate == "cosine":
            x = mx.square(mx.sin(x * (0.5 * math.pi)))
        return level + rise * x

    # each piece runs between two levels
    return bounded(body, max(abs(v) for v in levels))


def _log_abs(value: float) -> float:
    """``ln |value|``, with 0 counting as 1 (no growth check needed on a zero value)."""
    return math.log(max(abs(value), 1.0))
