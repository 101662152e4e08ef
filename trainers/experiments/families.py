"""The schedule families compared by the scripts, each as a function of (peak rate, run length).

Every family gives an SGD ``learning_rate`` schedule config and a ``momentum`` (a schedule config
for the cyclical families, a number otherwise), so a whole family is set by two numbers. The
shapes follow the source article and the papers behind it:

- ``constant``: the rate held at the peak (the baseline, tuned like the others).
- ``exponential``: ``peak * exp(-k t)``, ``k`` chosen so the last step is at ``peak / 100``.
- ``cyclic_exponential``: the source article's CED, same envelope, 3.5 cosine cycles so the run
  ends in a trough (a run ending at a crest would leave the model at the envelope's rate).
- ``one_cycle``: PyTorch ``OneCycleLR`` (30% warm-up, cosine) with momentum 0.95 -> 0.85 -> 0.95.
- ``triangular``: Smith's triangular CLR between ``peak / 25`` and ``peak``, two cycles, with
  momentum cycled inversely (0.95 -> 0.85).
- ``cosine``: cosine decay from the peak to 0.
- ``schedule_free``: no schedule: :class:`trainers.schedule_free.ScheduleFreeSGD` (Defazio et
  al. 2024) at the peak rate after a 5% warmup, interpolation 0.9, evaluated at its averaged
  weights. Its config names its optimizer (``"name"``), which replaces the run's SGD.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["FAMILIES", "FAMILY_LABELS", "MOMENTUM", "family_configs", "family_of"]

FAMILIES = ("constant", "exponential", "cyclic_exponential", "one_cycle", "triangular", "cosine",
            "schedule_free")
FAMILY_LABELS = {
    "constant": "constant",
    "exponential": "exponential decay",
    "cyclic_exponential": "cyclic exponential decay",
    "one_cycle": "1-cycle + momentum",
    "triangular": "triangular CLR + momentum",
    "cosine": "cosine decay",
    "schedule_free": "schedule-free SGD",
}
MOMENTUM = 0.9  # the fixed momentum of the non-cyclical families
_FINAL_FRACTION = 0.01  # exponential families end at peak / 100


def family_configs(family: str, peak_lr: float, steps: int) -> dict[str, Any]:
    """``{"learning_rate": schedule config, "momentum": config or number}`` for one family.

    Example:
        >>> family_configs("cosine", 0.1, 100)
        {'learning_rate': {'name': 'cosine_decay', 'init': 0.1, 'decay_steps': 100, 'end': 0.0}, \
'momentum': 0.9}
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown schedule family {family!r}; valid families are "
                         f"{list(FAMILIES)}")
    if not (isinstance(steps, int) and steps >= 8):
        raise ValueError(f"steps must be an int >= 8 for a schedule family, got {steps!r}")
    decay_rate = math.exp(math.log(_FINAL_FRACTION) / (steps - 1))
    if family == "schedule_free":
        return {"name": "ScheduleFreeSGD", "learning_rate": peak_lr, "momentum": MOMENTUM,
                "warmup_steps": max(1, steps // 20)}
    if family == "constant":
        return {"learning_rate": {"name": "constant", "value": peak_lr}, "momentum": MOMENTUM}
    if family == "exponential":
        return {"learning_rate": {"name": "exponential_decay", "init": peak_lr,
                                  "decay_rate": decay_rate}, "momentum": MOMENTUM}
    if family == "cyclic_exponential":
        return {"learning_rate": {"name": "cyclic_exponential_decay", "init": peak_lr,
                                  "decay_rate": decay_rate,
                                  "cycle_length": max(2, round(steps / 3.5))},
                "momentum": MOMENTUM}
    if family == "one_cycle":
        return {"learning_rate": {"name": "one_cycle", "max_lr": peak_lr, "total_steps": steps},
                "momentum": {"name": "one_cycle_momentum", "total_steps": steps}}
    if family == "triangular":
        half_cycle = max(1, steps // 4)
        return {"learning_rate": {"name": "cyclic_lr", "base_lr": peak_lr / 25,
                                  "max_lr": peak_lr, "step_size_up": half_cycle},
                "momentum": {"name": "cyclic_momentum", "base_momentum": 0.85,
                             "max_momentum": 0.95, "step_size_up": half_cycle}}
    return {"learning_rate": {"name": "cosine_decay", "init": peak_lr, "decay_steps": steps,
                              "end": 0.0}, "momentum": MOMENTUM}


# The schedule names (mlx_schedules registry) that identify a family in a run config.
_FAMILY_OF_SCHEDULE = {
    "constant": "constant", "exponential_decay": "exponential",
    "cyclic_exponential_decay": "cyclic_exponential", "one_cycle": "one_cycle",
    "cyclic_lr": "triangular", "cosine_decay": "cosine", "warmup_stable_decay": "wsd",
    "power_schedule": "power", "linear_schedule": "linear",
}


def family_of(optimizer: dict[str, Any]) -> str | None:
    """The schedule family of a run config's ``optimizer`` section, or ``None`` when its rate
    is none of the families (a schedule wrapped in another, say).

    A plain number is ``constant``; a schedule-free optimizer is ``schedule_free``; a
    ``warmup`` around a cosine is ``warmup_cosine``; a warmup-stable-decay with the 1-sqrt
    cooldown is ``wsd_sqrt``, one without a stable phase ``linear`` (decay to zero).

    Example:
        >>> family_of({"name": "SGD", **family_configs("cosine", 0.1, 100)})
        'cosine'
        >>> family_of({"name": "ScheduleFreeSGD", "learning_rate": 0.1})
        'schedule_free'
        >>> family_of({"name": "SGD", "learning_rate": 0.1})
        'constant'
    """
    if str(optimizer.get("name", "")).startswith("ScheduleFree"):
        return "schedule_free"
    rate = optimizer.get("learning_rate")
    if isinstance(rate, int | float) and not isinstance(rate, bool):
        return "constant"
    if not isinstance(rate, dict):
        return None
    name = rate.get("name")
    if name == "warmup" and isinstance(rate.get("schedule"), dict) and \
            rate["schedule"].get("name") == "cosine_decay":
        return "warmup_cosine"
    if name == "warmup_stable_decay":
        if rate.get("decay_shape") == "sqrt":
            return "wsd_sqrt"
        if rate.get("warmup_steps", 0) + rate.get("decay_steps", 0) >= rate.get("total_steps", 0):
            return "linear"  # no stable phase: a warmup then a linear decay to the end value
    return _FAMILY_OF_SCHEDULE.get(str(name))
