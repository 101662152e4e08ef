"""Callbacks: plain callables taking a dict, plus early stopping and reduce-on-plateau.

The trainer calls every callback with one dict per event:

``{"event": "start", "step", "resumed", "run_dir"}``
    once, when the trainer owns the run directory (locked, an overwritten run removed, the
    checkpoint loaded) and before the first update: the place to write files of your own;
``{"event": "train", "step", "epoch", "loss", "grad_norm", "learning_rate", ...}``
    one per logged training row, when its block is written (not during the step);
``{"event": "eval", "step", "epoch", "eval_loss", "eval_<metric>"...}``
    after each evaluation;
``{"event": "checkpoint", "step", "path"}``
    after a checkpoint is saved;
``{"event": "end", "step", "stopped_early"}``
    when the run ends normally.

A callback that returns :data:`STOP` ends the run after the current step (followed by the final
evaluation and checkpoint). A callback with ``state_dict()`` / ``load_state_dict()`` has its
state saved in checkpoints.
"""

from __future__ import annotations

import math
from typing import Any

import mlx.core as mx
import mlx.optimizers as optim

from mlx_schedules._mlx_compat import schedules_of, set_schedule

from .optimizers import optimizer_parts
from .trackers import MLflow, TensorBoard  # trackers are callbacks too

__all__ = ["STOP", "EarlyStopping", "MLflow", "ReduceLROnPlateau", "TensorBoard"]

STOP = "stop"


class _Plateau:
    """Counts evaluations without improvement of one metric."""

    def __init__(self, metric: str, mode: str, min_delta: float, patience: int):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if not isinstance(patience, int) or patience < 0:
            raise ValueError(f"patience must be a non-negative int, got {patience!r}")
        if min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta!r}")
        self.metric, self.mode, self.min_delta, self.patience = metric, mode, min_delta, patience
        self.best: float | None = None
        self.num_bad = 0

    def observe(self, info: dict) -> bool:
        """Record an eval event; True when the metric has not improved for > patience evals."""
        if self.metric not in info:
            raise KeyError(
                f"{type(self).__name__} watches {self.metric!r}, but the eval results hold "
                f"{sorted(k for k in info if k.startswith('eval_'))}"
            )
        value = float(info[self.metric])
        sign = 1.0 if self.mode == "min" else -1.0
        if self.best is None or sign * (self.best - value) > self.min_delta or (
            math.isnan(self.best) and not math.isnan(value)
        ):
            self.best, self.num_bad = value, 0
            return False
        self.num_bad += 1
        return self.num_bad > self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "num_bad": self.num_bad}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.num_bad = state["best"], state["num_bad"]


class EarlyStopping(_Plateau):
    """Stop when an eval metric has not improved for more than ``patience`` evaluations.

    An improvement means beating the best value so far by more than ``min_delta``.

    Example:
        >>> stop = EarlyStopping("eval_loss", patience=1)
        >>> [stop({"event": "eval", "eval_loss": v}) for v in (1.0, 0.5, 0.6, 0.7)]
        [None, None, None, 'stop']
    """

    def __init__(
        self, metric: str = "eval_loss", *, patience: int = 3, min_delta: float = 0.0,
        mode: str = "min",
    ):
        super().__init__(metric, mode, min_delta, patience)

    def __call__(self, info: dict) -> str | None:
        if info.get("event") == "eval" and self.observe(info):
            return STOP
        return None


class ReduceLROnPlateau(_Plateau):
    """Multiply the learning rate by ``factor`` when an eval metric stops improving.

    The factor lives in ``optimizer.state["lr_factor"]`` (so it is captured by the compiled
    step and saved in checkpoints), and the optimizer's learning-rate schedule is wrapped so
    that the rate becomes ``schedule(step) * lr_factor`` (a constant rate is treated as a
    constant schedule). With a ``MultiOptimizer`` every parameter group gets the same factor.
    Construct it before the trainer compiles its step.

    Args:
        optimizer: the optimizer whose rate to scale.
        metric: the eval key to watch (``"eval_loss"``, ``"eval_accuracy"`` with mode max...).
        factor: multiplier applied after more than ``patience`` evals without improvement.
        min_factor: the factor never goes below this.

    Example:
        >>> import mlx.optimizers as optim
        >>> opt = optim.SGD(learning_rate=0.1)
        >>> plateau = ReduceLROnPlateau(opt, patience=0, factor=0.5)
        >>> for v in (1.0, 1.0, 1.0):
        ...     _ = plateau({"event": "eval", "eval_loss": v})
        >>> opt.state["lr_factor"].item()
        0.25
    """

    def __init__(
        self,
        optimizer: optim.Optimizer,
        metric: str = "eval_loss",
        *,
        factor: float = 0.1,
        patience: int = 2,
        min_delta: float = 0.0,
        min_factor: float = 0.0,
        mode: str = "min",
    ):
        super().__init__(metric, mode, min_delta, patience)
        if not 0.0 < factor < 1.0:
            raise ValueError(f"factor must be in (0, 1), got {factor!r}")
        self.parts = [part for _, part in optimizer_parts(optimizer)]
        if any("lr_factor" in part.state for part in self.parts):
            raise ValueError("this optimizer already has a ReduceLROnPlateau (lr_factor in state)")
        self.optimizer, self.factor, self.min_factor = optimizer, factor, min_factor
        for part in self.parts:  # every parameter group is scaled by the same factor
            part.state["lr_factor"] = mx.array(1.0, mx.float32)
            schedule = schedules_of(part).get("learning_rate")
            if schedule is None:
                # A Python float: compiled code may not close over an array.
                schedule = _Constant(part.state["learning_rate"].item())
            set_schedule(part, "learning_rate", _Scaled(schedule, part.state))

    def __call__(self, info: dict) -> None:
        if info.get("event") == "eval" and self.observe(info):
            factor = max(self.parts[0].state["lr_factor"].item() * self.factor, self.min_factor)
            for part in self.parts:
                # replaced in place of the captured dict's entry: the compiled step sees it
                part.state["lr_factor"] = mx.array(factor, mx.float32)
            self.num_bad = 0


class _Constant:
    """A constant rate as a schedule (what reduce-on-plateau scales when no schedule is set)."""

    def __init__(self, value: float):
        self.value = value

    def __call__(self, step: mx.array) -> mx.array:
        return mx.array(self.value, mx.float32)


class _Scaled:
    """``schedule(step) * state["lr_factor"]``; ``base_schedule`` is what a resume compares."""

    def __init__(self, schedule: Any, state: dict):
        self.base_schedule = schedule
        self._optimizer_state = state

    def __call__(self, step: mx.array) -> mx.array:
        return self.base_schedule(step) * self._optimizer_state["lr_factor"]
