"""The schedule families compared on language models: the digits comparison's families and those
of current language-model practice (warmup-cosine to 10%, warmup-stable-decay with a linear or
a 1-sqrt cooldown, linear decay to zero, the power scheduler), as AdamW configs for
:func:`trainers.experiments.config.build_optimizer`."""

from __future__ import annotations

from typing import Any

import mlx_schedules as ms

from .families import FAMILIES, family_configs

__all__ = ["COSINE_FLOOR", "LM_SCHEDULES", "STUDY_SCHEDULES", "WSD_DECAY_FRACTION",
           "optimizer_section",
           "schedule_configs"]

#: the schedule families for language models: the digits comparison's families
#: (:data:`trainers.experiments.families.FAMILIES`) and the two usual for transformers
LM_SCHEDULES = ("warmup_cosine", "wsd", *FAMILIES)
#: the families of current language-model practice the LM study adds (``power`` needs the batch
#: size and tokens per step, which ``train-lm --schedule`` does not pass yet)
STUDY_SCHEDULES = ("wsd_sqrt", "linear", "power")
#: warmup-cosine ends at this fraction of the peak (as nanoGPT's ``min_lr``)
COSINE_FLOOR = 0.1
#: warmup-stable-decay decays over this fraction of the run (linearly, to 0)
WSD_DECAY_FRACTION = 0.2
#: the power scheduler's exponent and final-decay fraction (Shen et al. 2024's values)
POWER_B, POWER_DECAY_FRACTION = -0.51, 0.1


def schedule_configs(family: str, peak: float, steps: int, *,
                     warmup_steps: int | None = None, batch_size: int | None = None,
                     tokens_per_step: int | None = None) -> dict[str, Any]:
    """``{"learning_rate": config, "beta1": config or None}`` of a family sized to a run.

    ``warmup_cosine`` warms up linearly over ``warmup_steps`` (default 5% of the run), then
    decays by a cosine to ``peak * COSINE_FLOOR``; ``wsd`` warms up the same way, holds the
    peak and decays linearly to 0 over the last ``WSD_DECAY_FRACTION`` of the run (Hägele et
    al. 2024); ``wsd_sqrt`` the same with their 1-sqrt cooldown; ``linear`` warms up, then
    decays linearly to 0 over the rest of the run (Bergsma et al. 2025, "Straight to zero");
    ``power`` is :func:`mlx_schedules.power_schedule` (Shen et al. 2024: ``b = -0.51``, the
    paper's; the same warmup; an exponential decay to 0 over the last 10%, as the paper) with
    ``max_lr = peak`` and ``a`` set so that the power law meets the peak at the end of the
    warmup (the paper's ``a = 4`` assumes muP and 4096-token sequences: at this scale its power
    law stays above any usable cap, which would make the schedule a WSD); it needs
    ``batch_size`` and ``tokens_per_step``. The other families are
    :func:`trainers.experiments.families.family_configs`; their cycled momentum (``one_cycle``,
    ``triangular``) becomes AdamW's ``beta1``.

    Example:
        >>> schedule_configs("wsd", 0.01, 100)["learning_rate"]["decay_steps"]
        20
        >>> schedule_configs("one_cycle", 0.01, 100)["beta1"]["name"]
        'one_cycle_momentum'
    """
    if family not in LM_SCHEDULES and family not in STUDY_SCHEDULES:
        raise ValueError(f"schedule must be one of {[*LM_SCHEDULES, *STUDY_SCHEDULES]}, "
                         f"got {family!r}")
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
    if family in ("wsd", "wsd_sqrt"):
        rate = ms.warmup_stable_decay(peak, steps, warmup_steps=warmup_steps,
                                      decay_steps=max(1, round(steps * WSD_DECAY_FRACTION)),
                                      decay_shape="sqrt" if family == "wsd_sqrt" else "linear")
        return {"learning_rate": rate.to_config(), "beta1": None}
    if family == "linear":
        rate = ms.warmup_stable_decay(peak, steps, warmup_steps=warmup_steps,
                                      decay_steps=steps - warmup_steps)
        return {"learning_rate": rate.to_config(), "beta1": None}
    if family == "power":
        if batch_size is None or tokens_per_step is None:
            raise ValueError("the power schedule needs batch_size and tokens_per_step")
        start = max(1, warmup_steps) * tokens_per_step  # tokens seen when the warmup ends
        amplitude = peak / (batch_size * start ** POWER_B)
        rate = ms.power_schedule(batch_size, tokens_per_step, a=amplitude, b=POWER_B,
                                 max_lr=peak, warmup_steps=warmup_steps,
                                 decay_steps=max(1, round(steps * POWER_DECAY_FRACTION)),
                                 total_steps=steps)
        return {"learning_rate": rate.to_config(), "beta1": None}
    chosen = family_configs(family, peak, steps)
    momentum = chosen["momentum"]
    return {"learning_rate": chosen["learning_rate"],
            "beta1": momentum if isinstance(momentum, dict) else None}


def optimizer_section(family: str, peak: float, steps: int, *, weight_decay: float = 0.0,
                      warmup_steps: int | None = None, batch_size: int | None = None,
                      tokens_per_step: int | None = None) -> dict[str, Any]:
    """An AdamW section for :func:`trainers.experiments.config.build_optimizer` with a family's rate
    (and cycled ``beta1``) sized to a run.

    Example:
        >>> import mlx.optimizers as optim
        >>> from trainers.experiments.config import build_optimizer
        >>> opt = build_optimizer(optimizer_section("one_cycle", 3e-3, 100))
        >>> isinstance(opt, optim.AdamW), round(opt.state["beta1"].item(), 2)
        (True, 0.95)
    """
    chosen = schedule_configs(family, peak, steps, warmup_steps=warmup_steps,
                              batch_size=batch_size, tokens_per_step=tokens_per_step)
    section = {"name": "AdamW", "learning_rate": chosen["learning_rate"],
               "weight_decay": float(weight_decay)}
    if chosen["beta1"] is not None:
        section["beta1"] = chosen["beta1"]
    return section
