"""The rate sweep of a learning-rate range test (Smith 2017).

The schedule is :func:`range_sweep`; ``lr_range_test`` is its former name, kept as an
alias (in code and in configs). The range-test *procedure*, which trains with this sweep
and reads the losses, is ``trainers.lr_range_test``.
"""

from __future__ import annotations

import math

import mlx.core as mx

from ._math import to_float
from .base import StepFunction, bounded
from .checks import check_choice, check_int, check_ordered, check_positive
from .config import register, register_alias

SWEEP_MODES = ("exponential", "linear")


@register
def range_sweep(min_lr: float, max_lr: float, steps: int, *,
                mode: str = "exponential") -> StepFunction:
    r"""The rate sweep of a learning-rate range test: ``min_lr`` at step 0 to ``max_lr`` at
    step ``steps - 1``, then ``max_lr``.

    .. math::
        \eta_t = \eta_{min} (\eta_{max}/\eta_{min})^{x}
        \quad\text{or}\quad \eta_{min} + (\eta_{max} - \eta_{min})\, x,
        \qquad x = \min(t, n-1)/(n-1)

    Also available as ``lr_range_test`` (its former name, rebuilt from configs too).

    Example:
        >>> [round(v, 6) for v in range_sweep(1e-4, 1.0, 5).values(5).tolist()]
        [0.0001, 0.001, 0.01, 0.1, 1.0]
    """
    min_lr = check_positive("min_lr", min_lr)
    max_lr = check_positive("max_lr", max_lr)
    check_ordered("min_lr", min_lr, "max_lr", max_lr)
    steps = check_int("steps", steps, minimum=2)
    mode = check_choice("mode", mode, SWEEP_MODES)
    last = steps - 1
    log_span = math.log(max_lr / min_lr)

    def body(t):
        x = to_float(mx.minimum(t, last)) / last
        if mode == "exponential":
            value = min_lr * mx.exp(log_span * x)
        else:
            value = min_lr + (max_lr - min_lr) * x
        # exp(log(max/min)) in float32 need not round back to max_lr: pin the end
        return mx.where(t >= last, max_lr, value)

    return bounded(body, max_lr)


lr_range_test = range_sweep
register_alias("lr_range_test", range_sweep)
