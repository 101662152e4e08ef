"""A cooldown branched off any checkpoint of a run: the config of the new run, checked.

The point of warmup-stable-decay is that a decay can start from any checkpoint of the stable
phase. :func:`branch_config` reads the original run's ``experiment.json`` and the checkpoint,
and returns the config of a new run that continues from that checkpoint for ``steps`` more
updates with the rate

    join_schedules([original, warmup_stable_decay(r_k, steps, warmup_steps=0,
                                                  decay_steps=steps, end=0, decay_shape)], [k])

where ``k`` is the checkpoint's step and ``r_k`` the original schedule's rate at ``k`` (the
rate the next update would have used): every update before ``k`` keeps its rate (so the
copied log audits against the new config), update ``k`` uses ``r_k`` exactly (continuous at
the splice) and the rate falls to 0 at ``k + steps``. The decay is the same expression a WSD
schedule evaluates in its own decay phase, so a branch at the start of a WSD run's decay with
the same length reproduces that decay bit for bit.

Checked before anything is written: the checkpoint belongs to the run (its saved rate is the
original schedule's rate at ``k - 1``), and the new schedule equals the original at ``k - 1``
and at ``k``.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any, cast

import mlx.core as mx
import numpy as np

import mlx_schedules as ms

from .config import DEFAULT_CONFIG, ConfigError, load_config_file, merge_config, validate

__all__ = ["COOLDOWN_SHAPES", "branch_config"]

COOLDOWN_SHAPES = ("linear", "cosine", "sqrt")


def _read_json(path: str, flag: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{flag}: cannot read {path}: {e}") from None


def branch_config(checkpoint: str, steps: int, shape: str, run_dir: str
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(config of the new run, provenance)`` for a cooldown of ``steps`` updates from
    ``checkpoint``, written to ``run_dir``. Raises :class:`ConfigError` naming the flag."""
    checkpoint = os.path.normpath(os.path.abspath(checkpoint))
    if not os.path.isfile(os.path.join(checkpoint, "meta.json")):
        raise ConfigError(f"--branch: {checkpoint} is not a checkpoint directory (no meta.json)")
    original = os.path.dirname(os.path.dirname(checkpoint))
    experiment = os.path.join(original, "experiment.json")
    if not os.path.isfile(experiment):
        raise ConfigError(f"--branch: {original} holds no experiment.json (not a train.py run)")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ConfigError(f"--cooldown: need a positive number of updates, got {steps!r}")
    if shape not in COOLDOWN_SHAPES:
        raise ConfigError(f"--cooldown-shape must be one of {list(COOLDOWN_SHAPES)}, "
                          f"got {shape!r}")
    new_dir = os.path.normpath(os.path.abspath(run_dir))
    if new_dir == original or new_dir.startswith(original + os.sep):
        raise ConfigError(f"--run-dir: a branch needs its own run directory, outside the "
                          f"original run {original}")
    if os.path.isdir(new_dir) and os.listdir(new_dir):
        raise ConfigError(f"--run-dir: {new_dir} is not empty; a branch starts a new run")
    step = _read_json(os.path.join(checkpoint, "meta.json"), "--branch").get("step")
    if not isinstance(step, int) or step < 1:
        raise ConfigError(f"--branch: {checkpoint} has no step >= 1 in its meta.json")
    config = validate(merge_config(DEFAULT_CONFIG, load_config_file(experiment)))
    rate = config["optimizer"].get("learning_rate")
    old = ms.from_config(rate) if isinstance(rate, dict) else ms.constant(rate)
    before, at = (float(v) for v in old.values(np.array([step - 1, step])))
    if not at > 0:
        raise ConfigError(f"--branch: the original rate at step {step} is {at}; a cooldown "
                          "needs a positive rate to decay from")
    state = cast(dict[str, mx.array], mx.load(os.path.join(checkpoint, "optimizer.safetensors")))
    saved = state.get("learning_rate")
    if saved is None or np.float32(np.asarray(saved)) != np.float32(before):
        raise ConfigError(f"--branch: {checkpoint} saved the rate "
                          f"{None if saved is None else saved.item()!r}, but its run's "
                          f"experiment.json gives {before!r} at step {step - 1}: the checkpoint "
                          "does not belong to that config")
    decay = ms.warmup_stable_decay(at, steps, warmup_steps=0, decay_steps=steps, end=0.0,
                                   decay_shape=shape)
    new = ms.join_schedules([old, decay], [step])
    spliced = new.values(np.array([step - 1, step]))
    if spliced.tolist() != [np.float32(before), np.float32(at)]:
        raise ConfigError(f"--branch: the cooldown is not continuous at step {step}: "
                          f"{spliced.tolist()} against {[before, at]}")  # defensive
    branched = copy.deepcopy(config)
    branched["optimizer"]["learning_rate"] = new.to_config()
    branched["training"]["steps"] = step + steps
    branched["output"]["run_dir"] = run_dir
    provenance = {"checkpoint": checkpoint, "original_run": original, "step": step,
                  "cooldown_steps": steps, "cooldown_shape": shape,
                  "rate_at_splice": at, "rate_before_splice": before,
                  "original_learning_rate": rate}
    return validate(branched), provenance
