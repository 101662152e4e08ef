"""The trainer's settings: one frozen dataclass, validated once, written as ``config.json``.

Every keyword of :class:`trainers.Trainer` that shapes the run is a field here. The fields are
checked in :meth:`TrainerSettings.__post_init__` with the same vocabulary as the schedules
(:mod:`mlx_schedules.checks`): a wrong type raises ``TypeError`` and a wrong value
``ValueError``, naming the keyword and the value, before anything is written to disk.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from mlx_schedules.checks import check_bool, check_choice, check_int, check_real

from .train_state import PRECISIONS

__all__ = ["RESUME_KEYS", "TrainerSettings"]

# Settings a checkpoint and the run resuming from it must agree on: with a different value the
# resumed run would not continue the saved one. ``fit(allow_changes=...)`` names the ones a
# user changes on purpose (a longer run, a new schedule for a cooldown).
RESUME_KEYS = (
    "max_steps", "epochs", "seed", "grad_accum", "clip_norm", "world_size", "columns",
    "optimizer", "hyperparameters", "schedules", "precision", "ema", "keep_best",
    "batch_size", "data",
)


# A seed plus the step must stay a valid uint64 seed for mx.random.seed.
_MAX_SEED = 2**62


def _optional_int(name: str, value: Any, minimum: int) -> int | None:
    return None if value is None else check_int(name, value, minimum=minimum)


@dataclasses.dataclass(frozen=True)
class TrainerSettings:
    """What a run is: its length, its step, its bookkeeping. Saved as ``config.json``.

    ``total_steps`` is derived (``max_steps``, or the updates in ``epochs`` when the data's
    length is known, whichever is smaller). ``optimizer``, ``hyperparameters`` and
    ``schedules`` describe the optimizer (class name, fixed hyperparameters, a description of
    every schedule) so that a resume can check it continues the same optimization;
    ``batch_size`` and ``data`` describe the training data (its fingerprint) for the same
    reason.

    Example:
        >>> TrainerSettings(max_steps=10).log_every
        50
        >>> TrainerSettings(max_steps=0)
        Traceback (most recent call last):
        ...
        ValueError: max_steps must be a positive integer, got 0
    """

    max_steps: int | None = None
    epochs: int | None = None
    total_steps: int | None = None
    seed: int = 0
    grad_accum: int = 1
    clip_norm: float | None = None
    grad_norm: bool = False
    compile: bool = True
    world_size: int = 1
    columns: tuple[str, ...] = ()
    log_every: int = 50
    report_every: int = 100
    eval_every: int | None = None
    eval_at_start: bool = False
    checkpoint_every: int | None = None
    keep_checkpoints: int = 3
    log: bool = True
    precision: str = "float32"
    ema: float | None = None
    # (metric, 'min' | 'max'): its length and values are checked in __post_init__
    keep_best: tuple[str, ...] | None = None
    restore_best: bool = False
    grad_checkpoint: bool = False
    optimizer: str = ""
    hyperparameters: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    schedules: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # the training data: rows per batch, and a fingerprint (trainers.fingerprint.describe_data)
    batch_size: int | None = None
    data: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    user: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_steps is None and self.epochs is None:
            raise ValueError("give the run length: max_steps or epochs")
        _optional_int("max_steps", self.max_steps, 1)
        _optional_int("epochs", self.epochs, 1)
        _optional_int("total_steps", self.total_steps, 1)
        check_int("seed", self.seed, minimum=0)
        if self.seed > _MAX_SEED:
            raise ValueError(f"seed must be <= 2**62 (seed + step seeds MLX), got {self.seed}")
        check_int("grad_accum", self.grad_accum, minimum=1)
        if self.clip_norm is not None:
            check_real("clip_norm", self.clip_norm, low=0.0, low_open=True)
        check_bool("grad_norm", self.grad_norm)
        check_bool("compile", self.compile)
        check_bool("log", self.log)
        check_int("log_every", self.log_every, minimum=1)
        check_int("keep_checkpoints", self.keep_checkpoints, minimum=1)
        check_int("report_every", self.report_every, minimum=0)
        _optional_int("eval_every", self.eval_every, 0)
        check_bool("eval_at_start", self.eval_at_start)
        _optional_int("checkpoint_every", self.checkpoint_every, 0)
        check_choice("precision", self.precision, PRECISIONS)
        if self.ema is not None:
            check_real("ema", self.ema, low=0.0, high=1.0, high_open=True)
        if self.keep_best is not None:
            best = self.keep_best
            if not (isinstance(best, (tuple, list)) and len(best) == 2
                    and isinstance(best[0], str)):
                raise TypeError(f"keep_best must be (metric_name, 'min' | 'max'), got {best!r}")
            check_choice("keep_best[1]", best[1], ("min", "max"))
        check_bool("restore_best", self.restore_best)
        if self.restore_best and self.keep_best is None:
            raise ValueError("restore_best=True needs keep_best=(metric, 'min' | 'max')")
        check_bool("grad_checkpoint", self.grad_checkpoint)
        try:
            json.dumps(self.to_json())
        except (TypeError, ValueError) as e:
            raise TypeError(f"config must be JSON-serialisable: {e}") from None

    @property
    def track_norm(self) -> bool:
        """Whether every step computes the global gradient norm (asked for, or clipping)."""
        return self.grad_norm or self.clip_norm is not None

    def to_json(self) -> dict[str, Any]:
        """The settings as plain data (what ``config.json`` and checkpoints hold)."""
        data = dataclasses.asdict(self)
        data["columns"] = list(self.columns)
        data["keep_best"] = None if self.keep_best is None else list(self.keep_best)
        return data

    def differences(self, saved: Mapping[str, Any], allowed: frozenset[str]) -> list[str]:
        """The resume-relevant settings that differ from ``saved`` and are not ``allowed``,
        as ``"key=saved_value, this run has key=value"`` phrases.

        Example:
            >>> now = TrainerSettings(max_steps=20, seed=1)
            >>> now.differences({**now.to_json(), "seed": 0}, frozenset())
            ['seed=0, this run has seed=1']
        """
        current = json.loads(json.dumps(self.to_json()))  # tuples -> lists, as saved
        return [
            _difference(key, saved[key], current[key])
            for key in RESUME_KEYS
            # A key missing from ``saved`` was not recorded by the version that saved it.
            if key not in allowed and key in saved and saved[key] != current[key]
        ]


def _difference(key: str, saved: Any, now: Any) -> str:
    if key == "data" and isinstance(saved, dict) and isinstance(now, dict):
        parts = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
        return (f"data: other training data ({', '.join(parts)} differ: the saved run had "
                f"{ {k: saved.get(k) for k in parts}!r}, this run has "
                f"{ {k: now.get(k) for k in parts}!r})")
    return f"{key}={saved!r}, this run has {key}={now!r}"
