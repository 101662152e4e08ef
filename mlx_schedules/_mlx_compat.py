"""Temporary: replaced by the schedules branch's compatibility module."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def schedules_of(optimizer: Any) -> dict[str, Callable]:
    return dict(getattr(optimizer, "_schedulers", {}))


def set_schedule(optimizer: Any, name: str, fn: Callable) -> None:
    optimizer._schedulers[name] = fn


def remove_schedule(optimizer: Any, name: str) -> None:
    optimizer._schedulers.pop(name, None)
