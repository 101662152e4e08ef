"""Schedules as plain data: a registry of factories, and dicts that rebuild them.

Every public factory is registered under its function name. ``to_config`` gives a dict
that survives JSON; ``from_config`` rebuilds the schedule, rejecting unknown names and
unknown keys with the list of valid ones.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from .base import Schedule

_FACTORIES: dict[str, Callable[..., Schedule]] = {}

# Arguments that hold schedules themselves, rebuilt recursively from their configs.
_NESTED_ONE = {"schedule"}
_NESTED_MANY = {"schedules"}


def register(factory: Callable[..., Schedule]) -> Callable[..., Schedule]:
    """Register a factory by name and record its arguments on what it builds."""
    signature = inspect.signature(factory)

    @functools.wraps(factory)
    def build(*args: Any, **kwargs: Any) -> Schedule:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as error:
            raise TypeError(f"{factory.__name__}: {error}") from None
        bound.apply_defaults()
        schedule = factory(*args, **kwargs)
        schedule.name = factory.__name__
        schedule._config = dict(bound.arguments)
        return schedule

    _FACTORIES[factory.__name__] = build
    return build


def schedule_names() -> list[str]:
    """The names ``from_config`` accepts, sorted.

    Example:
        >>> from mlx_schedules import schedule_names
        >>> schedule_names()[:3]
        ['constant', 'cosine_decay', 'cosine_restarts']
        >>> "one_cycle" in schedule_names()
        True
    """
    return sorted(_FACTORIES)


def to_config(schedule: Schedule) -> dict[str, Any]:
    """The plain-data description of ``schedule`` (same as ``schedule.to_config()``).

    Example:
        >>> from mlx_schedules import cosine_decay, to_config
        >>> to_config(cosine_decay(0.1, 1000))
        {'name': 'cosine_decay', 'init': 0.1, 'decay_steps': 1000, 'end': 0.0, 'exponent': 1.0}
    """
    if not isinstance(schedule, Schedule):
        raise TypeError(f"to_config expects a Schedule, got {schedule!r}")
    return schedule.to_config()


def from_config(config: dict[str, Any]) -> Schedule:
    """Rebuild a schedule from the dict :func:`to_config` made (or one written by hand).

    Example:
        >>> from mlx_schedules import from_config
        >>> lr = from_config({"name": "warmup", "steps": 2,
        ...                   "schedule": {"name": "constant", "value": 1.0}})
        >>> lr.values(4).tolist()
        [0.0, 0.5, 1.0, 1.0]
    """
    if not isinstance(config, dict):
        raise TypeError(f"a schedule config must be a dict, got {config!r}")
    if "name" not in config:
        raise ValueError(f"a schedule config needs a 'name' (one of {schedule_names()}), "
                         f"got keys {sorted(config)}")
    name = config["name"]
    if name not in _FACTORIES:
        raise ValueError(f"unknown schedule {name!r}; valid names are {schedule_names()}")
    factory = _FACTORIES[name]
    parameters = inspect.signature(factory).parameters
    arguments = {k: v for k, v in config.items() if k != "name"}
    unknown = sorted(set(arguments) - set(parameters))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} for schedule {name!r}; "
                         f"valid keys are {list(parameters)}")
    for key in _NESTED_ONE & set(arguments):
        if isinstance(arguments[key], dict):
            arguments[key] = from_config(arguments[key])
    for key in _NESTED_MANY & set(arguments):
        if isinstance(arguments[key], (list, tuple)):
            arguments[key] = [from_config(c) if isinstance(c, dict) else c
                              for c in arguments[key]]
    return factory(**arguments)
