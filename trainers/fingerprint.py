"""What a resume compares: the optimizer's class, its fixed hyperparameters and its schedules.

A checkpoint restores the optimizer's *state* (moments, step counter, scheduled values), but
not the Python object that computes the next update. A resumed run built with another
optimizer class, another momentum or another schedule would silently continue a different
optimization. These descriptions are saved with the run and compared on resume.

A schedule from :mod:`mlx_schedules` is described by its config; any other callable (MLX's
own schedules, a lambda) by its values at a fixed set of steps, which catches a changed shape,
peak or length without needing to know how it was built.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import mlx.core as mx
import mlx.optimizers as optim

from mlx_schedules._mlx_compat import schedules_of

from .optimizers import optimizer_parts

__all__ = ["describe_hyperparameters", "describe_optimizer", "describe_schedules",
           "unwrap_schedule"]

# Steps at which an opaque schedule is evaluated to describe it.
_PROBE_STEPS = (0, 1, 2, 3, 5, 10, 30, 100, 300, 1000, 3000, 10**4, 10**5, 10**6, 10**7)


def unwrap_schedule(schedule: Callable) -> Callable:
    """The schedule a trainer-side wrapper (reduce-on-plateau's scaling) was built around."""
    while hasattr(schedule, "base_schedule"):
        schedule = schedule.base_schedule
    return schedule


def _plain(value: Any) -> Any:
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, list | tuple):
        items = [_plain(v) for v in value]
        return None if any(i is _SKIP for i in items) else items
    if isinstance(value, mx.array) and value.size == 1:
        return _plain(value.item())
    return _SKIP


_SKIP = object()


def describe_optimizer(optimizer: optim.Optimizer) -> str:
    """The optimizer's class name; a ``MultiOptimizer`` lists its parts' classes.

    Example:
        >>> import mlx.optimizers as optim
        >>> describe_optimizer(optim.MultiOptimizer([optim.SGD(0.1), optim.Adam(0.1)],
        ...                                         [lambda p, w: True]))
        'MultiOptimizer(SGD, Adam)'
    """
    if isinstance(optimizer, optim.MultiOptimizer):
        inner = ", ".join(type(o).__name__ for _, o in optimizer_parts(optimizer))
        return f"MultiOptimizer({inner})"
    return type(optimizer).__name__


def describe_hyperparameters(optimizer: optim.Optimizer) -> dict[str, Any]:
    """The optimizer's fixed hyperparameters: its public attributes that are plain values,
    and ``learning_rate`` when it is a constant (names suffixed ``/i`` for the parts of a
    ``MultiOptimizer``).

    Example:
        >>> import mlx.optimizers as optim
        >>> describe_hyperparameters(optim.SGD(learning_rate=0.1, momentum=0.9))
        {'dampening': 0.0, 'learning_rate': 0.10000000149011612, 'momentum': 0.9, 'nesterov': False, 'weight_decay': 0.0}
    """  # noqa: E501
    found = {}
    for suffix, part in optimizer_parts(optimizer):
        for name, value in vars(part).items():
            if name.startswith("_") or name == "state":
                continue
            plain = _plain(value)
            if plain is not _SKIP and plain is not None:
                found[name + suffix] = plain
        if "learning_rate" not in schedules_of(part) and "learning_rate" in part.state:
            found["learning_rate" + suffix] = _plain(part.state["learning_rate"])
    return dict(sorted(found.items()))


def _describe(schedule: Callable) -> Any:
    schedule = unwrap_schedule(schedule)
    to_config = getattr(schedule, "to_config", None)
    if to_config is not None:
        try:
            return {"config": to_config()}
        except (ValueError, TypeError):
            pass  # not describable as data (a custom function inside): probe it
    values = [schedule(mx.array(t, mx.uint64)) for t in _PROBE_STEPS]
    return {"values_at": list(_PROBE_STEPS),
            "values": [float(v.item()) for v in values]}  # host waits, once per run


def describe_schedules(optimizer: optim.Optimizer) -> dict[str, Any]:
    """A description of every scheduled hyperparameter of ``optimizer``, by name.

    Example:
        >>> import mlx.optimizers as optim
        >>> d = describe_schedules(optim.SGD(learning_rate=optim.linear_schedule(0.0, 1.0, 10)))
        >>> d["learning_rate"]["values"][:3]
        [0.0, 0.10000000149011612, 0.20000000298023224]
    """
    return {name + suffix: _describe(fn)
            for suffix, part in optimizer_parts(optimizer)
            for name, fn in sorted(schedules_of(part).items())}
