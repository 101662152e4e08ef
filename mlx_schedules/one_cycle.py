"""The 1-cycle policy (Smith & Topin 2018) for the rate, and its momentum companion.

Values match PyTorch's ``OneCycleLR`` step for step: the phases end at the (possibly
fractional) steps ``pct_start·N - 1`` (and ``2·pct_start·N - 2`` with three phases) and
``N - 1``; a phase's position is ``(t - start) / (end - start)``. Past ``N - 1`` the last
value holds.
"""

from __future__ import annotations

import mlx.core as mx

from ._math import half_cosine, split, to_float
from .base import StepFunction, bounded
from .checks import check_bool, check_choice, check_int, check_ordered, check_real
from .config import register

ANNEAL_STRATEGIES = ("cos", "linear")


def _phase_ends(total_steps: int, pct_start: float, three_phase: bool) -> list[float]:
    """The steps at which PyTorch's phases end, checked to have positive length."""
    ends = [pct_start * total_steps - 1]
    if three_phase:
        ends.append(2 * pct_start * total_steps - 2)
    ends.append(float(total_steps - 1))
    starts = [0.0] + ends[:-1]
    for index, (start, end) in enumerate(zip(starts, ends)):
        if end <= start:
            raise ValueError(
                f"pct_start={pct_start!r} with total_steps={total_steps} gives phase "
                f"{index + 1} no length (it would run from step {start:g} to {end:g}); "
                "raise total_steps or move pct_start away from the edges"
            )
    return ends


def _anneal(start_value: mx.array, end_value: mx.array, left: mx.array, done: mx.array,
            strategy: str) -> mx.array:
    """From ``start_value`` to ``end_value``; ``left``/``done``: the fractions of the phase
    to go and gone.

    Written as a weighted sum of the two levels, each weight formed from its own exact
    integer gap, rather than ``end + (start - end)·w``: that form cancels where the value
    is near a level far below the other (``max_lr/25`` at step 0), costing float32 digits.
    """
    if strategy == "cos":
        left, done = half_cosine(left), half_cosine(done)
    return start_value * left + end_value * done


def _one_cycle_body(total_steps: int, pct_start: float, strategy: str, three_phase: bool,
                    levels: list[float]):
    """The piecewise curve through ``levels`` (one more level than phases)."""
    ends = _phase_ends(total_steps, pct_start, three_phase)
    starts = [0.0] + ends[:-1]
    # Only the phase a step lies in is evaluated: its constants are selected per step
    # (with ``where`` on scalars, which fuses when compiled), rather than evaluating every
    # phase's curve, since a transcendental per phase per step dominates vectorised calls.
    last_step_of = [split(end)[0] for end in ends[:-1]]
    inverse_length = [1.0 / (end - start) for start, end in zip(starts, ends)]

    def body(t):
        t = mx.minimum(t, total_steps - 1)   # past the horizon the last value holds
        # Phase k covers the integer steps up to floor(end_k); the last takes the rest.
        within = [t <= last for last in last_step_of]

        def select(per_phase, dtype):
            value = mx.array(per_phase[-1], dtype)
            for index in reversed(range(len(within))):
                value = mx.where(within[index], mx.array(per_phase[index], dtype), value)
            return value

        scale = select(inverse_length, mx.float32)
        end_whole = select([split(x)[0] for x in ends], mx.int64)
        start_whole = select([split(x)[0] for x in starts], mx.int64)
        left = (to_float(end_whole - t) + select([split(x)[1] for x in ends], mx.float32)) * scale
        done = (to_float(t - start_whole) - select([split(x)[1] for x in starts], mx.float32)
                ) * scale
        value = _anneal(select(levels[:-1], mx.float32), select(levels[1:], mx.float32),
                        left, done, strategy)
        # The phase fractions are formed with a reciprocal, which need not give exactly
        # 1 and 0 at the ends: pin the first and last values to their levels.
        value = mx.where(t == 0, levels[0], value)
        return mx.where(t == total_steps - 1, levels[-1], value)

    # each phase runs between two levels
    return bounded(body, max(abs(v) for v in levels))


@register
def one_cycle(max_lr: float, total_steps: int, *, pct_start: float = 0.3,
              anneal_strategy: str = "cos", div_factor: float = 25.0,
              final_div_factor: float = 1e4, three_phase: bool = False) -> StepFunction:
    r"""The 1-cycle learning rate (PyTorch ``OneCycleLR``).

    The rate rises from :math:`\eta_{max}/\delta` to :math:`\eta_{max}` over the first
    ``pct_start`` of the run, then anneals to
    :math:`\eta_{max}/(\delta\,\delta_{final})`, far below where it started:

    .. math::
        \eta_t = \begin{cases}
          a(\eta_{max}/\delta,\ \eta_{max},\ t/e_1) & t \le e_1 \\
          a(\eta_{max},\ \eta_{max}/(\delta\delta_{final}),\ (t-e_1)/(N-1-e_1)) & t > e_1
        \end{cases}

    with :math:`e_1 = p N - 1` and :math:`a(x, y, s)` the cosine
    :math:`y + (x-y)\tfrac12(1+\cos\pi s)` or linear :math:`x + (y-x)s` interpolation.
    ``three_phase`` returns to :math:`\eta_{max}/\delta` at :math:`2pN-2` before the
    final anneal. The symmetric linear cycle of Smith's first description of the
    policy (2018) is
    ``one_cycle(max_lr, N, pct_start=0.5, anneal_strategy="linear")``. Pair it with
    :func:`one_cycle_momentum`.

    Args:
        max_lr: the peak rate.
        total_steps: the number of optimizer updates in the run.
        pct_start: the fraction of the run spent rising, in (0, 1).
        anneal_strategy: ``"cos"`` or ``"linear"``.
        div_factor: the starting rate is ``max_lr / div_factor``.
        final_div_factor: the final rate is the starting rate / ``final_div_factor``.
        three_phase: add a symmetric descent back to the starting rate before the
            final anneal.

    Example:
        >>> lr = one_cycle(1.0, 10, pct_start=0.5, anneal_strategy="linear",
        ...                div_factor=10.0, final_div_factor=100.0)
        >>> [round(v, 4) for v in lr.values(12).tolist()]
        [0.1, 0.325, 0.55, 0.775, 1.0, 0.8002, 0.6004, 0.4006, 0.2008, 0.001, 0.001, 0.001]
    """
    max_lr = check_real("max_lr", max_lr, low=0.0, low_open=True)
    total_steps = check_int("total_steps", total_steps)
    pct_start = check_real("pct_start", pct_start, low=0.0, high=1.0, low_open=True,
                           high_open=True)
    anneal_strategy = check_choice("anneal_strategy", anneal_strategy, ANNEAL_STRATEGIES)
    div_factor = check_real("div_factor", div_factor, low=0.0, low_open=True)
    final_div_factor = check_real("final_div_factor", final_div_factor, low=0.0,
                                  low_open=True)
    three_phase = check_bool("three_phase", three_phase)
    initial = max_lr / div_factor
    final = initial / final_div_factor
    levels = [initial, max_lr, initial, final] if three_phase else [initial, max_lr, final]
    return _one_cycle_body(total_steps, pct_start, anneal_strategy, three_phase, levels)


@register
def one_cycle_momentum(total_steps: int, *, base_momentum: float = 0.85,
                       max_momentum: float = 0.95, pct_start: float = 0.3,
                       anneal_strategy: str = "cos", three_phase: bool = False) -> StepFunction:
    r"""The momentum PyTorch ``OneCycleLR`` cycles inversely to the rate.

    It falls from ``max_momentum`` to ``base_momentum`` while the rate rises, and climbs
    back while the rate anneals (with ``three_phase``: back up during the second phase,
    then holds ``max_momentum``). Use the same ``total_steps``, ``pct_start``,
    ``anneal_strategy`` and ``three_phase`` as the :func:`one_cycle` it accompanies, for
    SGD's ``momentum`` or Adam's ``beta1`` via :func:`schedule_hyperparameters`.

    Example:
        >>> m = one_cycle_momentum(10, pct_start=0.5, anneal_strategy="linear")
        >>> [round(v, 4) for v in m.values(11).tolist()]
        [0.95, 0.925, 0.9, 0.875, 0.85, 0.87, 0.89, 0.91, 0.93, 0.95, 0.95]
    """
    total_steps = check_int("total_steps", total_steps)
    base_momentum = check_real("base_momentum", base_momentum, low=0.0)
    max_momentum = check_real("max_momentum", max_momentum, low=0.0)
    check_ordered("base_momentum", base_momentum, "max_momentum", max_momentum)
    pct_start = check_real("pct_start", pct_start, low=0.0, high=1.0, low_open=True,
                           high_open=True)
    anneal_strategy = check_choice("anneal_strategy", anneal_strategy, ANNEAL_STRATEGIES)
    three_phase = check_bool("three_phase", three_phase)
    levels = ([max_momentum, base_momentum, max_momentum, max_momentum] if three_phase
              else [max_momentum, base_momentum, max_momentum])
    return _one_cycle_body(total_steps, pct_start, anneal_strategy, three_phase, levels)
