"""Periodic schedules: cyclic exponential decay (CED), cyclical learning rates and
momentum (Smith's triangular cycles), and cosine annealing with warm restarts."""

from __future__ import annotations

import math

import mlx.core as mx

from ._checks import check_choice, check_int, check_ordered, check_positive, check_real
from ._math import count_at_most, exact_ratio, half_cosine, power, to_float
from .base import Schedule
from .config import register

CYCLIC_MODES = ("triangular", "triangular2", "exp_range")


@register
def cyclic_exponential_decay(init: float, decay_rate: float, cycle_length: int, *,
                             end: float = 0.0, decay_steps: int = 1) -> Schedule:
    r"""Exponential decay whose value swells and ebbs on a cosine cycle (CED).

    .. math::
        \eta_t = \eta_{end} + (\eta_0 - \eta_{end})\, r^{t/d}\,
                 \tfrac12\bigl(1 + \cos(2\pi\,(t \bmod T)/T)\bigr)

    The envelope :math:`\eta_{end} + (\eta_0 - \eta_{end}) r^{t/d}` decays as in
    :func:`exponential_decay`; the cosine factor returns the rate to that envelope at the
    start of every cycle of ``cycle_length`` steps, which lets training leave a poor
    basin, and brings it down to ``end`` mid-cycle.

    Example:
        >>> lr = cyclic_exponential_decay(0.1, 0.99, cycle_length=4)
        >>> [round(v, 4) for v in lr.values(6).tolist()]
        [0.1, 0.0495, 0.0, 0.0485, 0.0961, 0.0475]
    """
    init = check_real("init", init)
    decay_rate = check_positive("decay_rate", decay_rate)
    cycle_length = check_int("cycle_length", cycle_length)
    end = check_real("end", end)
    decay_steps = check_int("decay_steps", decay_steps)

    def body(t):
        envelope = power(decay_rate, exact_ratio(t, decay_steps))
        phase = t % cycle_length
        # ½(1 + cos(2πp/T)) = cos²(πp/T) = sin²(π/2·(T - 2p)/T), exact integer T - 2p.
        wave = half_cosine(to_float(cycle_length - 2 * phase), 1 / cycle_length)
        return end + (init - end) * envelope * wave

    return Schedule(body, "cyclic_exponential_decay")


def _triangle(t: mx.array, step_size_up: int, step_size_down: int, mode: str,
              gamma: float) -> mx.array:
    """PyTorch ``CyclicLR``'s scale: the triangle wave in [0, 1] times its amplitude."""
    period = step_size_up + step_size_down
    cycle = t // period
    position = t - cycle * period
    rising = to_float(position) / step_size_up
    falling = to_float(period - position) / step_size_down
    wave = mx.where(position <= step_size_up, rising, falling)
    if mode == "triangular2":
        wave = wave * mx.power(mx.array(0.5, mx.float32), to_float(cycle))
    elif mode == "exp_range":
        wave = wave * power(gamma, to_float(t)) if gamma != 1.0 else wave
    return wave


def _check_cycle(step_size_up, step_size_down, mode, gamma):
    step_size_up = check_int("step_size_up", step_size_up)
    step_size_down = step_size_up if step_size_down is None else check_int(
        "step_size_down", step_size_down)
    mode = check_choice("mode", mode, CYCLIC_MODES)
    gamma = check_real("gamma", gamma, low=0.0, low_open=True, high=1.0)
    return step_size_up, step_size_down, mode, gamma


@register
def cyclic_lr(base_lr: float, max_lr: float, step_size_up: int = 2000, *,
              step_size_down: int | None = None, mode: str = "triangular",
              gamma: float = 1.0) -> Schedule:
    r"""Cyclical learning rate (Smith 2017; PyTorch ``CyclicLR``).

    .. math::
        \eta_t = \eta_{base} + (\eta_{max} - \eta_{base})\, w(t)\, a(t)

    where :math:`w` is a triangle wave rising over ``step_size_up`` steps and falling
    over ``step_size_down`` (default: the same), and the amplitude :math:`a` is 1
    (``"triangular"``), halves every cycle (``"triangular2"``), or is
    :math:`\gamma^t` (``"exp_range"``).

    Example:
        >>> lr = cyclic_lr(0.1, 0.5, step_size_up=2, mode="triangular2")
        >>> [round(v, 4) for v in lr.values(9).tolist()]
        [0.1, 0.3, 0.5, 0.3, 0.1, 0.2, 0.3, 0.2, 0.1]
    """
    base_lr = check_real("base_lr", base_lr)
    max_lr = check_real("max_lr", max_lr)
    check_ordered("base_lr", base_lr, "max_lr", max_lr)
    up, down, mode, gamma = _check_cycle(step_size_up, step_size_down, mode, gamma)
    return Schedule(lambda t: base_lr + (max_lr - base_lr) * _triangle(t, up, down, mode, gamma),
                    "cyclic_lr")


@register
def cyclic_momentum(base_momentum: float, max_momentum: float, step_size_up: int = 2000, *,
                    step_size_down: int | None = None, mode: str = "triangular",
                    gamma: float = 1.0) -> Schedule:
    r"""The momentum PyTorch ``CyclicLR`` cycles inversely to the rate.

    .. math::
        m_t = m_{max} - (m_{max} - m_{base})\, w(t)\, a(t)

    Use it with :func:`cyclic_lr` of the same cycle arguments: momentum is lowest when
    the rate is highest.

    Example:
        >>> m = cyclic_momentum(0.8, 0.9, step_size_up=2)
        >>> [round(v, 4) for v in m.values(5).tolist()]
        [0.9, 0.85, 0.8, 0.85, 0.9]
    """
    base_momentum = check_real("base_momentum", base_momentum, low=0.0)
    max_momentum = check_real("max_momentum", max_momentum, low=0.0)
    check_ordered("base_momentum", base_momentum, "max_momentum", max_momentum)
    up, down, mode, gamma = _check_cycle(step_size_up, step_size_down, mode, gamma)
    return Schedule(
        lambda t: max_momentum - (max_momentum - base_momentum) * _triangle(t, up, down, mode,
                                                                            gamma),
        "cyclic_momentum")


# Restart tables stop here: no step counter reaches 2**62.
_LAST_STEP = 2**62


@register
def cosine_restarts(init: float, first_decay_steps: int, *, t_mul: float = 2.0,
                    m_mul: float = 1.0, end: float = 0.0) -> Schedule:
    r"""Cosine annealing with warm restarts (SGDR; Keras ``CosineDecayRestarts``).

    Cycle :math:`i` lasts :math:`T_0 t_{mul}^i` steps and starts from
    :math:`m_{mul}^i` times the first peak:

    .. math::
        \eta_t = \eta_{end} + (\eta_0 - \eta_{end})\, m_{mul}^{i}\,
                 \tfrac12\bigl(1 + \cos(\pi\, (t - S_i)/(T_0 t_{mul}^i))\bigr)

    where :math:`S_i` is the first step of cycle :math:`i`. This is Keras's schedule with
    ``alpha = end/init``; PyTorch's ``CosineAnnealingWarmRestarts(T_0, T_mult, eta_min)``
    is ``cosine_restarts(lr, T_0, t_mul=T_mult, end=eta_min)``.

    Example:
        >>> lr = cosine_restarts(1.0, 2, t_mul=2.0)
        >>> [round(v, 4) for v in lr.values(7).tolist()]
        [1.0, 0.5, 1.0, 0.8536, 0.5, 0.1464, 1.0]
    """
    init = check_real("init", init)
    first_decay_steps = check_int("first_decay_steps", first_decay_steps)
    t_mul = check_real("t_mul", t_mul, low=1.0)
    m_mul = check_real("m_mul", m_mul, low=0.0)
    end = check_real("end", end)
    m_base = mx.array(m_mul, mx.float32)

    if t_mul == 1.0:
        def body(t):
            cycle = t // first_decay_steps
            remaining = to_float((cycle + 1) * first_decay_steps - t) / first_decay_steps
            return end + (init - end) * mx.power(m_base, to_float(cycle)) * half_cosine(
                remaining)
        return Schedule(body, "cosine_restarts")

    # Cycle starts S_i as host floats; a step t is in cycle i when S_i <= t < S_{i+1},
    # i.e. ceil(S_i) <= t for integer t. Built until no step counter can reach further.
    starts, lengths = [0.0], [float(first_decay_steps)]
    while starts[-1] < _LAST_STEP or len(starts) < 2:
        starts.append(starts[-1] + lengths[-1])
        lengths.append(lengths[-1] * t_mul)
    first_step = mx.array([math.ceil(s) for s in starts[1:-1]] or [_LAST_STEP], dtype=mx.int64)
    # The last start only bounds the last reachable cycle; clamp it into int64.
    start_whole = mx.array([min(math.floor(s), 2**63 - 1) for s in starts], dtype=mx.int64)
    start_frac = mx.array([s - math.floor(s) for s in starts], dtype=mx.float32)
    length = mx.array(lengths, dtype=mx.float32)

    def body(t):
        cycle = count_at_most(first_step, t)
        # Steps left to the next restart, formed from the exact integer gap.
        left = to_float(mx.take(start_whole, cycle + 1) - t) + mx.take(start_frac, cycle + 1)
        remaining = left / mx.take(length, cycle)
        return end + (init - end) * mx.power(m_base, to_float(cycle)) * half_cosine(remaining)

    return Schedule(body, "cosine_restarts")



