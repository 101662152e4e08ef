"""Gradient checkpointing: recompute each block's activations in the backward pass.

A model says what its blocks are in one of three ways, tried in order:

1. a method ``grad_checkpoint_blocks()`` returning the modules to checkpoint;
2. a list attribute ``layers`` (``nn.Sequential``, most transformer stacks);
3. a ``model`` attribute holding such a list (mlx-lm's models: ``model.model.layers``).

Each block keeps its parameters and their names (checkpoints stay compatible); only its call
changes: the block's forward pass runs under ``mx.checkpoint``, so its intermediate activations
are freed after the forward pass and recomputed during the backward pass. Memory for
activations falls from the sum over blocks to roughly one block's, for about one extra
forward pass of compute.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import mlx.nn as nn

__all__ = ["checkpoint_blocks", "model_blocks"]


def model_blocks(model: nn.Module) -> list[nn.Module]:
    """The blocks of ``model`` to checkpoint (see the module docs).

    Example:
        >>> import mlx.nn as nn
        >>> len(model_blocks(nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))))
        3
    """
    custom = getattr(model, "grad_checkpoint_blocks", None)
    blocks: object
    if callable(custom):
        blocks = list(custom())
    else:
        has_layers = isinstance(getattr(model, "layers", None), list)
        holder = model if has_layers else getattr(model, "model", None)
        blocks = getattr(holder, "layers", None)
        if not isinstance(blocks, list):
            raise ValueError(
                f"grad_checkpoint=True: {type(model).__name__} does not say what its blocks "
                "are; give it a `layers` list, a `model.layers` list (mlx-lm) or a method "
                "`grad_checkpoint_blocks()` returning the modules to recompute"
            )
    for block in blocks:
        if not isinstance(block, nn.Module):
            raise TypeError(f"grad_checkpoint=True: block {block!r} is not an mlx.nn.Module")
    return blocks


def checkpoint_blocks(model: nn.Module) -> int:
    """Make every block of ``model`` recompute its activations in the backward pass; returns
    the number of blocks. Idempotent: a block already checkpointed is left as it is.

    Only the given instances change (their class is swapped for a subclass whose call runs
    under ``mx.checkpoint``); other instances of the same class are untouched.

    Example:
        >>> import mlx.core as mx, mlx.nn as nn
        >>> model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
        >>> x = mx.ones((3, 2))
        >>> before = model(x)
        >>> checkpoint_blocks(model)
        3
        >>> bool(mx.allclose(model(x), before))
        True
    """
    blocks = model_blocks(model)
    for block in blocks:
        cls = type(block)
        if getattr(cls, "_recomputes_in_backward", False):
            continue
        block.__class__ = _checkpointed_class(cls)
    return len(blocks)


_CLASSES: dict[type, type] = {}


def _checkpointed_class(cls: type) -> type:
    if cls not in _CLASSES:
        call = cls.__call__

        def __call__(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
            def forward(params: dict, *args: Any, **kwargs: Any) -> Any:
                self.update(params)
                return call(self, *args, **kwargs)

            return mx.checkpoint(forward)(self.trainable_parameters(), *args, **kwargs)

        _CLASSES[cls] = type(f"Checkpointed{cls.__name__}", (cls,),
                             {"__call__": __call__, "_recomputes_in_backward": True,
                              "__module__": cls.__module__})
    return _CLASSES[cls]
