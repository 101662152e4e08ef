"""Monotone schedules: constant, exponential, step, multistep, cosine, linear,
polynomial, inverse-time and piecewise-constant decay."""

from __future__ import annotations

import math
from collections.abc import Sequence

import mlx.core as mx

from ._checks import (
    MAX_STEP,
    check_bool,
    check_growth,
    check_increasing_ints,
    check_int,
    check_positive,
    check_real,
    check_reals,
    check_span,
)
from ._math import count_at_most, exact_ratio, half_cosine, power, to_float
from .base import StepFunction
from .config import register


@register
def constant(value: float) -> StepFunction:
    r"""A constant value, :math:`\eta_t = v`.

    Example:
        >>> constant(0.25).values(3).tolist()
        [0.25, 0.25, 0.25]
    """
    value = check_real("value", value)
    return lambda t: mx.full(t.shape, value, dtype=mx.float32)


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
    if decay_rate > 1 and init != 0 and (end is None or init < 0):
        elapsed = MAX_STEP - begin
        exponent = elapsed // decay_steps if staircase else elapsed / decay_steps
        check_growth("decay_rate", exponent * math.log(decay_rate) + _log_abs(init),
                     f"with decay_rate={decay_rate!r} > 1 and no ceiling to bound it "
                     "(end, with init >= 0) the value")
    if decay_rate > 1 and init == 0:
        # 0 times an overflowing power would be NaN; the value is 0 throughout.
        value = 0.0 if end is None else min(0.0, end)
        return lambda t: mx.full(t.shape, value, dtype=mx.float32)

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

    return body


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
    if decay_rate > 1:
        check_growth("decay_rate", (MAX_STEP // step_size) * math.log(decay_rate)
                     + _log_abs(init), f"with decay_rate={decay_rate!r} > 1 the value")
    return lambda t: init * power(decay_rate, to_float(t // step_size))


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
    levels = mx.array([init * gamma**k for k in range(len(milestones) + 1)], dtype=mx.float32)
    table = mx.array(milestones, dtype=mx.int64)
    return lambda t: mx.take(levels, count_at_most(table, t))


@register
def cosine_decay(init: float, decay_steps: int, end: float = 0.0, *,
                 exponent: float = 1.0) -> StepFunction:
    r"""Cosine annealing from ``init`` to ``end`` over ``decay_steps``, then ``end``.

    .. math::
        \eta_t = \eta_{end} + (\eta_0 - \eta_{end})
                 \Bigl(\tfrac12\bigl(1 + \cos(\pi \min(t, T)/T)\bigr)\Bigr)^{p}

    Matches ``mlx.optimizers.cosine_decay``, optax's ``cosine_decay_schedule`` (with
    ``alpha = end/init``) and PyTorch's ``CosineAnnealingLR`` over its first half-period.

    Example:
        >>> [round(v, 4) for v in cosine_decay(1.0, 4).values(6).tolist()]
        [1.0, 0.8536, 0.5, 0.1464, 0.0, 0.0]
    """
    init = check_real("init", init)
    decay_steps = check_int("decay_steps", decay_steps)
    end = check_real("end", end)
    exponent = check_positive("exponent", exponent)
    check_span("init", init, "end", end)

    def body(t):
        shape = half_cosine(to_float(decay_steps - mx.minimum(t, decay_steps)), 1 / decay_steps)
        if exponent != 1.0:
            shape = mx.power(shape, exponent)
        # An eager call costs per recorded op: skip the no-op addition of end = 0.
        return (init - end) * shape + end if end else init * shape

    return body


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
        remaining = to_float(steps - mx.minimum(t, steps))
        return remaining * ((init - end) / steps) + end

    return body


@register
def polynomial_decay(init: float, decay_steps: int, end: float = 0.0, *, power: float = 1.0,
                     cycle: bool = False) -> StepFunction:
    r"""Polynomial decay (Keras ``PolynomialDecay``).

    .. math::
        \eta_t = (\eta_0 - \eta_{end}) (1 - t/D)^{p} + \eta_{end}

    with :math:`t` clamped to :math:`D` = ``decay_steps``; with ``cycle`` the horizon
    grows instead to the next multiple of ``decay_steps``, :math:`D \lceil t/D \rceil`.

    Example:
        >>> polynomial_decay(1.0, 4, power=2.0).values(6).tolist()
        [1.0, 0.5625, 0.25, 0.0625, 0.0, 0.0]
    """
    init = check_real("init", init)
    decay_steps = check_int("decay_steps", decay_steps)
    end = check_real("end", end)
    exponent = check_positive("power", power)
    cycle = check_bool("cycle", cycle)
    check_span("init", init, "end", end)

    def body(t):
        if cycle:
            horizon = decay_steps * mx.maximum((t + decay_steps - 1) // decay_steps, 1)
            remaining = to_float(horizon - t) / to_float(horizon)
        else:
            remaining = to_float(decay_steps - mx.minimum(t, decay_steps)) / decay_steps
        return (init - end) * mx.power(remaining, exponent) + end

    return body


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

    return body


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
    return lambda t: mx.take(levels, count_at_most(table, t))



def _log_abs(value: float) -> float:
    """``ln |value|``, with 0 counting as 1 (no growth check needed on a zero value)."""
    return math.log(max(abs(value), 1.0))
