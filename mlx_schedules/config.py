"""Schedules as plain data: a registry of factories, and dicts that rebuild them.

A factory states its formula once: it checks its arguments and returns the function of
the ``int64`` step. :func:`register` turns it into the public factory, which builds the
:class:`~mlx_schedules.base.Schedule` with the factory's name and its bound arguments
(its config). ``to_config`` gives a dict that survives JSON; ``from_config`` rebuilds
the schedule, rejecting unknown names and unknown keys with the list of valid ones.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from .base import MAX_CONFIG_DEPTH, Schedule, StepFunction

_FACTORIES: dict[str, Callable[..., Schedule]] = {}
# Former names that configs may still use, and the factory each now means.
_ALIASES: dict[str, str] = {}

# Arguments that hold schedules themselves, rebuilt recursively from their configs.
_NESTED_ONE = {"schedule"}
_NESTED_MANY = {"schedules", "factors"}

# How deeply lists and dicts may nest in a config: each schedule level is a dict, and a
# list of schedules (``factors``, ``schedules``) adds one more, so MAX_CONFIG_DEPTH
# schedules take at most twice as many levels, plus one for a leaf list or dict
# (``boundaries``, ``boundaries_and_scales``). Checked before anything recurses, so that a
# list nested 10,000 deep is refused with a message rather than exhausting the stack.
MAX_CONFIG_NESTING = 2 * MAX_CONFIG_DEPTH + 1

__all__ = ["MAX_CONFIG_DEPTH", "MAX_CONFIG_NESTING", "from_config", "register", "register_alias",
           "schedule_names", "to_config"]


def register(factory: Callable[..., StepFunction]) -> Callable[..., Schedule]:
    """Register ``factory`` under its function name; the public factory builds the Schedule.

    ``factory`` checks its arguments and returns the schedule's body, a function of an
    ``int64`` array of steps ``>= 0``. What callers get is a :class:`Schedule` named after
    the factory, whose config is the factory's arguments with defaults filled in.
    """
    signature = inspect.signature(factory)
    name = factory.__name__

    @functools.wraps(factory)
    def build(*args: Any, **kwargs: Any) -> Schedule:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as error:
            raise TypeError(f"{name}: {error}") from None
        bound.apply_defaults()
        return Schedule(factory(*args, **kwargs), name, dict(bound.arguments))

    # inspect.signature reads ``__signature__`` from the function's __dict__; typeshed
    # declares no such attribute on functions, so it is set there directly.
    build.__dict__["__signature__"] = signature.replace(return_annotation="Schedule")
    build.__annotations__ = {**factory.__annotations__, "return": "Schedule"}
    _FACTORIES[name] = build
    return build


def register_alias(alias: str, factory: Callable[..., Schedule]) -> None:
    """Let configs name ``factory`` by a former name too (rebuilt under its current name)."""
    _ALIASES[alias] = factory.__name__


def schedule_names() -> list[str]:
    """The schedule names, sorted (``from_config`` also accepts the alias ``lr_range_test``).

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
        >>> to_config(cosine_decay(0.1, 1000, 0.001))
        ... # doctest: +NORMALIZE_WHITESPACE
        {'name': 'cosine_decay', 'init': 0.1, 'decay_steps': 1000, 'end': 0.001,
         'exponent': 1.0, 'k_decay': 1.0}
    """
    if not isinstance(schedule, Schedule):
        raise TypeError(f"to_config expects a Schedule, got {schedule!r}")
    return schedule.to_config()


def from_config(config: dict[str, Any]) -> Schedule:
    """Rebuild a schedule from the dict :func:`to_config` made (or one written by hand).

    Nested schedules (``schedule`` of :func:`warmup` and :func:`with_noise`, ``schedules``
    of :func:`join_schedules`, ``factors`` of :func:`multiply`) may be configs themselves,
    up to ``MAX_CONFIG_DEPTH`` (64) levels deep.

    Example:
        >>> from mlx_schedules import from_config
        >>> lr = from_config({"name": "warmup", "steps": 2,
        ...                   "schedule": {"name": "constant", "value": 1.0}})
        >>> lr.values(4).tolist()
        [0.0, 0.5, 1.0, 1.0]
    """
    _check_nesting(config)
    return _from_config(config, "config", 1)


def _check_nesting(config: Any) -> None:
    """Refuse data nested deeper than ``MAX_CONFIG_NESTING`` lists and dicts, walking it
    without recursion (a recursive walk, or ``repr`` in an error message, would overflow
    Python's stack on a hostile config)."""
    stack: list[tuple[Any, str, int]] = [(config, "config", 1)]
    while stack:
        value, where, depth = stack.pop()
        if isinstance(value, dict):
            items = [(f"{where}.{key}" if isinstance(key, str) else f"{where}[{key!r}]", item)
                     for key, item in value.items()]
        elif isinstance(value, (list, tuple)):
            items = [(f"{where}[{i}]", item) for i, item in enumerate(value)]
        else:
            continue
        if depth > MAX_CONFIG_NESTING:
            raise ValueError(f"schedule configs nest at most {MAX_CONFIG_DEPTH} levels deep "
                             f"(at most {MAX_CONFIG_NESTING} levels of lists and dicts); "
                             f"{where} is list-and-dict level {depth}")
        stack.extend((item, path, depth + 1) for path, item in items
                     if isinstance(item, (dict, list, tuple)))


def _from_config(config: Any, where: str, depth: int) -> Schedule:
    if not isinstance(config, dict):
        raise TypeError(f"a schedule config must be a dict, got {config!r} at {where}")
    if depth > MAX_CONFIG_DEPTH:
        raise ValueError(f"schedule configs nest at most {MAX_CONFIG_DEPTH} levels deep; "
                         f"{where} is level {depth}")
    if "name" not in config:
        raise ValueError(f"a schedule config needs a 'name' (one of {schedule_names()}), "
                         f"got keys {sorted(map(str, config))} at {where}")
    name = config["name"]
    if not isinstance(name, str):
        raise TypeError(f"{where}.name must be a string, one of {schedule_names()}, "
                        f"got {name!r} ({type(name).__name__})")
    name = _ALIASES.get(name, name)
    if name not in _FACTORIES:
        raise ValueError(f"unknown schedule {config['name']!r}; valid names are "
                         f"{schedule_names()}")
    factory = _FACTORIES[name]
    parameters = inspect.signature(factory).parameters
    arguments = {k: v for k, v in config.items() if k != "name"}
    unknown = sorted(map(str, set(arguments) - set(parameters)))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} for schedule {name!r}; "
                         f"valid keys are {list(parameters)}")
    for key in _NESTED_ONE & set(arguments):
        if isinstance(arguments[key], dict):
            arguments[key] = _from_config(arguments[key], f"{where}.{key}", depth + 1)
    for key in _NESTED_MANY & set(arguments):
        if isinstance(arguments[key], (list, tuple)):
            arguments[key] = [
                _from_config(c, f"{where}.{key}[{i}]", depth + 1) if isinstance(c, dict) else c
                for i, c in enumerate(arguments[key])]
    # A variadic parameter (multiply's *factors) is stored as a list: pass it by position.
    variadic = [k for k, p in parameters.items() if p.kind is inspect.Parameter.VAR_POSITIONAL]
    if variadic and variadic[0] in arguments:
        items = arguments.pop(variadic[0])
        if not isinstance(items, (list, tuple)):
            raise TypeError(f"{where}.{variadic[0]} must be a list, got {items!r}")
        return factory(*items, **arguments)
    return factory(**arguments)
