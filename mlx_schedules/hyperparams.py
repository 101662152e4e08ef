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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mlx.core as mx
import mlx.optimizers as optim

from ._checks import check_real

# Which hyperparameters can be scheduled on which optimizer. Order matters: subclasses
# (AdamW, Adamax) come before their base class (Adam).
_SUPPORTED: list[tuple[type, tuple[str, ...]]] = [
    (optim.AdamW, ("beta1", "beta2", "weight_decay")),
    (optim.Adamax, ("beta1", "beta2")),
    (optim.Adam, ("beta1", "beta2")),
    (optim.Lion, ("beta1", "beta2", "weight_decay")),
    (optim.SGD, ("momentum", "weight_decay")),
    (optim.Muon, ("momentum",)),
]

_SUBCLASSES: dict[type, type] = {}


def supported_hyperparameters(optimizer: optim.Optimizer) -> tuple[str, ...]:
    """The names :func:`schedule_hyperparameters` accepts for this optimizer.

    Example:
        >>> import mlx.optimizers as optim
        >>> supported_hyperparameters(optim.AdamW(1e-3))
        ('beta1', 'beta2', 'weight_decay')
    """
    for cls, names in _SUPPORTED:
        if isinstance(optimizer, cls):
            return names
    return ()


def _value_in_state(name: str, beta_index: int | None = None):
    """A property reading a hyperparameter from the optimizer state when it is there."""

    def get(self):
        if beta_index is None:
            return self.state[name] if name in self.state else self.__dict__[name]
        fixed = self.__dict__["betas"]
        return tuple(self.state[f"beta{i + 1}"] if f"beta{i + 1}" in self.state else fixed[i]
                     for i in range(len(fixed)))

    def set_(self, value):
        self.__dict__[name] = value

    return property(get, set_)


def _sgd_apply_single(self, gradient, parameter, state):
    """SGD's update, written without Python branches on momentum and weight decay.

    MLX's SGD tests ``momentum <= 0`` and ``weight_decay != 0`` in Python, which would
    force a host sync (and fail) when those are scheduled arrays inside ``mx.compile``.
    With momentum 0 and no decay this computes the same update as plain SGD.
    """
    weight_decay = self.weight_decay
    if "weight_decay" in self.state or weight_decay != 0:
        gradient = gradient + weight_decay * parameter
    if "momentum" not in self.state and self.momentum <= 0:
        return parameter - self.learning_rate.astype(gradient.dtype) * gradient
    momentum = self.momentum
    velocity = momentum * state["v"] + (1 - self.dampening) * gradient
    update = gradient + momentum * velocity if self.nesterov else velocity
    state["v"] = velocity
    return parameter - self.learning_rate.astype(gradient.dtype) * update


def _lion_apply_single(self, gradient, parameter, state):
    """Lion's update with weight decay applied unconditionally when it is scheduled."""
    lr = self.learning_rate.astype(gradient.dtype)
    beta1, beta2 = self.betas
    weight_decay = self.weight_decay
    momentum = state["m"]
    direction = beta1 * momentum + (1 - beta1) * gradient
    state["m"] = beta2 * momentum + (1 - beta2) * gradient
    if "weight_decay" in self.state or weight_decay > 0:
        parameter = (1 - lr * weight_decay) * parameter
    return parameter - lr * mx.sign(direction)


def _scheduled_class(cls: type) -> type:
    """A subclass of ``cls`` whose hyperparameters live in ``self.state``."""
    if cls in _SUBCLASSES:
        return _SUBCLASSES[cls]
    namespace: dict[str, Any] = {"__doc__": f"{cls.__name__} with scheduled hyperparameters."}
    names = next(names for base, names in _SUPPORTED if issubclass(cls, base))
    for name in names:
        if name in ("momentum", "weight_decay"):
            namespace[name] = _value_in_state(name)
    if "beta1" in names:
        namespace["betas"] = _value_in_state("betas", beta_index=0)
    if issubclass(cls, optim.SGD):
        namespace["apply_single"] = _sgd_apply_single
    elif issubclass(cls, optim.Lion):
        namespace["apply_single"] = _lion_apply_single
    subclass = type(f"Scheduled{cls.__name__}", (cls,), namespace)
    _SUBCLASSES[cls] = subclass
    return subclass


def schedule_hyperparameters(optimizer: optim.Optimizer,
                             **schedules: Callable[[mx.array], mx.array] | float
                             ) -> optim.Optimizer:
    """Put ``momentum``, ``beta1``/``beta2`` or ``weight_decay`` on a schedule.

    Each keyword names a hyperparameter and gives a schedule (any callable of the step,
    such as :func:`one_cycle_momentum`) or a fixed number. The optimizer is changed in
    place and returned. Call it before the optimizer's first update and before compiling
    the training step, so the compiled step captures the new state entries.

    Supported: ``momentum`` and ``weight_decay`` on SGD; ``beta1``, ``beta2`` on Adam,
    AdamW, Adamax and Lion; ``weight_decay`` on AdamW and Lion; ``momentum`` on Muon.

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
                         f"{[cls.__name__ for cls, _ in _SUPPORTED]}")
    for name, value in schedules.items():
        if name not in supported:
            raise ValueError(f"{type(optimizer).__name__} cannot schedule {name!r}; "
                             f"valid names are {list(supported)}")
        if not callable(value):
            check_real(name, value)
    if "beta1" in schedules or "beta2" in schedules:
        if len(optimizer.__dict__.get("betas", ())) != 2:
            raise ValueError(f"{type(optimizer).__name__} has no (beta1, beta2) pair")

    base = type(optimizer)
    if base not in _SUBCLASSES.values():
        optimizer.__class__ = _scheduled_class(base)
    for name, value in schedules.items():
        optimizer._schedulers.pop(name, None)
        optimizer._maybe_schedule(name, value)
        if not callable(value):
            optimizer.state[name] = mx.array(value, dtype=mx.float32)
    return optimizer
