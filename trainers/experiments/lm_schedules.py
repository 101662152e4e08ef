"""The schedule families compared on language models: the digits comparison's families and the
two usual for transformers (warmup-cosine, warmup-stable-decay), as AdamW configs for
:func:`trainers.experiments.config.build_optimizer`."""

from __future__ import annotations

from typing import Any

import mlx_schedules as ms

from .families import FAMILIES, family_configs

__all__ = ["COSINE_FLOOR", "LM_SCHEDULES", "WSD_DECAY_FRACTION", "optimizer_section",
           "schedule_configs"]

#: the schedule families for language models: the digits comparison's families
#: (:data:`trainers.experiments.families.FAMILIES`) and the two usual for transformers
LM_SCHEDULES = ("warmup_cosine", "wsd", *FAMILIES)
#: warmup-cosine ends at this fraction of the peak (as nanoGPT's ``min_lr``)
COSINE_FLOOR = 0.1
#: warmup-stable-decay decays over this fraction of the run (linearly, to 0)
WSD_DECAY_FRACTION = 0.2


def schedule_configs(family: str, peak: float, steps: int, *,
                     warmup_steps: int | None = None) -> dict[str, Any]:
    """``{"learning_rate": config, "beta1": config or None}`` of a family sized to a run.

    ``warmup_cosine`` warms up linearly over ``warmup_steps`` (default 5% of the run), then
    decays by a cosine to ``peak * COSINE_FLOOR``; ``wsd`` warms up the same way, holds the
    peak and decays linearly to 0 over the last ``WSD_DECAY_FRACTION`` of the run. The other
    families are :func:`trainers.experiments.families.family_configs`; their cycled momentum
    (``one_cycle``, ``triangular``) becomes AdamW's ``beta1``.

    Example:
        >>> schedule_configs("wsd", 0.01, 100)["learning_rate"]["decay_steps"]
        20
        >>> schedule_configs("one_cycle", 0.01, 100)["beta1"]["name"]
        'one_cycle_momentum'
    """
    if family not in LM_SCHEDULES:
        raise ValueError(f"schedule must be one of {list(LM_SCHEDULES)}, got {family!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 8:
        raise ValueError(f"steps must be an int >= 8 for a schedule family, got {steps!r}")
    if warmup_steps is None:
        warmup_steps = max(1, steps // 20)
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or \
            not 0 <= warmup_steps < steps // 2:
        raise ValueError(f"warmup_steps must be an int in [0, {steps // 2}), "
                         f"got {warmup_steps!r}")
    if family == "warmup_cosine":
        rate = ms.cosine_decay(peak, steps - warmup_steps, peak * COSINE_FLOOR)
        if warmup_steps:
            rate = ms.warmup(rate, warmup_steps)
        return {"learning_rate": rate.to_config(), "beta1": None}
    if family == "wsd":
        rate = ms.warmup_stable_decay(peak, steps, warmup_steps=warmup_steps,
                                      decay_steps=max(1, round(steps * WSD_DECAY_FRACTION)))
        return {"learning_rate": rate.to_config(), "beta1": None}
    chosen = family_configs(family, peak, steps)
    momentum = chosen["momentum"]
    return {"learning_rate": chosen["learning_rate"],
            "beta1": momentum if isinstance(momentum, dict) else None}


def optimizer_section(family: str, peak: float, steps: int, *, weight_decay: float = 0.0,
                      warmup_steps: int | None = None) -> dict[str, Any]:
    """An AdamW section for :func:`trainers.experiments.config.build_optimizer` with a family's rate
    (and cycled ``beta1``) sized to a run.

    Example:
        >>> import mlx.optimizers as optim
        >>> from trainers.experiments.config import build_optimizer
        >>> opt = build_optimizer(optimizer_section("one_cycle", 3e-3, 100))
        >>> isinstance(opt, optim.AdamW), round(opt.state["beta1"].item(), 2)
        (True, 0.95)
    """
    chosen = schedule_configs(family, peak, steps, warmup_steps=warmup_steps)
    section = {"name": "AdamW", "learning_rate": chosen["learning_rate"],
               "weight_decay": float(weight_decay)}
    if chosen["beta1"] is not None:
        section["beta1"] = chosen["beta1"]
    return section
