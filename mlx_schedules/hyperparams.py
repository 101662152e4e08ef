"""Schedules for hyperparameters beyond the learning rate.

MLX optimizers put only ``learning_rate`` on a schedule; ``momentum``, ``betas`` and
``weight_decay`` are plain Python attributes, which a compiled step bakes in as
constants. :func:`schedule_hyperparameters` moves the chosen ones into
``optimizer.state``, next to ``learning_rate``, and registers their schedules with the
optimizer's own scheduling loop. So they

- advance with the optimizer's step counter, exactly like the rate (the k-th update
  uses ``schedule(k)``, and ``optimizer.state[name]`` afterwards holds that value);
- are inputs of a step compiled with ``inputs=optimizer.state`` rather than constants;
- are saved and restored with ``optimizer.state`` (checkpoints hold them).

The optimizer becomes an instance of a subclass (``ScheduledSGD`` for ``SGD``, made once
per class) whose ``momentum``, ``betas`` or ``weight_decay`` attribute reads the state's
array once that hyperparameter is scheduled. The update is MLX's own ``apply_single``,
unmodified; what it needs from MLX beyond the public API is in
:mod:`mlx_schedules._mlx_compat`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mlx.core as mx
import mlx.optimizers as optim

from ._mlx_compat import ScheduledValue, remove_schedule, set_schedule
from .checks import check_real

# Which hyperparameters can be scheduled, by the class that defines them. An optimizer
# takes the entry of the first of these classes along its method resolution order, so a
# subclass (AdamW of Adam, or a user's subclass of SGD) finds its own entry first.
_SUPPORTED: dict[type, tuple[str, ...]] = {
    optim.SGD: ("momentum", "weight_decay"),
    optim.Adam: ("beta1", "beta2"),
    optim.AdamW: ("beta1", "beta2", "weight_decay"),
    optim.Adamax: ("beta1", "beta2"),
    optim.Lion: ("beta1", "beta2", "weight_decay"),
}
if hasattr(optim, "Muon"):   # MLX >= 0.26
    _SUPPORTED[optim.Muon] = ("momentum", "weight_decay")

# The subclass made for each optimizer class, made once.
_SCHEDULED_CLASSES: dict[type, type] = {}


def supported_hyperparameters(optimizer: optim.Optimizer) -> tuple[str, ...]:
    """The names :func:`schedule_hyperparameters` accepts for this optimizer.

    Example:
        >>> import mlx.optimizers as optim
        >>> supported_hyperparameters(optim.AdamW(1e-3))
        ('beta1', 'beta2', 'weight_decay')
    """
    for cls in type(optimizer).__mro__:
        if cls in _SUPPORTED:
            return _SUPPORTED[cls]
    return ()


def _scheduled_names(optimizer: optim.Optimizer) -> frozenset[str]:
    return optimizer.__dict__.get("_scheduled_hyperparameters", frozenset())


def _state_property(name: str) -> property:
    """``momentum`` or ``weight_decay``: the state's scheduled array, else the fixed value."""

    def get(self):
        if name in _scheduled_names(self):
            return ScheduledValue(self.state[name])
        return self.__dict__[name]

    def set_(self, value):
        self.__dict__[name] = value

    return property(get, set_)


def _betas_property() -> property:
    """``betas``: each of ``beta1``/``beta2`` from the state when scheduled."""

    def get(self):
        scheduled = _scheduled_names(self)
        return tuple(ScheduledValue(self.state[f"beta{i + 1}"])
                     if f"beta{i + 1}" in scheduled else fixed
                     for i, fixed in enumerate(self.__dict__["betas"]))

    def set_(self, value):
        self.__dict__["betas"] = value

    return property(get, set_)


def _scheduled_class(cls: type) -> type:
    """A subclass of ``cls`` whose hyperparameters are read from ``self.state`` once
    scheduled; MLX's own ``apply_single`` then uses the scheduled arrays."""
    if cls not in _SCHEDULED_CLASSES:
        names = _SUPPORTED[next(c for c in cls.__mro__ if c in _SUPPORTED)]
        namespace: dict[str, Any] = {name: _state_property(name) for name in names
                                     if not name.startswith("beta")}
        if "beta1" in names:
            namespace["betas"] = _betas_property()
        namespace["__doc__"] = f"{cls.__name__} with hyperparameters on schedules."
        _SCHEDULED_CLASSES[cls] = type(f"Scheduled{cls.__name__}", (cls,), namespace)
    return _SCHEDULED_CLASSES[cls]


def schedule_hyperparameters(optimizer: optim.Optimizer,
                             **schedules: Callable[[mx.array], mx.array] | float
                             ) -> optim.Optimizer:
    """Put ``momentum``, ``beta1``/``beta2`` or ``weight_decay`` on a schedule.

    Each keyword names a hyperparameter and gives a schedule (any callable of the step,
    such as :func:`one_cycle_momentum`) or a fixed number. The optimizer is changed in
    place and returned. Call it before the optimizer's first update and before compiling
    the training step, so the compiled step captures the new state entries.

    Supported: ``momentum`` and ``weight_decay`` on SGD and Muon; ``beta1``, ``beta2`` on
    Adam, AdamW, Adamax and Lion; ``weight_decay`` on AdamW and Lion (and on subclasses
    of these). The update itself is MLX's own rule, reading the scheduled value; a
    scheduled ``momentum`` or ``weight_decay`` always takes the rule's general path
    (momentum buffer, decay term), which for a value of 0 gives the same update.

    Example:
        >>> import mlx.optimizers as optim
        >>> from mlx_schedules import one_cycle, one_cycle_momentum
        >>> opt = optim.SGD(learning_rate=one_cycle(0.1, 100), momentum=0.9)
        >>> opt = schedule_hyperparameters(opt, momentum=one_cycle_momentum(100))
        >>> opt.state["momentum"]
        array(0.95, dtype=float32)
    """
    if not isinstance(optimizer, optim.Optimizer):
        raise TypeError(f"optimizer must be an mlx.optimizers.Optimizer, got {optimizer!r}")
    supported = supported_hyperparameters(optimizer)
    if not supported:
        raise ValueError(f"{type(optimizer).__name__} has no hyperparameters that can be "
                         f"scheduled here; supported optimizers are "
                         f"{[cls.__name__ for cls in _SUPPORTED]} and their subclasses")
    for name, value in schedules.items():
        if name not in supported:
            raise ValueError(f"{type(optimizer).__name__} cannot schedule {name!r}; "
                             f"valid names are {list(supported)}")
        if not callable(value):
            check_real(name, value)
    if "beta1" in schedules or "beta2" in schedules:
        if len(optimizer.__dict__.get("betas", ())) != 2:
            raise ValueError(f"{type(optimizer).__name__} has no (beta1, beta2) pair")

    if type(optimizer) not in _SCHEDULED_CLASSES.values():
        optimizer.__class__ = _scheduled_class(type(optimizer))
    for name, value in schedules.items():
        if callable(value):
            set_schedule(optimizer, name, value)
            optimizer.state[name] = mx.array(value(optimizer.step)).astype(mx.float32)
        else:
            remove_schedule(optimizer, name)
            optimizer.state[name] = mx.array(value, dtype=mx.float32)
    optimizer.__dict__["_scheduled_hyperparameters"] = (
        _scheduled_names(optimizer) | frozenset(schedules))
    return optimizer
