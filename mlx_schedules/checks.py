"""Argument validation shared by every schedule factory, and by the trainer and the command
line (one vocabulary for the whole project: import it as ``mlx_schedules.checks``).

Each check raises at build time with the parameter's name and the value received, so
that a bad argument is reported where it was written, not deep inside a compiled step.

Two ranges bound what a schedule accepts:

- Real parameters are float32 numbers: finite, with a magnitude of at most
  ``FLOAT32_MAX`` (about 3.4e38), and so are the values a schedule reaches (checked at
  build time where a parameter makes them grow: ``decay_rate > 1``, ``m_mul > 1``, a
  difference ``init - end``). Magnitudes below float32's range round to 0, as any
  float32 computation does; that is accepted.
- Integer parameters and steps are at most ``MAX_STEP = 2**62``. Every integer the
  schedules form from them (``t - boundary``, ``t + decay_steps - 1``, ``2·phase``, a
  cycle's start) then stays inside int64, whose limit is ``2**63 - 1``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

FLOAT32_MAX = 3.4028234663852886e38
MAX_STEP = 2**62
# Used in messages, where 4611686018427387904 would say less.
MAX_STEP_TEXT = "2**62"


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def check_float32(name: str, value: float) -> float:
    """``value`` (a finite float) has a magnitude float32 can hold (at most ``FLOAT32_MAX``)."""
    if abs(value) > FLOAT32_MAX:
        raise ValueError(f"{name} must be representable in float32 (|{name}| <= "
                         f"{FLOAT32_MAX:.8g}), got {value!r}")
    return value


def check_real(name: str, value: Any, *, low: float | None = None, high: float | None = None,
               low_open: bool = False, high_open: bool = False,
               float32: bool = True) -> float:
    """A finite real number, optionally inside a range; returns it as a float.

    With ``float32`` (the default) the value must also be representable in float32
    (see :func:`check_float32`), as every schedule value and parameter is.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {_describe(value)}")
    try:
        value = float(value)
    except OverflowError:   # an int beyond float64: not finite either
        raise ValueError(f"{name} must be finite, got {value!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if low is not None and (value < low or (low_open and value == low)):
        bound = f"> {low}" if low_open else f">= {low}"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    if high is not None and (value > high or (high_open and value == high)):
        bound = f"< {high}" if high_open else f"<= {high}"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return check_float32(name, value) if float32 else value


def check_positive(name: str, value: Any) -> float:
    """A finite real number > 0."""
    return check_real(name, value, low=0.0, low_open=True)


def check_int(name: str, value: Any, *, minimum: int = 1, maximum: int = MAX_STEP) -> int:
    """An integer (not a bool, not a float) in ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {_describe(value)}")
    value = int(value)
    if value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    if value > maximum:
        limit = MAX_STEP_TEXT if maximum == MAX_STEP else str(maximum)
        raise ValueError(f"{name} must be <= {limit} (the step range schedules support), "
                         f"got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {_describe(value)}")
    return value


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {list(choices)}, got {_describe(value)}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_increasing_ints(name: str, values: Any, *, minimum: int = 0,
                          allow_empty: bool = False) -> list[int]:
    """A sequence of strictly increasing integers, each in ``[minimum, MAX_STEP]``."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a list of integers, got {_describe(values)}")
    if not values and not allow_empty:
        raise ValueError(f"{name} must not be empty")
    out = [check_int(f"{name}[{i}]", v, minimum=minimum) for i, v in enumerate(values)]
    for i in range(1, len(out)):
        if out[i] <= out[i - 1]:
            raise ValueError(
                f"{name} must be strictly increasing, got {out} "
                f"({name}[{i}]={out[i]} <= {name}[{i - 1}]={out[i - 1]})"
            )
    return out


def check_reals(name: str, values: Any) -> list[float]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a list of numbers, got {_describe(values)}")
    return [check_real(f"{name}[{i}]", v) for i, v in enumerate(values)]


def check_ordered(low_name: str, low: float, high_name: str, high: float) -> None:
    if low > high:
        raise ValueError(f"{low_name} must be <= {high_name}, got {low_name}={low!r} "
                         f"and {high_name}={high!r}")


def check_span(first_name: str, first: float, second_name: str, second: float) -> None:
    """``first - second`` (a schedule's amplitude) must not overflow float32."""
    if abs(first - second) > FLOAT32_MAX:
        raise ValueError(f"{first_name} - {second_name} must be representable in float32, "
                         f"got {first_name}={first!r} and {second_name}={second!r}")


def check_growth(name: str, log_magnitude: float, what: str) -> None:
    """A value whose natural log is ``log_magnitude`` (the largest the schedule reaches
    before step ``MAX_STEP``) must stay within float32; ``name`` is the parameter blamed."""
    if log_magnitude > math.log(FLOAT32_MAX):
        raise ValueError(f"{name}: {what} exceeds float32's range (about {FLOAT32_MAX:.3g}) "
                         f"before step {MAX_STEP_TEXT}")
