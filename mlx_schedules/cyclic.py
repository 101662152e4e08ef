"""Periodic schedules: cyclic exponential decay (CED), cyclical learning rates and
momentum (Smith's triangular cycles), and cosine annealing with warm restarts."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import mlx.core as mx

from ._math import (
    MAX_SELECT_CHAIN,
    blend,
    count_at_most,
    exact_ratio,
    half_cosine,
    pick_by_step,
    power,
    scalar_columns,
    to_float,
)
from .base import StepFunction, bounded
from .checks import (
    MAX_STEP,
    MAX_STEP_TEXT,
    check_choice,
    check_growth,
    check_int,
    check_ordered,
    check_positive,
    check_real,
    check_span,
)
from .config import register

CYCLIC_MODES = ("triangular", "triangular2", "exp_range")
# PyTorch's names for what a custom scale_fn receives: the cycle number or the step.
SCALE_MODES = ("cycle", "iterations")


@register
def cyclic_exponential_decay(init: float, decay_rate: float, cycle_length: int, *,
                             end: float = 0.0, decay_steps: int = 1) -> StepFunction:
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
    check_span("init", init, "end", end)
    # The value is end + (init - end)·w with 0 <= w <= the envelope's largest value.
    magnitude = max(abs(init), abs(end))
    if decay_rate > 1:
        check_growth("decay_rate", MAX_STEP / decay_steps * math.log(decay_rate)
                     + math.log(max(abs(init - end), 1.0)),
                     f"with decay_rate={decay_rate!r} > 1 the envelope")
        magnitude = abs(end) + abs(init - end) * math.exp(MAX_STEP / decay_steps
                                                          * math.log(decay_rate))

    def body(t):
        envelope = power(decay_rate, exact_ratio(t, decay_steps))
        phase = t % cycle_length
        # ½(1 + cos(2πp/T)) = cos²(πp/T) = sin²(π/2·(T - 2p)/T), exact integer T - 2p.
        wave = half_cosine(to_float(cycle_length - 2 * phase), 1 / cycle_length)
        return blend(init, end, envelope * wave)

    return bounded(body, magnitude)


def _triangle(t: mx.array, step_size_up: int, step_size_down: int, mode: str,
              gamma: float, scale_fn: Callable | None = None,
              scale_mode: str = "cycle") -> mx.array:
    """PyTorch ``CyclicLR``'s scale: the triangle wave in [0, 1] times its amplitude."""
    period = step_size_up + step_size_down
    cycle = t // period
    position = t - cycle * period
    rising = to_float(position) / step_size_up
    falling = to_float(period - position) / step_size_down
    wave = mx.where(position <= step_size_up, rising, falling)
    if scale_fn is not None:
        # PyTorch numbers cycles from 1: its cycle is floor(1 + t/period)
        argument = cycle + 1 if scale_mode == "cycle" else t
        return wave * _as_float32(scale_fn(argument))
    if mode == "triangular2":
        wave = wave * mx.power(mx.array(0.5, mx.float32), to_float(cycle))
    elif mode == "exp_range":
        wave = wave * power(gamma, to_float(t)) if gamma != 1.0 else wave
    return wave


def _as_float32(value: Any) -> mx.array:
    if not isinstance(value, mx.array):
        value = mx.array(value)
    return value if value.dtype == mx.float32 else value.astype(mx.float32)


def _check_scale_fn(scale_fn: Any, scale_mode: str, mode: str, gamma: float) -> None:
    """A custom amplitude: a callable of an int64 array, returning finite numbers."""
    if scale_fn is None:
        if scale_mode != "cycle":
            raise ValueError(f"scale_mode={scale_mode!r} applies only with a scale_fn "
                             "(mode chooses the amplitude without one)")
        return
    if not callable(scale_fn):
        raise TypeError(f"scale_fn must be a function of an mlx int64 array (the cycle "
                        f"number or the step), got {scale_fn!r}")
    if mode != "triangular" or gamma != 1.0:
        raise ValueError(f"scale_fn replaces mode and gamma (mode={mode!r}, gamma={gamma!r} "
                         "given): leave them at their defaults with a scale_fn")
    probe = mx.array([1, 2] if scale_mode == "cycle" else [0, 1], dtype=mx.int64)
    try:
        values = _as_float32(scale_fn(probe))
        values = mx.broadcast_to(values, probe.shape)
        finite = bool(mx.all(mx.isfinite(values)).item())
    except Exception as error:   # noqa: BLE001 - any failure of user code, reported as such
        raise ValueError(f"scale_fn must map an mlx int64 array to numbers; called on "
                         f"{probe.tolist()} it raised {type(error).__name__}: {error}"
                         ) from error
    if not finite:
        raise ValueError(f"scale_fn must return finite numbers; on {probe.tolist()} it "
                         f"returned {values.tolist()}")


def _check_cycle(step_size_up, step_size_down, mode, gamma):
    step_size_up = check_int("step_size_up", step_size_up)
    step_size_down = step_size_up if step_size_down is None else check_int(
        "step_size_down", step_size_down)
    if step_size_up + step_size_down > MAX_STEP:
        raise ValueError(f"step_size_up + step_size_down must be <= {MAX_STEP_TEXT}, got "
                         f"{step_size_up} + {step_size_down}")
    mode = check_choice("mode", mode, CYCLIC_MODES)
    gamma = check_real("gamma", gamma, low=0.0, low_open=True, high=1.0)
    return step_size_up, step_size_down, mode, gamma


@register
def cyclic_lr(base_lr: float, max_lr: float, step_size_up: int = 2000, *,
              step_size_down: int | None = None, mode: str = "triangular",
              gamma: float = 1.0, scale_fn: Callable | None = None,
              scale_mode: str = "cycle") -> StepFunction:
    r"""Cyclical learning rate (Smith 2017; PyTorch ``CyclicLR``).

    .. math::
        \eta_t = \eta_{base} + (\eta_{max} - \eta_{base})\, w(t)\, a(t)

    where :math:`w` is a triangle wave rising over ``step_size_up`` steps and falling
    over ``step_size_down`` (default: the same), and the amplitude :math:`a` is 1
    (``"triangular"``), halves every cycle (``"triangular2"``), or is
    :math:`\gamma^t` (``"exp_range"``).

    A custom amplitude, as PyTorch's ``CyclicLR(scale_fn=..., scale_mode=...)``:
    ``scale_fn`` is a function written in ``mlx.core`` operations of an ``int64`` array,
    the cycle number :math:`c = \lfloor t/(s_{up}+s_{down}) \rfloor + 1` (counted from 1)
    with ``scale_mode="cycle"``, or the step :math:`t` with ``scale_mode="iterations"``;
    :math:`a = ` ``scale_fn(c)`` or ``scale_fn(t)``. It replaces ``mode`` and ``gamma``.
    A function is not data: such a schedule's ``to_config`` raises ``ValueError``.

    Example:
        >>> lr = cyclic_lr(0.1, 0.5, step_size_up=2, mode="triangular2")
        >>> [round(v, 4) for v in lr.values(9).tolist()]
        [0.1, 0.3, 0.5, 0.3, 0.1, 0.2, 0.3, 0.2, 0.1]
        >>> lr = cyclic_lr(0.1, 0.5, step_size_up=2, scale_fn=lambda c: 1.0 / c)
        >>> [round(v, 4) for v in lr.values(13).tolist()]
        [0.1, 0.3, 0.5, 0.3, 0.1, 0.2, 0.3, 0.2, 0.1, 0.1667, 0.2333, 0.1667, 0.1]
    """
    base_lr = check_real("base_lr", base_lr)
    max_lr = check_real("max_lr", max_lr)
    check_ordered("base_lr", base_lr, "max_lr", max_lr)
    check_span("max_lr", max_lr, "base_lr", base_lr)
    up, down, mode, gamma = _check_cycle(step_size_up, step_size_down, mode, gamma)
    scale_mode = check_choice("scale_mode", scale_mode, SCALE_MODES)
    _check_scale_fn(scale_fn, scale_mode, mode, gamma)
    # the built-in amplitudes are at most 1; a user's scale_fn may be anything
    magnitude = None if scale_fn is not None else max(abs(base_lr), abs(max_lr))
    return bounded(lambda t: base_lr + (max_lr - base_lr) * _triangle(t, up, down, mode, gamma,
                                                                      scale_fn, scale_mode),
                   magnitude)


@register
def cyclic_momentum(base_momentum: float, max_momentum: float, step_size_up: int = 2000, *,
                    step_size_down: int | None = None, mode: str = "triangular",
                    gamma: float = 1.0) -> StepFunction:
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
    return bounded(lambda t: max_momentum - (max_momentum - base_momentum)
                   * _triangle(t, up, down, mode, gamma), max_momentum)


# Cycle starts are tabulated for at most this many cycles: every cycle when there are no
# more (exact integer comparisons locate a step), or every M-th cycle beyond, with the
# cycles in between located in closed form from the nearest tabulated one. Building and
# evaluating stay cheap for any t_mul > 1.
MAX_RESTART_CYCLES = 1 << 16


@register
def cosine_restarts(init: float, first_decay_steps: int, *, t_mul: float = 2.0,
                    m_mul: float = 1.0, end: float = 0.0,
                    cycle_limit: int | None = None) -> StepFunction:
    r"""Cosine annealing with warm restarts (SGDR; Keras ``CosineDecayRestarts``).

    Cycle :math:`i` lasts :math:`T_0 t_{mul}^i` steps and starts from
    :math:`m_{mul}^i` times the first peak:

    .. math::
        \eta_t = \eta_{end} + (\eta_0 - \eta_{end})\, m_{mul}^{i}\,
                 \tfrac12\bigl(1 + \cos(\pi\, (t - S_i)/(T_0 t_{mul}^i))\bigr)

    where cycle :math:`i` holds the steps :math:`S_i \le t < S_{i+1}`, with Keras's
    closed form :math:`S_i = T_0 (t_{mul}^i - 1)/(t_{mul} - 1)` (:math:`i T_0` for
    ``t_mul=1``; not an integer in general). This is Keras's schedule with
    ``alpha = end/init``; PyTorch's ``CosineAnnealingWarmRestarts(T_0, T_mult, eta_min)``
    is ``cosine_restarts(lr, T_0, t_mul=T_mult, end=eta_min)``.

    Any ``t_mul > 1`` is accepted. The cycle starts are worked out when the schedule is
    built in binary fixed point with 128 fractional bits (exact for ``t_mul`` = 1.5, 2 or
    3, where float64 sums are off beyond ``2**53``). When at most ``MAX_RESTART_CYCLES``
    (65,536) cycles start before step ``2**62`` (``t_mul`` from about 1.0007 with
    ``first_decay_steps=1``, closer to 1 for longer first cycles), every start is
    tabulated and a step finds its cycle by exact integer comparison. With more cycles,
    every :math:`M`-th start is tabulated (:math:`M` = cycles / 65,536, rounded up) and a
    step is placed among the :math:`M` cycles after it from the closed form, with the
    starts' integer parts in int64 (see ``_anchored_cycles``): steps next to a restart
    land in the right cycle, checked against a 60-digit reference up to ``2**62`` for
    ``t_mul`` down to 1 + 1e-7; within about 1e-9 of 1 (:math:`M` beyond about
    :math:`2^{20}`) that placement becomes approximate. With ``m_mul > 1`` the peaks grow,
    and must stay within float32 over every cycle that starts before step ``2**62``.

    With ``cycle_limit`` :math:`L`, the value is ``end`` from the step where cycle
    :math:`L` would start (after :math:`L` complete cycles) and holds: with ``m_mul=1``
    this is timm's ``CosineLRScheduler(t_initial=T_0, cycle_mul=t_mul, lr_min=end,
    cycle_limit=L)`` per step. Step 0 gives exactly ``init``.

    Example:
        >>> lr = cosine_restarts(1.0, 2, t_mul=2.0)
        >>> [round(v, 4) for v in lr.values(7).tolist()]
        [1.0, 0.5, 1.0, 0.8536, 0.5, 0.1464, 1.0]
        >>> [round(v, 4) for v in cosine_restarts(1.0, 2, cycle_limit=1).values(4).tolist()]
        [1.0, 0.5, 0.0, 0.0]
    """
    init = check_real("init", init)
    first_decay_steps = check_int("first_decay_steps", first_decay_steps)
    t_mul = check_real("t_mul", t_mul, low=1.0)
    m_mul = check_real("m_mul", m_mul, low=0.0)
    end = check_real("end", end)
    check_span("init", init, "end", end)
    cycle_limit = None if cycle_limit is None else check_int("cycle_limit", cycle_limit)
    amplitude = init - end

    if t_mul == 1.0:
        _check_peaks(m_mul, amplitude, MAX_STEP // first_decay_steps)
        m_base = mx.array(m_mul, mx.float32)
        stop = None if cycle_limit is None else cycle_limit * first_decay_steps

        def equal_cycles(t):
            cycle = t // first_decay_steps
            # Steps left to the restart, an exact integer (no (cycle+1)·T_0 to overflow).
            left = first_decay_steps - (t - cycle * first_decay_steps)
            wave = half_cosine(to_float(left), 1 / first_decay_steps)
            if m_mul != 1.0:
                wave = mx.power(m_base, to_float(cycle)) * wave
            return end + amplitude * wave
        return _pin_ends(equal_cycles, init, end, stop,
                         _largest_value(end, amplitude, m_mul, MAX_STEP // first_decay_steps))

    cycles = _cycles_before_max_step(first_decay_steps, t_mul)
    if cycle_limit is not None and cycle_limit < cycles:
        # Cycles from the limit on are never evaluated: fewer to tabulate.
        cycles, limited = cycle_limit, True
    else:
        limited = False
    _check_peaks(m_mul, amplitude, cycles - 1)
    if cycles <= MAX_RESTART_CYCLES:
        periodic, stop = _tabulated_cycles(first_decay_steps, t_mul, m_mul, end, amplitude,
                                           cycle_limit)
    else:
        periodic = _anchored_cycles(first_decay_steps, t_mul, m_mul, end, amplitude, cycles)
        # Cycle L starts at ceil(S_L); a limit beyond 2**62 is never reached.
        stop = (math.ceil(_cycle_start(cycles, first_decay_steps, t_mul)) if limited
                else None)
    return _pin_ends(periodic, init, end, stop,
                     _largest_value(end, amplitude, m_mul, cycles - 1))


def _cycle_start(i: int, first_decay_steps: int, t_mul: float) -> float:
    """Keras's :math:`S_i = T_0 (t_{mul}^i - 1)/(t_{mul} - 1)` in float64, without the
    cancellation of ``t_mul**i - 1`` for ``t_mul`` near 1 (``t_mul - 1`` is exact)."""
    growth = i * math.log1p(t_mul - 1.0)
    if growth > 700.0:   # beyond float64, and far beyond 2**62
        return math.inf
    return first_decay_steps * math.expm1(growth) / (t_mul - 1.0)


def _cycles_before_max_step(first_decay_steps: int, t_mul: float) -> int:
    """How many cycles start at a step ``<= 2**62``: the closed form's estimate, checked
    against the starts on either side."""
    estimate = math.log1p((t_mul - 1.0) * MAX_STEP / first_decay_steps) / math.log1p(t_mul - 1)
    last = max(int(estimate), 0)
    while _cycle_start(last + 1, first_decay_steps, t_mul) <= MAX_STEP:
        last += 1
    while last > 0 and _cycle_start(last, first_decay_steps, t_mul) > MAX_STEP:
        last -= 1
    return last + 1


def _tabulated_cycles(first_decay_steps: int, t_mul: float, m_mul: float, end: float,
                      amplitude: float, cycle_limit: int | None):
    """Every cycle's start in a table (at most ``MAX_RESTART_CYCLES`` of them): the
    function of the step, and the step from which a cycle limit holds ``end``."""
    # Cycle starts S_i, walked the way Keras and PyTorch define them (S_{i+1} = S_i + L_i,
    # L_{i+1} = L_i·t_mul), in binary fixed point with 128 fractional bits: exact for
    # t_mul = 2, 3 or 1.5 (a float's t_mul is a binary fraction), where float64 sums are
    # not beyond 2**53; for every cycle that starts at a step <= 2**62, up to the limit.
    unit = 1 << _FIXED_BITS
    numerator, denominator = t_mul.as_integer_ratio()
    denominator_bits = denominator.bit_length() - 1     # a power of 2
    starts: list[int] = [0]
    lengths: list[int] = []
    length = first_decay_steps << _FIXED_BITS
    while starts[-1] <= MAX_STEP << _FIXED_BITS and (cycle_limit is None
                                                      or len(lengths) < cycle_limit):
        lengths.append(length)
        starts.append(starts[-1] + length)
        length = length * numerator >> denominator_bits
    # the first step of each cycle, ceil(S_i)
    begin = [-(-start >> _FIXED_BITS) for start in starts]
    # Cycle L starts at ceil(S_L); a limit beyond the tabulated cycles is never reached.
    stop = (begin[cycle_limit] if cycle_limit is not None and cycle_limit < len(starts)
            else None)
    # A step t is in cycle i when ceil(S_i) <= t < ceil(S_{i+1}).
    first_step = mx.array(begin[1:-1], dtype=mx.int64)
    # Steps left in cycle i, as a fraction of its length: (S_{i+1} - t)/L_i, formed as
    # (anchor_i - t)/L_i + (S_{i+1} - anchor_i)/L_i with an integer anchor_i <= S_{i+1}
    # that int64 holds (the last cycle may end far beyond it), so neither term cancels.
    anchors = [min(start >> _FIXED_BITS, MAX_STEP) for start in starts[1:]]
    # Per cycle, one row of floats: 1/L_i, (S_{i+1} - anchor_i)/L_i and the peak
    # amplitude (init - end)·m_mul**i (in float64 on the host), so that a step gathers
    # one row rather than three values: every gather costs a compiled step a kernel.
    rows = [(unit / n, (s - (a << _FIXED_BITS)) / n,
             amplitude * m_mul**i if m_mul != 1.0 else amplitude)
            for i, (s, a, n) in enumerate(zip(starts[1:], anchors, lengths))]
    if len(lengths) <= MAX_SELECT_CHAIN:
        # Few cycles (a cycle_limit, or a large t_mul): fused selects, no gathers.
        columns = scalar_columns([(anchors, mx.int64)] + [([r[k] for r in rows], mx.float32)
                                                          for k in range(3)])
        starts_of_later = begin[1:-1]

        def per_step(t):
            return pick_by_step(t, starts_of_later, columns)
    else:
        per_cycle = mx.array(rows, dtype=mx.float32)
        anchor = mx.array(anchors, dtype=mx.int64)
        locate = (partial(count_at_most, first_step) if len(lengths) <= 16
                  else _cycle_locator(begin, first_decay_steps, t_mul))

        def per_step(t):
            cycle = locate(t)
            row = mx.take(per_cycle, cycle, axis=0)
            return mx.take(anchor, cycle), row[..., 0], row[..., 1], row[..., 2]

    def periodic(t):
        anchor_step, inverse_length, past_anchor, peak = per_step(t)
        remaining = to_float(anchor_step - t) * inverse_length + past_anchor
        return end + peak * half_cosine(remaining)

    return periodic, stop


def _anchored_cycles(first_decay_steps: int, t_mul: float, m_mul: float, end: float,
                     amplitude: float, cycles: int):
    r"""More cycles than a table holds: every ``M``-th cycle start is tabulated, and the
    ``M`` cycles after it are located in closed form, relative to it.

    Only ``t_mul`` within about 7e-4 of 1 gets here (more than 65,536 cycles before step
    ``2**62``), so :math:`\delta = t_{mul} - 1` is small and exact. From a tabulated start
    :math:`S_c` with length :math:`L_c` (in binary fixed point with 128 fractional bits on the
    host, then split into exact integer parts and float32 fractions), cycle :math:`c + j` starts at

    .. math::
        S_{c+j} = S_c + L_c\, \frac{t_{mul}^j - 1}{\delta}
                = S_c + L_c\, j + L_c \delta\, H_j,
        \qquad H_j = \frac{1}{\delta}\Bigl(\frac{t_{mul}^j - 1}{\delta} - j\Bigr)
                   \approx \frac{j (j - 1)}{2}

    whose integer parts (of :math:`S_c`, :math:`\lfloor L_c \rfloor j` and of the
    fraction of :math:`L_c` times :math:`j`, in fixed point) add in int64, and only the
    rest, :math:`H_j = \binom{j}{2} + \delta\binom{j}{3} + \delta^2\binom{j}{4} + \dots`
    (exactly 0 for the first two cycles) times :math:`L_c \delta` plus fractions below 1,
    is float32: a step is compared with a cycle's first step exactly up to that rest's
    rounding. The candidate :math:`j` (the closed form in float32) is corrected by one
    with the first steps of cycles :math:`c + j` and :math:`c + j + 1`.
    """
    per = -(-cycles // MAX_RESTART_CYCLES)          # M, cycles per tabulated start
    count = -(-cycles // per)
    delta = t_mul - 1.0                             # exact (Sterbenz): t_mul is near 1
    log_t_mul = math.log1p(delta)
    # S_{c+j} - S_c = L_c·C(j,1) + L_c·delta·C(j,2) + L_c·delta**2·C(j,3) + (a float32
    # rest): each coefficient's fraction in fixed point, with bits such that
    # C(j,n)·fraction·2**bits stays inside int64 for every j <= M. A term whose binomial
    # would leave too few bits (M beyond about 2**20: t_mul within about 1e-9 of 1) is
    # float32 only, and the placement of steps near a restart is then approximate.
    terms: list[tuple[int, int | None]] = []
    for n in (1, 2, 3):
        available = min(40, 61 - math.comb(per + 1, n).bit_length())
        terms.append((n, available if available >= 20 else None))
    # The tabulated starts in binary fixed point with 128 fractional bits (Python ints):
    # t_mul and t_mul - 1 are exact binary fractions, t_mul**(k·M) is carried from one
    # tabulated start to the next with a rounding of 2**-128 each.
    unit = 1 << _FIXED_BITS
    numerator, denominator = t_mul.as_integer_ratio()
    excess = numerator - denominator                 # t_mul - 1 = excess/denominator
    # (a float's denominator is a power of 2: dividing by its powers is a shift)
    denominator_bits = denominator.bit_length() - 1
    excess_powers = [(excess ** (n - 1), denominator_bits * (n - 1)) for n in (1, 2, 3)]
    per_group = _fixed_power(numerator * unit // denominator, per)   # t_mul**M
    power_of = unit                                  # t_mul**(k·M)
    begin, ints, floats = [], [], []
    for k in range(count):
        length = first_decay_steps * power_of
        start = (length - first_decay_steps * unit) * denominator // excess
        whole = start >> _FIXED_BITS
        fraction = start - (whole << _FIXED_BITS)
        begin.append(whole + (fraction > 0))
        # the last tabulated start may own fewer than M cycles
        row_int = [min(whole, MAX_STEP), min(per, cycles - k * per) - 1]
        row_float = [fraction / unit, length / unit,
                     amplitude * m_mul ** (k * per) if m_mul != 1.0 else amplitude]
        for (_, n_bits), (multiple, shift_bits) in zip(terms, excess_powers):
            coefficient = length * multiple >> shift_bits
            if n_bits is None:
                row_int += [0, 0]
                row_float.append(coefficient / unit)
                continue
            coefficient_whole = coefficient >> _FIXED_BITS
            below = coefficient - (coefficient_whole << _FIXED_BITS)
            fixed = below >> (_FIXED_BITS - n_bits)
            row_int += [coefficient_whole, fixed]
            # what the fixed point leaves out (below 2**-bits), kept in float32
            row_float.append((below - (fixed << (_FIXED_BITS - n_bits))) / unit)
        # L_c·delta**2, whose C(j,3) times delta(j - 3)/4·(...) is the series' rest
        row_float.append((length * excess_powers[2][0] >> excess_powers[2][1]) / unit)
        ints.append(row_int)
        floats.append(row_float)
        power_of = power_of * per_group >> _FIXED_BITS
    bounds = mx.array(list(zip(begin, begin[1:] + [MAX_STEP + 1])), dtype=mx.int64)
    per_anchor_int = mx.array(ints, dtype=mx.int64)
    per_anchor = mx.array(floats, dtype=mx.float32)
    last = count - 1
    scale = delta / first_decay_steps
    inverse_log = 1.0 / log_t_mul

    masks = [None if n_bits is None else
             (mx.array((1 << n_bits) - 1, mx.int64), mx.array(n_bits, mx.int64), n_bits)
             for _, n_bits in terms]
    m_base = mx.array(m_mul, mx.float32)

    def first_step(j, ints, floats):
        """The first integer step of cycle c + j; that start's integer part and fraction."""
        jf = to_float(j)
        # C(j,1), C(j,2), C(j,3) exact in int64, each times its coefficient's integer part
        # and fixed-point fraction; the series' next terms, L_c·delta**3·C(j,4)·(1 +
        # delta(j-4)/5 + ...), in float32 (delta·j stays below about 7e-4)
        binomials_f = [jf, jf * (jf - 1) / 2]
        binomials_f.append(binomials_f[1] * (jf - 2) / 3)
        integer, rest = ints[0], floats[0]
        binomial = j
        for index, masked in enumerate(masks):
            if index:   # C(j, n) from C(j, n - 1), exact in int64 when its term is
                binomial = binomial * (j - index) // (index + 1)
            if masked is None:
                rest = rest + floats[3 + index] * binomials_f[index]
                continue
            mask, shift, n_bits = masked
            whole, fixed = ints[2 + 2 * index], ints[3 + 2 * index]
            scaled = binomial * fixed
            integer = integer + whole * binomial + (scaled >> shift)
            rest = (rest + to_float(scaled & mask) * 2.0**-n_bits
                    + floats[3 + index] * binomials_f[index])
        # (a product of ratios, each far below 1: nothing overflows for any t_mul)
        rest = rest + floats[6] * binomials_f[2] * (delta * (jf - 3) / 4) * (
            1 + delta * (jf - 4) / 5 * (1 + delta * (jf - 5) / 6))
        rest_whole = mx.floor(rest)
        integer = integer + rest_whole.astype(mx.int64)
        rest_fraction = rest - rest_whole
        return integer + (rest_fraction > 0).astype(mx.int64), integer, rest_fraction

    def periodic(t):
        # which tabulated start: the closed form over all cycles, off by at most one
        # group of M, corrected with exact integer comparisons
        guess = mx.floor(mx.log1p(to_float(t) * scale) * (inverse_log / per))
        k = mx.clip(guess, 0, last).astype(mx.int64)
        bound = mx.take(bounds, k, axis=0)
        k = k - (t < bound[..., 0]).astype(mx.int64) + (t >= bound[..., 1]).astype(mx.int64)
        k = mx.clip(k, 0, last)
        row_int = mx.take(per_anchor_int, k, axis=0)
        ints = tuple(row_int[..., i] for i in range(8))
        row = mx.take(per_anchor, k, axis=0)
        floats = tuple(row[..., i] for i in range(7))
        whole, most = ints[0], ints[1]
        fraction, length, peak = floats[:3]
        since = to_float(t - whole) - fraction            # steps since S_c (for the guess)
        j = mx.floor(mx.log1p(since * (delta / length)) * inverse_log).astype(mx.int64)
        j = mx.clip(j, 0, most)
        j = (j - (t < first_step(j, ints, floats)[0]).astype(mx.int64)
             + (t >= first_step(j + 1, ints, floats)[0]).astype(mx.int64))
        j = mx.clip(j, 0, most)
        _, next_whole, next_fraction = first_step(j + 1, ints, floats)
        # (S_{c+j+1} - t)/L_{c+j}: an exact integer difference plus the start's fraction
        left = ((to_float(next_whole - t) + next_fraction)
                / (length * mx.exp(to_float(j) * log_t_mul)))
        wave = half_cosine(mx.clip(left, 0.0, 1.0))
        if m_mul != 1.0:
            wave = mx.power(m_base, to_float(j)) * wave
        return end + peak * wave

    return periodic


_FIXED_BITS = 128


def _fixed_power(base: int, exponent: int) -> int:
    """``base**exponent`` for a binary fixed-point ``base`` (``_FIXED_BITS`` fractional
    bits), by squaring: a rounding of about 2**-128 per multiplication."""
    result = 1 << _FIXED_BITS
    while exponent:
        if exponent & 1:
            result = result * base >> _FIXED_BITS
        base = base * base >> _FIXED_BITS
        exponent >>= 1
    return result


def _largest_value(end: float, amplitude: float, m_mul: float, last_cycle: int) -> float:
    """The largest ``|end + amplitude·m_mul**i·w|`` over cycles ``i <= last_cycle`` and
    ``0 <= w <= 1``."""
    peak = abs(amplitude) * (m_mul ** last_cycle if m_mul > 1.0 else 1.0)
    return abs(end) + peak


def _cycle_locator(begin: list[int], first_decay_steps: int, t_mul: float):
    """Which cycle each step is in, for a long table of geometric cycles.

    The closed form :math:`i = \\lfloor \\ln(1 + t (t_{mul} - 1)/T_0) / \\ln t_{mul} \\rfloor`,
    in float32, is off by at most one cycle (rounding, and cycles that start at
    :math:`\\lceil S_i \\rceil`); one exact integer comparison with each neighbouring start
    corrects it. One gather replaces a binary search's one per level, which costs a
    compiled step several times as much.
    """
    begin = begin[:-1]                   # each tabulated cycle's first step, ceil(S_i)
    last = len(begin) - 1
    # each cycle's first step and the next cycle's (the last runs past every step)
    bounds = mx.array(list(zip(begin, begin[1:] + [MAX_STEP + 1])), dtype=mx.int64)
    scale = (t_mul - 1.0) / first_decay_steps
    inverse_log = 1.0 / math.log(t_mul)

    def locate(t):
        guess = mx.floor(mx.log1p(to_float(t) * scale) * inverse_log)
        cycle = mx.clip(guess, 0, last).astype(mx.int64)
        row = mx.take(bounds, cycle, axis=0)
        cycle = cycle - (t < row[..., 0]).astype(mx.int64) + (t >= row[..., 1]).astype(mx.int64)
        return mx.clip(cycle, 0, last)

    return locate


def _pin_ends(periodic, init: float, end: float, stop: int | None, magnitude: float):
    """Exactly ``init`` at step 0 (``end + (init - end)·1`` can miss it by an ulp) and,
    with a cycle limit, exactly ``end`` from step ``stop`` on; ``magnitude`` bounds
    ``|value|``."""
    if stop is not None and stop > MAX_STEP:
        stop = None

    def body(t):
        value = mx.where(t == 0, init, periodic(t))
        return value if stop is None else mx.where(t >= stop, end, value)

    return bounded(body, magnitude)


def _check_peaks(m_mul: float, amplitude: float, last_cycle: int) -> None:
    """With ``m_mul > 1`` the peak of the last reachable cycle must fit in float32."""
    if m_mul > 1.0:
        check_growth("m_mul", last_cycle * math.log(m_mul) + math.log(max(abs(amplitude), 1.0)),
                     f"with m_mul={m_mul!r} > 1 the peak of cycle {last_cycle}")
