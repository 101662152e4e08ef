"""The learning-rate range test (Smith 2017): sweep the rate up, watch the loss, pick a max rate.

The sweep runs the trainer's compiled step (same capture, same data handling) with the
optimizer's learning-rate schedule temporarily replaced by the sweep
(:func:`mlx_schedules.lr_range_test` when installed). The rates recorded are read from
``optimizer.state["learning_rate"]`` after each update: the rates the updates actually used.

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

from .checkpoint import _set_leaf
from .data import BatchStream, as_source, to_device
from .step import make_train_step

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


def _sweep(min_lr: float, max_lr: float, steps: int, mode: str) -> Callable:
    try:
        from mlx_schedules import lr_range_test as sweep
    except ImportError:  # the schedules package is optional for the trainer
        sweep = None
    if sweep is not None:
        return sweep(min_lr, max_lr, steps, mode=mode)
    last = steps - 1

    def schedule(t: mx.array) -> mx.array:
        x = mx.minimum(t, last).astype(mx.float32) / last
        if mode == "exponential":
            return min_lr * mx.exp(math.log(max_lr / min_lr) * x)
        return min_lr + (max_lr - min_lr) * x

    return schedule


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
    if not 0 < min_lr < max_lr:
        raise ValueError(f"need 0 < min_lr < max_lr, got min_lr={min_lr}, max_lr={max_lr}")
    if not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an int >= 2, got {steps!r}")
    if mode not in ("exponential", "linear"):
        raise ValueError(f"mode must be 'exponential' or 'linear', got {mode!r}")
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
    if not diverge_factor > 1:
        raise ValueError(f"diverge_factor must be > 1, got {diverge_factor!r}")

    optimizer.init(model.trainable_parameters())
    saved_schedule = optimizer._schedulers.get("learning_rate")
    saved_rate = optimizer.state["learning_rate"]
    saved_params = model.parameters()  # arrays are immutable: keeping references is a snapshot
    saved_state = dict(tree_flatten(optimizer.state))
    start = int(optimizer.state["step"].item())  # a Python int: a closed-over array is illegal
    sweep = _sweep(min_lr, max_lr, steps, mode)
    optimizer._schedulers["learning_rate"] = lambda t: sweep(t - start)
    data_stream = BatchStream(as_source(data, name="data"))
    train_step = make_train_step(model, loss_fn, optimizer)
    state = [model.state, optimizer.state, mx.random.state]

    pending: list[tuple[mx.array, mx.array]] = []
    rates: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    diverged_at = None
    try:
        for i in range(steps):
            mx.random.seed(seed + i)
            loss, _ = train_step(to_device(data_stream.next()))
            pending.append((loss, optimizer.state["learning_rate"]))
            mx.eval(state)
            if len(pending) == check_every or i == steps - 1:
                block = np.array(mx.stack([mx.stack(p) for p in pending]))  # host waits
                pending.clear()
                for loss_value, rate in block.tolist():
                    rates.append(rate)
                    losses.append(loss_value)
                    smoothed = smooth_losses(losses, smoothing)
                    best = min(smoothed)
                    if not math.isfinite(smoothed[-1]) or smoothed[-1] > diverge_factor * best:
                        diverged_at = len(losses) - 1
                        break
                if diverged_at is not None:
                    break
    finally:
        if saved_schedule is None:
            optimizer._schedulers.pop("learning_rate", None)
        else:
            optimizer._schedulers["learning_rate"] = saved_schedule
        optimizer.state["learning_rate"] = saved_rate
        if restore:
            model.update(saved_params)
            for key, value in saved_state.items():
                _set_leaf(optimizer.state, key, value)

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
        diverged_at=diverged_at,
        extra={"mode": mode, "min_lr": min_lr, "max_lr": max_lr, "steps": steps},
    )


