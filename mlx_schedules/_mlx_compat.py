"""Everything this project needs from MLX's optimizers beyond their public API.

``mlx.optimizers.Optimizer`` keeps its schedules in the private dict ``_schedulers``
(filled by ``_maybe_schedule``), and its update rules branch in Python on some
hyperparameters (``if self.momentum <= 0``, ``if weight_decay > 0``). This module is the
only place in the project that relies on either, so an MLX release that changes them is
met here; ``tests/schedules/test_mlx_pinned.py`` pins the behaviour relied upon, by
comparing scheduled runs with MLX's own optimizers bit for bit.

Checked against mlx 0.32.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mlx.core as mx
import mlx.optimizers as optim

__all__ = ["ScheduledValue", "remove_schedule", "schedules_of", "set_schedule"]

StepFunction = Callable[[mx.array], mx.array]


def schedules_of(optimizer: optim.Optimizer) -> dict[str, StepFunction]:
    """A copy of the schedules an optimizer applies at each update, by hyperparameter name.

    Includes ``learning_rate`` when the rate is scheduled (not when it is a number).

    Example:
        >>> import mlx.optimizers as optim
        >>> sorted(schedules_of(optim.SGD(learning_rate=optim.cosine_decay(0.1, 10))))
        ['learning_rate']
        >>> schedules_of(optim.SGD(learning_rate=0.1))
        {}
    """
    return dict(getattr(optimizer, "_schedulers", {}))


def set_schedule(optimizer: optim.Optimizer, name: str, fn: StepFunction) -> None:
    """Make the optimizer set ``state[name] = fn(step)`` before each update, as MLX does for
    a scheduled ``learning_rate``; replaces any schedule ``name`` had.

    The state entry itself is written at the next update; write ``optimizer.state[name]``
    now if something reads it before then.

    Example:
        >>> import mlx.core as mx, mlx.optimizers as optim
        >>> opt = optim.SGD(learning_rate=0.1)
        >>> set_schedule(opt, "learning_rate", lambda step: mx.array(0.5))
        >>> list(schedules_of(opt))
        ['learning_rate']
    """
    if not callable(fn):
        raise TypeError(f"the schedule for {name!r} must be a callable of the step, got {fn!r}")
    optimizer._schedulers[name] = fn


def remove_schedule(optimizer: optim.Optimizer, name: str) -> None:
    """Stop scheduling ``name``; its state entry keeps its last value. No-op if unscheduled.

    Example:
        >>> import mlx.optimizers as optim
        >>> opt = optim.SGD(learning_rate=optim.cosine_decay(0.1, 10))
        >>> remove_schedule(opt, "learning_rate")
        >>> schedules_of(opt), round(opt.learning_rate.item(), 3)
        ({}, 0.1)
    """
    optimizer._schedulers.pop(name, None)


class ScheduledValue(mx.array):
    """A scheduled hyperparameter as MLX's update rules see it: the state's array.

    MLX's ``apply_single`` tests some hyperparameters in Python before using them
    (SGD: ``weight_decay != 0``, ``momentum <= 0``; Lion: ``weight_decay > 0``; Muon:
    ``weight_decay != 0``). A traced array cannot answer such a test inside
    ``mx.compile``, so this array answers comparisons *with zero* as a positive value
    would: the rule takes its general path (apply the decay, use the momentum buffer).
    With a value of 0 that path computes the same update as the skipped one (adding
    ``0·w``, or a momentum buffer that is just the gradient). Arithmetic is the array's
    own, so the update is MLX's unmodified rule on the scheduled value.
    """

    def _positive(self, other: Any, answer: bool, fallback: Callable) -> Any:
        if isinstance(other, (int, float)) and other == 0:
            return answer
        return fallback(other)

    def __gt__(self, other):
        return self._positive(other, True, super().__gt__)

    def __ge__(self, other):
        return self._positive(other, True, super().__ge__)

    def __lt__(self, other):
        return self._positive(other, False, super().__lt__)

    def __le__(self, other):
        return self._positive(other, False, super().__le__)

    def __ne__(self, other):
        return self._positive(other, True, super().__ne__)

    def __eq__(self, other):
        return self._positive(other, False, super().__eq__)

    __hash__ = mx.array.__hash__
