"""Arrays the compiled step owns beside the model and the optimizer.

- ``ema``: the exponential moving average of the trainable weights (``Trainer(ema=d)``),
  ``avg = d·avg + (1-d)·weights`` after every update, a tree shaped like the parameters.
- ``loss_scale``, ``good_steps``, ``skipped``: dynamic loss scaling for float16 compute. The
  loss is multiplied by the scale before the backward pass and the gradients divided by it
  after; an update whose gradients overflow is skipped (weights, optimizer state and step
  counter stay as they were, so the schedule does not move) and the scale halves; after
  ``growth_interval`` good updates in a row it doubles. What a skipped update means for the
  log's hyperparameter columns is defined once, by :func:`schedule_steps`.

The dict is captured by ``mx.compile`` like ``optimizer.state`` and saved in checkpoints, so a
resumed run continues the same average and the same scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_map

__all__ = ["COMPUTE_DTYPES", "PRECISIONS", "LossScale", "assign_leaves", "cast_floating",
           "ema_weights", "init_train_state", "schedule_steps", "update_ema"]

PRECISIONS = ("float32", "bfloat16", "float16")
COMPUTE_DTYPES = {"float32": None, "bfloat16": mx.bfloat16, "float16": mx.float16}

_INITIAL_SCALE = 2.0**15
_MIN_SCALE = 1.0


class LossScale:
    """The loss-scaling rule (float16): constants and the on-device update of the state."""

    growth_interval = 2000
    minimum = _MIN_SCALE
    initial = _INITIAL_SCALE

    @staticmethod
    def update(state: dict, finite: mx.array) -> None:
        """Advance ``state``'s scale after an update whose gradients were ``finite`` or not."""
        scale, good = state["loss_scale"], state["good_steps"]
        grow = good + 1 >= LossScale.growth_interval
        state["loss_scale"] = mx.where(
            finite, mx.where(grow, scale * 2.0, scale), mx.maximum(scale * 0.5, _MIN_SCALE)
        )
        state["good_steps"] = mx.where(finite & ~grow, good + 1, mx.zeros_like(good))
        state["skipped"] = mx.where(finite, 0.0, 1.0).astype(mx.float32)


def schedule_steps(steps: Sequence[int] | np.ndarray,
                   skipped: Sequence[Any] | np.ndarray) -> np.ndarray:
    """The optimizer step at which each training row's logged hyperparameters were evaluated.

    This is the one definition of a float16 skip that the trainer's log and the rate audit
    (:func:`trainers.audit.audit_run`) share. The log's ``step`` counts the updates tried; the
    optimizer's own counter counts the updates applied. An overflowing float16 update is
    skipped and leaves the optimizer as it was: its counter, and the learning rate and every
    other scheduled value in its state. So, in log order, with ``k`` skipped rows before it,
    the training row of step ``t`` shows the schedules

    - at step ``t - k`` when its update was applied (``skipped`` false), and
    - at step ``max(t - k - 1, 0)`` when it was skipped: the values of the last applied update,
      or the optimizer's initial values (step 0) when none was applied yet.

    Without float16 nothing is skipped and this returns ``steps``.

    Args:
        steps: the ``step`` column of the training rows, in log order.
        skipped: their ``skipped`` column (true or 1.0 for a skipped update).

    Example:
        >>> schedule_steps([0, 1, 2, 3, 4, 5], [0.0, 1.0, 1.0, 0.0, 1.0, 0.0]).tolist()
        [0, 0, 0, 1, 1, 2]
    """
    tried = np.asarray(steps, np.int64)
    skip = np.asarray(skipped, bool)
    if tried.shape != skip.shape or tried.ndim != 1:
        raise ValueError(f"steps and skipped must be two equal-length lists, got shapes "
                         f"{tried.shape} and {skip.shape}")
    before = np.cumsum(skip) - skip  # skipped rows before each row
    applied = tried - before
    return np.where(skip, np.maximum(applied - 1, 0), applied)


def init_train_state(model: nn.Module, *, precision: str = "float32",
                     ema: float | None = None) -> dict[str, Any]:
    """The step's own state for these options (empty for float32 without EMA).

    Example:
        >>> import mlx.nn as nn
        >>> state = init_train_state(nn.Linear(2, 1), precision="float16", ema=0.9)
        >>> sorted(state), sorted(state["ema"]), state["loss_scale"].item()
        (['ema', 'good_steps', 'loss_scale', 'skipped'], ['bias', 'weight'], 32768.0)
    """
    state: dict[str, Any] = {}
    if ema is not None:
        # a copy: the average must not alias the weights it averages
        state["ema"] = tree_map(mx.array, model.trainable_parameters())
    if precision == "float16":
        state["loss_scale"] = mx.array(_INITIAL_SCALE, mx.float32)
        state["good_steps"] = mx.array(0, mx.int32)
        state["skipped"] = mx.array(0.0, mx.float32)
    return state


def update_ema(state: dict, model: nn.Module, decay: float, keep: mx.array | None) -> None:
    """``avg = decay·avg + (1-decay)·weights`` for every trainable weight (not where ``keep``
    is false: a skipped float16 update)."""

    def average(avg: mx.array, weight: mx.array) -> mx.array:
        new = decay * avg + (1.0 - decay) * weight
        return new if keep is None else mx.where(keep, new, avg)

    assign_leaves(state["ema"], tree_map(average, state["ema"], model.trainable_parameters()))


def ema_weights(state: dict) -> dict:
    """The averaged weights as a parameter tree, for ``model.update``."""
    return state["ema"]


def assign_leaves(target: Any, values: Any) -> None:
    """Write the leaves of ``values`` into the containers of ``target`` in place: a compiled
    step captured those containers, so they must stay the same objects.

    Example:
        >>> import mlx.core as mx
        >>> box = {"a": [mx.array(1)]}
        >>> inner = box["a"]
        >>> assign_leaves(box, {"a": [mx.array(2)]})
        >>> inner[0].item(), box["a"] is inner
        (2, True)
    """
    items = target.items() if isinstance(target, dict) else enumerate(target)
    for key, value in list(items):
        if isinstance(value, (dict, list)):
            assign_leaves(value, values[key])
        else:
            target[key] = values[key]


def cast_floating(tree: Any, dtype: mx.Dtype) -> Any:
    """Every floating-point array of a tree cast to ``dtype``; integers untouched.

    Example:
        >>> import mlx.core as mx
        >>> out = cast_floating({"x": mx.ones(2), "y": mx.array([1, 2])}, mx.bfloat16)
        >>> out["x"].dtype, out["y"].dtype
        (mlx.core.bfloat16, mlx.core.int32)
    """
    return tree_map(
        lambda a: a.astype(dtype)
        if isinstance(a, mx.array) and mx.issubdtype(a.dtype, mx.floating) else a,
        tree,
    )
