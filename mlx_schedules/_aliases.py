"""Old module paths kept importable, with a ``DeprecationWarning``, without their files.

Renamed modules (``trainers.logging`` shadowed the standard library's ``logging``; modules
named ``*_test.py`` were collected by test tools) are registered in ``sys.modules`` under
their old names as small alias modules: ``from trainers.logging import RunLog`` still works
and warns, naming the new module, while no file of the old name exists.
"""

from __future__ import annotations

import sys
import types
import warnings
from typing import Any

__all__ = ["register_alias"]


class _Alias(types.ModuleType):
    def __init__(self, old: str, new: types.ModuleType, names: tuple[str, ...]):
        super().__init__(old, f"Deprecated alias of {new.__name__}.")
        self._new, self._names = new, names

    def __getattr__(self, name: str) -> Any:
        if name not in self._names:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        warnings.warn(f"{self.__name__} is renamed {self._new.__name__}; import {name} from "
                      "there (or from the package itself)", DeprecationWarning, stacklevel=2)
        return getattr(self._new, name)

    def __dir__(self) -> list[str]:
        return sorted(self._names)


def register_alias(old: str, new: types.ModuleType, names: tuple[str, ...]) -> None:
    """Make ``import old`` give an alias of ``new`` that forwards ``names`` with a warning.

    Example:
        >>> import json, warnings
        >>> register_alias("mlx_schedules._old_json", json, ("dumps",))
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     from mlx_schedules._old_json import dumps
        >>> dumps is json.dumps, caught[0].category.__name__
        (True, 'DeprecationWarning')
    """
    sys.modules.setdefault(old, _Alias(old, new, names))
