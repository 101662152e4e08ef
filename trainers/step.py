"""The compiled training step and the compiled evaluation step.

One call of the training step is one optimizer update: it takes ``grad_accum`` micro-batches,
sums their gradients inside the compiled graph, averages across ranks (data parallel), clips,
and applies the update. Everything it mutates (model parameters, optimizer state including the
step counter and every scheduled hyperparameter, the random key) is captured through
``mx.compile(inputs=state, outputs=state)``. Nothing in it waits for the device.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_map, tree_reduce

from mlx_schedules.checks import check_choice

from .train_state import (
    COMPUTE_DTYPES,
    PRECISIONS,
    LossScale,
    assign_leaves,
    cast_floating,
    update_ema,
)

__all__ = ["call_with_batch", "global_norm", "make_eval_step", "make_train_step"]


def call_with_batch(fn: Callable, model: nn.Module, batch: Any) -> Any:
    """Call ``fn(model, **batch)`` for a dict batch, ``fn(model, *batch)`` for a tuple."""
    if isinstance(batch, Mapping):
        return fn(model, **batch)
    return fn(model, *batch)


def global_norm(tree: Any) -> mx.array:
    """The L2 norm of all arrays of a tree taken together.

    Example:
        >>> import mlx.core as mx
        >>> global_norm({"a": mx.array([3.0]), "b": [mx.array([4.0])]}).item()
        5.0
    """
    return mx.sqrt(tree_reduce(lambda acc, g: acc + mx.sum(mx.square(g)), tree, mx.array(0.0)))


def make_train_step(
    model: nn.Module,
    loss_fn: Callable[..., mx.array],
    optimizer: optim.Optimizer,
    *,
    grad_accum: int = 1,
    clip_norm: float | None = None,
    group: Any = None,
    grad_norm: bool = True,
    compile: bool = True,
    precision: str = "float32",
    ema: float | None = None,
    train_state: dict | None = None,
) -> Callable[..., tuple[mx.array, mx.array | None]]:
    """Build ``step(*micro_batches) -> (loss, grad_norm)``, compiled, one optimizer update.

    Args:
        model: the module; ``loss_fn(model, *batch)`` (tuple batches) or
            ``loss_fn(model, **batch)`` (dict batches) must return a scalar mean loss.
        optimizer: initialised before this is called (so the first trace sees its full state).
        grad_accum: number of micro-batches per update; their gradients are averaged.
        clip_norm: clip the global gradient norm to this value (after averaging).
        group: an ``mx.distributed`` group of size > 1 averages gradients and the loss across
            ranks with ``nn.average_gradients`` / ``all_sum``.
        grad_norm: compute the global gradient norm every step (a reduction over every
            gradient: about a tenth of a small MLP's step on the CPU backend). Without it and
            without ``clip_norm`` the step returns ``None`` for the norm.
        precision: ``"float32"``, or ``"bfloat16"`` / ``"float16"`` compute: the weights (the
            float32 masters) and the batch's floating arrays are cast for the forward and
            backward pass, the gradients cast back, and the update applied to the masters;
            the optimizer state stays float32. ``"float16"`` adds dynamic loss scaling and
            skips an update whose gradients overflow (see :mod:`trainers.train_state`).
        ema: keep ``train_state["ema"]``, the moving average of the weights, with this decay.
        train_state: the step's own arrays, from :func:`trainers.train_state.init_train_state`
            with the same ``precision`` and ``ema``; captured with the model and optimizer.

    The returned ``loss`` is the mean over micro-batches (and ranks); ``grad_norm`` is the
    global norm of the averaged gradient before clipping.

    Example:
        >>> import mlx.core as mx, mlx.nn as nn, mlx.optimizers as optim
        >>> model = nn.Linear(2, 1)
        >>> opt = optim.SGD(learning_rate=0.1)
        >>> opt.init(model.trainable_parameters())
        >>> mse = lambda m, x, y: nn.losses.mse_loss(m(x), y)
        >>> step = make_train_step(model, mse, opt)
        >>> loss, norm = step((mx.ones((4, 2)), mx.zeros((4, 1))))
        >>> opt.state["step"].item()
        1
    """
    if not isinstance(grad_accum, int) or grad_accum < 1:
        raise ValueError(f"grad_accum must be a positive int, got {grad_accum!r}")
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"clip_norm must be positive or None, got {clip_norm!r}")
    check_choice("precision", precision, PRECISIONS)
    train_state = {} if train_state is None else train_state
    if (precision == "float16") != ("loss_scale" in train_state) or \
            (ema is not None) != ("ema" in train_state):
        raise ValueError("train_state does not match precision/ema: build it with "
                         "trainers.train_state.init_train_state(model, precision=, ema=)")
    world = group.size() if group is not None else 1
    compute = COMPUTE_DTYPES[precision]
    scaled = precision == "float16"

    def objective(model, *args, **kwargs):
        loss = loss_fn(model, *args, **kwargs)
        return loss * train_state["loss_scale"] if scaled else loss

    loss_and_grad = nn.value_and_grad(model, objective)
    state = [model.state, optimizer.state, mx.random.state, train_state]

    def loss_and_grads(batch):
        if compute is None:
            return call_with_batch(loss_and_grad, model, batch)
        master = model.trainable_parameters()
        model.update(cast_floating(master, compute))
        loss, grads = call_with_batch(loss_and_grad, model, cast_floating(batch, compute))
        model.update(master)  # the update is applied to the float32 masters
        grads = tree_map(lambda g, p: g.astype(p.dtype), grads, master)
        return loss.astype(mx.float32), grads

    def step(*micro_batches):
        loss, grads = loss_and_grads(micro_batches[0])
        for batch in micro_batches[1:]:
            more_loss, more_grads = loss_and_grads(batch)
            loss = loss + more_loss
            grads = tree_map(mx.add, grads, more_grads)
        if len(micro_batches) > 1:
            scale = 1.0 / len(micro_batches)
            loss = loss * scale
            grads = tree_map(lambda g: g * scale, grads)
        if scaled:
            loss = loss / train_state["loss_scale"]
            grads = tree_map(lambda g: g / train_state["loss_scale"], grads)
        if world > 1:
            grads = nn.average_gradients(grads, group=group)
            loss = mx.distributed.all_sum(loss, group=group) / world
        if clip_norm is not None:
            grads, norm = optim.clip_grad_norm(grads, clip_norm)
        elif grad_norm:
            norm = global_norm(grads)
        else:
            norm = None
        if scaled:
            finite = _all_finite(grads)
            _update_unless_overflow(model, optimizer, grads, finite)
            LossScale.update(train_state, finite)
        else:
            finite = None
            optimizer.update(model, grads)
        if ema is not None:
            update_ema(train_state, model, ema, finite)
        return loss.astype(mx.float32), None if norm is None else norm.astype(mx.float32)

    return mx.compile(step, inputs=state, outputs=state) if compile else step


def _all_finite(tree: Any) -> mx.array:
    """One boolean: every array of the tree is finite (computed on the device)."""
    return tree_reduce(lambda acc, g: acc & mx.all(mx.isfinite(g)), tree, mx.array(True))


def _update_unless_overflow(model: nn.Module, optimizer: optim.Optimizer, grads: Any,
                            finite: mx.array) -> None:
    """Apply the update only where ``finite``: else weights, optimizer state and the step
    counter keep their values (selected on the device; nothing waits)."""
    old_params = model.trainable_parameters()
    old_state = tree_map(lambda a: a, optimizer.state)
    optimizer.update(model, grads)
    model.update(tree_map(lambda new, old: mx.where(finite, new, old),
                          model.trainable_parameters(), old_params))
    kept = tree_map(lambda new, old: mx.where(finite, new, old), optimizer.state, old_state)
    assign_leaves(optimizer.state, kept)


def make_eval_step(
    model: nn.Module, metrics: Mapping[str, Callable[..., mx.array]]
) -> Callable[[Any], dict[str, mx.array]]:
    """Build ``evaluate(batch) -> {name: batch mean}``, compiled, reading the model's state.

    Each metric is called like the loss function, ``metric(model, *batch)`` or
    ``metric(model, **batch)``, and must return the batch mean as a scalar.

    Example:
        >>> import mlx.core as mx, mlx.nn as nn
        >>> model = nn.Linear(2, 1)
        >>> ev = make_eval_step(model, {"zero": lambda m, x: mx.mean(m(x) * 0)})
        >>> ev((mx.ones((3, 2)),))["zero"].item()
        0.0
    """

    @partial(mx.compile, inputs=model.state)
    def evaluate(batch):
        return {
            name: call_with_batch(fn, model, batch).astype(mx.float32)
            for name, fn in metrics.items()
        }

    return evaluate
