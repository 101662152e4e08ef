"""The learning-rate range test (Smith 2017): sweep the rate up, watch the loss, pick a max rate.

The sweep is a :class:`trainers.Trainer` run (same compiled step, same data handling, same
``compile=`` option) with the optimizer's learning-rate schedule temporarily replaced by
:func:`mlx_schedules.range_sweep` and a callback that stops on divergence. The rates recorded
are the trainer's logged rates, read from ``optimizer.state["learning_rate"]``: the rates the
updates actually used.

Suggested rate: ``suggested_lr`` is the rate at the minimum of the smoothed loss divided by 10.
The steepest-descent point of the smoothed curve (also returned, ``steepest_lr``) is the classic
choice, but on short, noisy sweeps its location jumps between runs (a derivative of a noisy
curve); the minimum is stable, and a tenth of it sits on the falling part of the curve, a safe
peak for one-cycle or a cyclical schedule's upper bound.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten

import mlx_schedules
from mlx_schedules._checks import check_int, check_real
from mlx_schedules._mlx_compat import remove_schedule, schedules_of, set_schedule

from .callbacks import STOP
from .checkpoint import _set_leaf
from .errors import NonFiniteError
from .trainer import Trainer

__all__ = ["RangeTestResult", "lr_range_test", "smooth_losses"]


@dataclass
class RangeTestResult:
    """The curve of a range test and the rates read off it.

    Attributes:
        learning_rates: the rate each update used.
        losses: the raw training loss of each update.
        smoothed_losses: bias-corrected exponential moving average of ``losses``.
        suggested_lr: ``min_loss_lr / 10`` (see the module docs).
        min_loss_lr: the rate at the smallest smoothed loss.
        steepest_lr: the rate where the smoothed loss falls fastest per unit of log-rate.
        diverged_at: index of the update where the sweep stopped on divergence, or ``None``.
    """

    learning_rates: list[float]
    losses: list[float]
    smoothed_losses: list[float]
    suggested_lr: float
    min_loss_lr: float
    steepest_lr: float
    diverged_at: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def smooth_losses(losses: list[float], beta: float) -> list[float]:
    """Bias-corrected EMA: ``avg_i = beta avg_{i-1} + (1-beta) loss_i``, ``avg_i / (1-beta^(i+1))``.

    Example:
        >>> smooth_losses([1.0, 3.0], 0.5)
        [1.0, 2.3333333333333335]
    """
    avg, out = 0.0, []
    for i, loss in enumerate(losses):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta ** (i + 1)))
    return out


def lr_range_test(
    model: nn.Module,
    loss_fn: Callable[..., mx.array],
    optimizer: optim.Optimizer,
    data: Any,
    *,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    steps: int = 100,
    mode: str = "exponential",
    smoothing: float = 0.98,
    diverge_factor: float = 4.0,
    check_every: int = 10,
    restore: bool = False,
    seed: int = 0,
    compile: bool = True,
) -> RangeTestResult:
    """Sweep the learning rate from ``min_lr`` to ``max_lr`` over ``steps`` updates.

    The sweep stops early when the smoothed loss exceeds ``diverge_factor`` times its best
    value, or the loss is not finite. Losses are fetched from the device every
    ``check_every`` updates, so up to ``check_every - 1`` updates may run past the point of
    divergence; the curve is cut at that point.

    The model and optimizer are trained by the sweep and left so (``restore=False``, the
    default, as in most tools: a range test is usually run on a throwaway copy). With
    ``restore=True`` the parameters and optimizer state are put back afterwards. The
    optimizer's own learning-rate schedule is always put back.

    Args:
        model, loss_fn, optimizer, data: as for :class:`trainers.Trainer`.
        mode: ``"exponential"`` (geometric steps, the usual choice) or ``"linear"``.
        smoothing: the EMA factor of :func:`smooth_losses`.
        check_every: updates per block of losses fetched from the device (the trainer's
            ``log_every``).
        compile: compile the training step (the trainer's ``compile=``); ``False`` for very
            short sweeps on the Linux CPU backend, where compiling costs seconds.

    Example:
        >>> import mlx.core as mx, mlx.nn as nn, mlx.optimizers as optim
        >>> x = mx.random.normal((64, 4), key=mx.random.key(0))
        >>> data = [(x, x @ mx.ones((4, 1)))]
        >>> mse = lambda m, x, y: nn.losses.mse_loss(m(x), y)
        >>> result = lr_range_test(nn.Linear(4, 1), mse, optim.SGD(learning_rate=0.0), data,
        ...                        min_lr=1e-4, max_lr=10.0, steps=50)
        >>> result.diverged_at is not None and result.suggested_lr < 1.0
        True
    """
    sweep = mlx_schedules.range_sweep(min_lr, max_lr, steps, mode=mode)  # checks all four
    check_real("smoothing", smoothing, low=0.0, high=1.0, high_open=True)
    check_real("diverge_factor", diverge_factor, low=1.0, low_open=True)
    check_int("check_every", check_every, minimum=1)

    optimizer.init(model.trainable_parameters())
    saved_schedule = schedules_of(optimizer).get("learning_rate")
    saved_rate = optimizer.state["learning_rate"]
    saved_params = model.parameters()  # arrays are immutable: keeping references is a snapshot
    saved_state = dict(tree_flatten(optimizer.state))
    start = int(optimizer.state["step"].item())  # a Python int: a closed-over array is illegal
    set_schedule(optimizer, "learning_rate", lambda t: sweep(t - start))
    watcher = _DivergenceWatch(smoothing, diverge_factor)
    trainer = Trainer(model, loss_fn, optimizer, data, run_dir=None, max_steps=steps,
                      log=False, checkpoint_every=0, report_every=0, log_every=check_every,
                      seed=seed, compile=compile, callbacks=[watcher])
    try:
        trainer.fit()
    except NonFiniteError:
        pass  # the watcher saw the non-finite row and marked the divergence
    finally:
        if saved_schedule is None:
            remove_schedule(optimizer, "learning_rate")
        else:
            set_schedule(optimizer, "learning_rate", saved_schedule)
        optimizer.state["learning_rate"] = saved_rate
        if restore:
            model.update(saved_params)
            for key, value in saved_state.items():
                _set_leaf(optimizer.state, key, value)

    rates, losses, smoothed = watcher.rates, watcher.losses, watcher.smoothed
    finite = [(s, r) for s, r in zip(smoothed, rates, strict=True) if math.isfinite(s)]
    if not finite:
        raise FloatingPointError("the loss was not finite at the first update of the range test")
    min_loss_lr = min(finite)[1]
    log_rates = np.log(np.array([r for _, r in finite]))
    curve = np.array([s for s, _ in finite])
    if len(curve) >= 2:
        slopes = np.gradient(curve, log_rates) if np.all(np.diff(log_rates) > 0) else np.diff(curve)
        steepest_lr = float(np.exp(log_rates[int(np.argmin(slopes))]))
    else:
        steepest_lr = min_loss_lr
    return RangeTestResult(
        learning_rates=rates,
        losses=losses,
        smoothed_losses=smoothed,
        suggested_lr=min_loss_lr / 10,
        min_loss_lr=min_loss_lr,
        steepest_lr=steepest_lr,
        diverged_at=watcher.diverged_at,
        extra={"mode": mode, "min_lr": min_lr, "max_lr": max_lr, "steps": steps},
    )


class _DivergenceWatch:
    """A trainer callback recording the sweep's curve and stopping when it diverges: the
    smoothed loss above ``factor`` times its best, or a non-finite loss."""

    def __init__(self, smoothing: float, factor: float):
        self.smoothing, self.factor = smoothing, factor
        self.rates: list[float] = []
        self.losses: list[float] = []
        self.smoothed: list[float] = []
        self.diverged_at: int | None = None
        self._average = 0.0
        self._best = math.inf

    def __call__(self, event: dict) -> str | None:
        if event.get("event") != "train" or self.diverged_at is not None:
            return None  # rows of the block after the divergence are not part of the curve
        loss = event["loss"]
        self.rates.append(event["learning_rate"])
        self.losses.append(loss)
        self._average = self.smoothing * self._average + (1 - self.smoothing) * loss
        value = self._average / (1 - self.smoothing ** len(self.losses))
        self.smoothed.append(value)
        self._best = min(self._best, value)
        if not math.isfinite(value) or value > self.factor * self._best:
            self.diverged_at = len(self.losses) - 1
            return STOP
        return None
