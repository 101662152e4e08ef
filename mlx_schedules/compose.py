"""Building schedules from schedules: joining in sequence, warmup, warmup-stable-decay
and products."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import mlx.core as mx

from ._math import blend, half_cosine, to_float, warmup_fraction
from .base import StepFunction, body_of, bounded, magnitude_of
from .checks import (
    FLOAT32_MAX,
    check_choice,
    check_increasing_ints,
    check_int,
    check_real,
    check_span,
)
from .config import register

DECAY_SHAPES = ("linear", "cosine", "sqrt")
WARMUP_SHAPES = ("linear", "cosine", "log")


@register
def join_schedules(schedules: Sequence[Callable], boundaries: Sequence[int]) -> StepFunction:
    r"""Run schedules one after another.

    Schedule ``i+1`` takes over at ``boundaries[i]`` and receives the step counted from
    there, ``t - boundaries[i]``. Any callable of the step may be joined (MLX's own
    schedules too), but only joins of this package's schedules can be saved as data.

    Example:
        >>> from mlx_schedules import cosine_decay, linear_schedule
        >>> lr = join_schedules([linear_schedule(0.0, 1.0, 2), cosine_decay(1.0, 2)], [2])
        >>> [round(v, 4) for v in lr.values(5).tolist()]
        [0.0, 0.5, 1.0, 0.5, 0.0]
    """
    if isinstance(schedules, (str, bytes)) or not isinstance(schedules, Sequence):
        raise TypeError(f"schedules must be a list of schedules, got {schedules!r}")
    if not schedules:
        raise ValueError("schedules must not be empty")
    boundaries = check_increasing_ints("boundaries", boundaries, minimum=0, allow_empty=True)
    if len(boundaries) != len(schedules) - 1:
        raise ValueError(f"boundaries must have one entry fewer than schedules: got "
                         f"{len(boundaries)} boundaries for {len(schedules)} schedules")
    bodies = []
    for index, schedule in enumerate(schedules):
        if not callable(schedule):
            raise TypeError(f"schedules[{index}] must be a callable of the step, "
                            f"got {schedule!r}")
        bodies.append(body_of(schedule))

    def body(t):
        value = bodies[0](t)
        for boundary, later in zip(boundaries, bodies[1:]):
            value = mx.where(t < boundary, value, later(mx.maximum(t - boundary, 0)))
        return value

    return bounded(body, _largest([magnitude_of(s) for s in schedules]))


@register
def warmup(schedule: Callable, steps: int, *, init: float = 0.0,
           shape: str = "linear") -> StepFunction:
    r"""Warm up from ``init`` to ``schedule(0)`` over ``steps``, then run ``schedule``.

    .. math::
        \eta_t = \begin{cases}
            \eta_{init} + (s(0) - \eta_{init})\, f(t) & t < w \\
            s(t - w) & t \ge w
        \end{cases}

    with the ramp :math:`f(t)` = :math:`t/w` (``shape="linear"``),
    :math:`\tfrac12(1 - \cos(\pi t/w))` (``"cosine"``, Hugging Face's cosine warmup) or
    :math:`\ln(t+1)/\ln(w+1)` (``"log"``, DeepSpeed's logarithmic warmup). Step 0 gives
    exactly ``init``.

    The wrapped schedule starts at step ``w`` with its own step 0, so the peak is used
    exactly once. The peak :math:`s(0)` is evaluated once, when the warmup is built.
    optax's ``warmup_cosine_decay_schedule(i, p, w, d, e)`` is
    ``warmup(cosine_decay(p, d - w, e), w, init=i)``.

    Example:
        >>> from mlx_schedules import constant, cosine_decay
        >>> lr = warmup(cosine_decay(1.0, 2), steps=2)
        >>> [round(v, 4) for v in lr.values(5).tolist()]
        [0.0, 0.5, 1.0, 0.5, 0.0]
        >>> [round(v, 4) for v in warmup(constant(1.0), 4, shape="log").values(5).tolist()]
        [0.0, 0.4307, 0.6826, 0.8614, 1.0]
    """
    if not callable(schedule):
        raise TypeError(f"schedule must be a callable of the step, got {schedule!r}")
    steps = check_int("steps", steps)
    init = check_real("init", init)
    shape = check_choice("shape", shape, WARMUP_SHAPES)
    inner = body_of(schedule)
    # The peak schedule(0) is one number: evaluated once here, so that a call evaluates
    # the wrapped schedule once, and nested warmups cost time linear in their depth.
    at_zero = inner(mx.zeros((), dtype=mx.int64))
    if at_zero.size != 1:
        raise ValueError(f"schedule(0) must be one number, got shape {at_zero.shape}")
    peak = check_real("schedule(0)", at_zero.item())
    check_span("schedule(0)", peak, "init", init)

    def body(t):
        ramp = init + (peak - init) * warmup_fraction(t, steps, shape)
        return mx.where(t < steps, ramp, inner(mx.maximum(t - steps, 0)))

    # the ramp runs from init to the peak, one of the schedule's own values
    return bounded(body, _largest([abs(init), abs(peak), magnitude_of(schedule)]))


@register
def warmup_stable_decay(peak: float, total_steps: int, *, warmup_steps: int,
                        decay_steps: int, init: float = 0.0, end: float = 0.0,
                        decay_shape: str = "linear",
                        warmup_shape: str = "linear") -> StepFunction:
    r"""Warmup-stable-decay (WSD): warm up, hold the peak, decay at the end.

    .. math::
        \eta_t = \begin{cases}
            \eta_{init} + (\eta_{peak} - \eta_{init})\, g(t) & t < w \\
            \eta_{peak} & w \le t < N - D \\
            \eta_{end} + (\eta_{peak} - \eta_{end})\, f\bigl((N - t)/D\bigr) & t \ge N - D
        \end{cases}

    where :math:`f(r)` is :math:`r` (``"linear"``), :math:`\tfrac12(1 - \cos \pi r)`
    (``"cosine"``) or :math:`1 - \sqrt{1 - r}` (``"sqrt"``), and :math:`r` is clamped
    to :math:`[0, 1]`, so the value reaches ``end`` at step :math:`N` and holds. The
    warmup :math:`g(t)` is :math:`t/w` (``warmup_shape="linear"``),
    :math:`\tfrac12(1 - \cos(\pi t/w))` (``"cosine"``) or :math:`\ln(t+1)/\ln(w+1)`
    (``"log"``), as in :func:`warmup`. Step 0 gives exactly ``init`` (``peak`` without
    warmup) and every step from :math:`N` on exactly ``end``.

    ``"sqrt"`` with ``end=0`` is the 1-sqrt cooldown of Hägele et al. 2024 ("Scaling Laws
    and Compute-Optimal Training Beyond Fixed Training Durations"),
    :math:`\eta_{peak}(1 - \sqrt{(t - N + D)/D})`; ``"linear"`` with ``end=0`` and
    ``decay_steps = total_steps - warmup_steps`` is linear decay to zero (Bergsma et al.
    2025, "Straight to Zero").

    Example:
        >>> lr = warmup_stable_decay(1.0, 8, warmup_steps=2, decay_steps=4)
        >>> lr.values(9).tolist()
        [0.0, 0.5, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0]
    """
    peak = check_real("peak", peak)
    total_steps = check_int("total_steps", total_steps)
    warmup_steps = check_int("warmup_steps", warmup_steps, minimum=0)
    decay_steps = check_int("decay_steps", decay_steps)
    init = check_real("init", init)
    end = check_real("end", end)
    decay_shape = check_choice("decay_shape", decay_shape, DECAY_SHAPES)
    warmup_shape = check_choice("warmup_shape", warmup_shape, WARMUP_SHAPES)
    check_span("peak", peak, "init", init)
    check_span("peak", peak, "end", end)
    if warmup_steps + decay_steps > total_steps:
        raise ValueError(f"warmup_steps + decay_steps must be <= total_steps, got "
                         f"{warmup_steps} + {decay_steps} > {total_steps}")

    def body(t):
        left = to_float(mx.clip(total_steps - t, 0, decay_steps)) / decay_steps
        if decay_shape == "cosine":
            left = half_cosine(left)
        elif decay_shape == "sqrt":
            # 1 - sqrt(1 - r) as r/(1 + sqrt(1 - r)), with 1 - r the exact fraction done:
            # 1 - r in float32 rounds to 0 for the first steps of a long cooldown (r within
            # 2**-25 of 1), which would hold the peak there
            done = to_float(mx.clip(t - (total_steps - decay_steps), 0, decay_steps))
            left = left / (1.0 + mx.sqrt(done / decay_steps))
        # weights exactly 1 (stable phase) and 0 (the end): peak and end to the bit
        value = blend(peak, end, left)
        if warmup_steps:
            ramp = init + (peak - init) * warmup_fraction(t, warmup_steps, warmup_shape)
            value = mx.where(t < warmup_steps, ramp, value)
        return value

    return bounded(body, max(abs(init), abs(peak), abs(end)))


@register
def multiply(*factors: Callable | float) -> StepFunction:
    r"""The product of schedules and numbers, step by step.

    .. math::
        \eta_t = \prod_i f_i(t)

    This is PyTorch's ``ChainedScheduler`` of multiplicative schedulers (``ConstantLR``,
    ``LinearLR``, ``ExponentialLR``, ``StepLR``, ``MultiStepLR``, ``PolynomialLR``), each
    of which scales the rate by its own factor: the base rate is a number, and each
    scheduler the schedule of its factor. The numbers are multiplied together first (in
    float64), then the schedules' float32 values in the order given.

    The product must stay within float32's range: when every factor is a schedule of this
    package (each knows the largest magnitude it reaches) or a number, the product of
    those largest magnitudes must be at most about 3.4e38, or building raises
    ``ValueError`` naming the factors. This bound is reached only where the factors peak
    at the same step; a foreign callable's values are unknown and not checked.

    Example:
        >>> from mlx_schedules import exponential_decay, piecewise_constant
        >>> # PyTorch: ConstantLR(factor=0.1, total_iters=2) chained with ExponentialLR(0.9)
        >>> lr = multiply(1.0, piecewise_constant([1], [0.1, 1.0]), exponential_decay(1.0, 0.9))
        >>> [round(v, 4) for v in lr.values(5).tolist()]
        [0.1, 0.09, 0.81, 0.729, 0.6561]
    """
    if not factors:
        raise ValueError("factors: multiply needs at least one schedule or number")
    number, bodies, reaches = 1.0, [], []
    for index, factor in enumerate(factors):
        if callable(factor):
            bodies.append(body_of(factor))
            reaches.append((f"factors[{index}] reaches", magnitude_of(factor)))
        else:
            number *= check_real(f"factors[{index}]", factor)
            reaches.append((f"factors[{index}] is", abs(float(factor))))
    number = check_real("the product of the numbers in factors", number)
    magnitude = _product([m for _, m in reaches])
    if magnitude is not None and magnitude > FLOAT32_MAX:
        detail = ", ".join(f"{what} {m:.4g}" for what, m in reaches)
        raise ValueError(f"factors: their product can reach {magnitude:.4g} in magnitude, beyond "
                         f"float32's range (about {FLOAT32_MAX:.3g}): {detail}")

    def body(t):
        value = mx.full(t.shape, number, dtype=mx.float32) if not bodies else bodies[0](t)
        if bodies and number != 1.0:
            value = number * value
        for later in bodies[1:]:
            value = value * later(t)
        return value

    return bounded(body, magnitude)


def _product(magnitudes: list[float | None]) -> float | None:
    """The product of the magnitudes (``None`` if one is unknown; 0 if one is 0, even
    beside a product that overflows float64)."""
    if any(m is None for m in magnitudes):
        return None
    if 0.0 in magnitudes:
        return 0.0
    return math.exp(sum(math.log(m) for m in magnitudes if m is not None))


def _largest(magnitudes: list[float | None]) -> float | None:
    """The largest of the magnitudes, ``None`` if one is unknown."""
    if any(m is None for m in magnitudes):
        return None
    return max(m for m in magnitudes if m is not None)
