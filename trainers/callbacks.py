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
    when the run ends normally;
``{"event": "interrupted", "step"}``
    instead of ``end`` when Ctrl-C stopped the run (after its checkpoint): it is not
    finished, and a resume continues it.

A callback that returns :data:`STOP` ends the run after the current step (followed by the final
evaluation and checkpoint); the run is then over, and resuming it changes nothing. A callback
that returns :data:`PAUSE` ends this call of ``fit`` the same way, but the run is not over:
``fit(resume=True)`` continues it. A callback with ``state_dict()`` / ``load_state_dict()`` has its
state saved in checkpoints.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np

from mlx_schedules._mlx_compat import schedules_of, set_schedule
from mlx_schedules.checks import check_choice, check_int, check_real

from .optimizers import optimizer_parts
from .trackers import MLflow, TensorBoard, WandB  # trackers are callbacks too

__all__ = ["PAUSE", "STOP", "EarlyStopping", "MLflow", "ReduceLROnPlateau", "TensorBoard",
           "WandB", "plateau_rate"]

#: Return this from a callback to end the run after the current step, for good: the final
#: evaluation and checkpoint follow, and a resume changes nothing. It is the string ``"stop"``.
STOP = "stop"
#: Return this from a callback to end this call of ``fit`` after the current step, with an
#: evaluation and a checkpoint; ``fit(resume=True)`` continues the run later. It is the string
#: ``"pause"``.
PAUSE = "pause"


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


class ReduceLROnPlateau:
    r"""Lower the learning rate when an eval metric stops improving (PyTorch's rule).

    At every ``eval`` event, with ``a`` the metric and ``best`` the best value so far
    (``+inf`` in mode ``min``, ``-inf`` in mode ``max`` before the first evaluation), ``a`` is
    an improvement when

    =========  ======================================  =====================================
    mode       ``threshold_mode="rel"``                ``threshold_mode="abs"``
    =========  ======================================  =====================================
    ``min``    ``a < best * (1 - threshold)``          ``a < best - threshold``
    ``max``    ``a > best * (1 + threshold)``          ``a > best + threshold``
    =========  ======================================  =====================================

    An improvement sets ``best = a`` and the count of bad evaluations to 0; anything else
    (NaN included) adds 1 to it. During a cooldown the count is held at 0 (the cooldown
    counter drops by one per evaluation). When the count exceeds ``patience``, every
    parameter group's rate is reduced, the cooldown starts (``cooldown`` evaluations) and the
    count restarts at 0. This is PyTorch's ``torch.optim.lr_scheduler.ReduceLROnPlateau``
    step for step; given the same metric values, the rate factors are PyTorch's.

    How the rate is formed, with a schedule ``s(t)`` underneath (a constant rate is the
    schedule ``s(t) = lr``): each parameter group ``g`` keeps a factor ``f_g`` in its
    optimizer state (``state["lr_factor"]``, float32, captured by the compiled step and saved
    in checkpoints), and the rate of update ``t`` is

    .. math::
        \eta_t = \min\bigl(s(t),\ \max(s(t)\, f_g,\ \mathrm{min\_lr}_g)\bigr)

    so ``min_lr`` is a floor on what the plateau makes of the schedule, and never lifts the
    rate above the schedule's own value (a schedule that decays below ``min_lr`` by itself
    still does). With ``f_g = 1`` the rate is ``s(t)`` bit for bit. A reduction multiplies
    ``f_g`` by ``factor``; as in PyTorch (``eps``), it is skipped for a group whose rate at the
    evaluation's step (the event's ``step``: the rate the next update would use) would fall
    by ``eps`` or less (the rate already sits at the floor, or is tiny). For a constant rate
    this is exactly PyTorch's ``new_lr = max(old_lr * factor, min_lr)`` with its ``eps``
    rule.

    Args:
        optimizer: the optimizer whose rate to scale; with an ``mlx.optimizers.MultiOptimizer``
            each inner optimizer (parameter group) has its own factor.
        metric: the eval key to watch (``"eval_loss"``, ``"eval_accuracy"`` with mode max...).
        mode: ``"min"`` or ``"max"``.
        factor: multiplier of a reduction, in (0, 1).
        patience: evaluations without improvement tolerated before a reduction.
        threshold: the margin of an improvement (relative or absolute, ``threshold_mode``).
        threshold_mode: ``"rel"`` or ``"abs"``.
        cooldown: evaluations after a reduction during which bad evaluations are not counted.
        min_lr: floor on the resulting rate: a number, or one per parameter group.
        eps: the smallest change of the rate a reduction makes (PyTorch's ``eps``).
        min_factor: deprecated: a floor on ``f_g`` itself (use ``min_lr``).
        min_delta: deprecated: ``threshold=min_delta, threshold_mode="abs"``.

    Construct it before the trainer compiles its step.

    Example:
        >>> import mlx.optimizers as optim
        >>> opt = optim.SGD(learning_rate=0.1)
        >>> plateau = ReduceLROnPlateau(opt, patience=0, factor=0.5, cooldown=1)
        >>> for v in (1.0, 1.0, 1.0, 1.0):
        ...     _ = plateau({"event": "eval", "step": 0, "eval_loss": v})
        >>> opt.state["lr_factor"].item()
        0.25
    """

    def __init__(
        self,
        optimizer: optim.Optimizer,
        metric: str = "eval_loss",
        *,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 2,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float | Sequence[float] = 0.0,
        eps: float = 1e-8,
        min_factor: float | None = None,
        min_delta: float | None = None,
    ):
        if not isinstance(optimizer, optim.Optimizer):
            raise TypeError(f"optimizer must be an mlx.optimizers.Optimizer, got {optimizer!r}")
        if not isinstance(metric, str):
            raise TypeError(f"metric must be an eval column name, got {metric!r}")
        check_choice("mode", mode, ("min", "max"))
        check_real("factor", factor, low=0.0, high=1.0, low_open=True, high_open=True)
        check_int("patience", patience, minimum=0)
        if min_delta is not None:
            warnings.warn("ReduceLROnPlateau(min_delta=...) is deprecated: use "
                          "threshold=..., threshold_mode='abs'", DeprecationWarning,
                          stacklevel=2)
            threshold, threshold_mode = min_delta, "abs"
        check_real("threshold", threshold, low=0.0)
        check_choice("threshold_mode", threshold_mode, ("rel", "abs"))
        check_int("cooldown", cooldown, minimum=0)
        check_real("eps", eps, low=0.0)
        if min_factor is not None:
            warnings.warn("ReduceLROnPlateau(min_factor=...) is deprecated: use min_lr, a "
                          "floor on the rate", DeprecationWarning, stacklevel=2)
            check_real("min_factor", min_factor, low=0.0, high=1.0)
        self.parts = [part for _, part in optimizer_parts(optimizer)]
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != len(self.parts):
                raise ValueError(f"min_lr must be one number or one per parameter group "
                                 f"({len(self.parts)}), got {list(min_lr)!r}")
            floors = [check_real(f"min_lr[{i}]", v, low=0.0) for i, v in enumerate(min_lr)]
        else:
            floors = [check_real("min_lr", min_lr, low=0.0)] * len(self.parts)
        if any("lr_factor" in part.state for part in self.parts):
            raise ValueError("this optimizer already has a ReduceLROnPlateau (lr_factor in state)")
        self.optimizer, self.metric, self.mode, self.factor = optimizer, metric, mode, factor
        self.patience, self.threshold, self.threshold_mode = patience, threshold, threshold_mode
        self.cooldown, self.eps, self.min_factor = cooldown, eps, min_factor
        self.min_lrs = [float(v) for v in floors]
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad = 0
        self.cooldown_counter = 0
        self.reductions = 0  # evaluations that reduced at least one group's rate
        self._scaled = []
        for part, floor in zip(self.parts, self.min_lrs, strict=True):
            part.state["lr_factor"] = mx.array(1.0, mx.float32)
            schedule = schedules_of(part).get("learning_rate")
            if schedule is None:
                # A Python float: compiled code may not close over an array.
                schedule = _Constant(part.state["learning_rate"].item())
            scaled = _Scaled(schedule, part.state, floor)
            set_schedule(part, "learning_rate", scaled)
            self._scaled.append(scaled)

    def is_better(self, value: float) -> bool:
        """Whether ``value`` improves on the best so far (the table above)."""
        best, threshold = self.best, self.threshold
        if self.mode == "min":
            return value < (best * (1 - threshold) if self.threshold_mode == "rel"
                            else best - threshold)
        return value > (best * (1 + threshold) if self.threshold_mode == "rel"
                        else best + threshold)

    def __call__(self, info: dict) -> None:
        if info.get("event") != "eval":
            return
        if self.metric not in info:
            raise KeyError(
                f"ReduceLROnPlateau watches {self.metric!r}, but the eval results hold "
                f"{sorted(k for k in info if k.startswith('eval_') or k.startswith('ema_'))}")
        value = float(info[self.metric])
        if self.is_better(value):
            self.best, self.num_bad = value, 0
        else:
            self.num_bad += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad = 0
        if self.num_bad > self.patience:
            self._reduce(int(info.get("step", 0)))
            self.cooldown_counter = self.cooldown
            self.num_bad = 0

    def _reduce(self, step: int) -> None:
        """Multiply each group's factor by ``factor``, unless its rate would barely move."""
        reduced = False
        for part, scaled in zip(self.parts, self._scaled, strict=True):
            old = part.state["lr_factor"].item()
            new = old * self.factor
            if self.min_factor is not None:
                new = max(new, self.min_factor)
            base = float(scaled.base_schedule(mx.array(step, mx.uint64)).item())
            if scaled.rate(base, old) - scaled.rate(base, new) > self.eps:
                # replaced in place of the captured dict's entry: the compiled step sees it
                part.state["lr_factor"] = mx.array(new, mx.float32)
                reduced = True
        self.reductions += int(reduced)

    def factors(self) -> list[float]:
        """Each parameter group's current factor ``f_g``."""
        return [part.state["lr_factor"].item() for part in self.parts]

    def state_dict(self) -> dict[str, Any]:
        # JSON has no infinity: the initial best is saved as None
        best = self.best if math.isfinite(self.best) else None
        return {"best": best, "num_bad": self.num_bad, "cooldown_counter": self.cooldown_counter,
                "reductions": self.reductions}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        best = state["best"]
        self.best = (math.inf if self.mode == "min" else -math.inf) if best is None else best
        self.num_bad = state["num_bad"]
        # checkpoints of earlier versions have no cooldown
        self.cooldown_counter = state.get("cooldown_counter", 0)
        self.reductions = state.get("reductions", 0)


class _Constant:
    """A constant rate as a schedule (what reduce-on-plateau scales when no schedule is set)."""

    def __init__(self, value: float):
        self.value = value

    def __call__(self, step: mx.array) -> mx.array:
        return mx.array(self.value, mx.float32)

    def to_config(self) -> dict[str, Any]:
        """As :func:`mlx_schedules.constant`: how ``config.json`` describes the rate (so that
        the rate audit can rebuild it)."""
        return {"name": "constant", "value": self.value}


class _Scaled:
    """``min(s(t), max(s(t) * lr_factor, min_lr))``; ``base_schedule`` is what a resume (and
    the rate audit) compares."""

    def __init__(self, schedule: Any, state: dict, min_lr: float):
        self.base_schedule = schedule
        self.min_lr = min_lr
        self._optimizer_state = state

    def __call__(self, step: mx.array) -> mx.array:
        base = self.base_schedule(step)
        scaled = base * self._optimizer_state["lr_factor"]
        if self.min_lr > 0:
            scaled = mx.minimum(base, mx.maximum(scaled, self.min_lr))
        return scaled

    def rate(self, base: float, factor: float) -> float:
        """The rate for a base value and a factor, as :meth:`__call__` computes it (float32)."""
        return plateau_rate(base, factor, self.min_lr)


def plateau_rate(base: Any, factor: Any, min_lr: float) -> Any:
    """``min(base, max(base * factor, min_lr))`` in float32, as the scaled schedule computes it
    (NumPy; scalars or arrays).

    Example:
        >>> float(plateau_rate(0.1, 0.01, 0.005))
        0.004999999888241291
    """
    base = np.asarray(base, np.float32)
    scaled = base * np.asarray(factor, np.float32)
    if min_lr > 0:
        scaled = np.minimum(base, np.maximum(scaled, np.float32(min_lr)))
    return scaled
