"""What the trainer reads from an optimizer: its parts, and the hyperparameters to log.

A plain optimizer is one part. ``mlx.optimizers.MultiOptimizer`` (parameter groups) is one
part per inner optimizer, each with its own state, rate and schedules; their columns are
``learning_rate/0``, ``learning_rate/1``, ... (and ``momentum/0``...), as the contract says.
:func:`weight_decay_groups` builds the usual split: no weight decay on biases, normalisation
weights and embeddings.
"""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim

from mlx_schedules._mlx_compat import schedules_of

__all__ = [
    "hyperparameter_sources",
    "optimizer_parts",
    "scheduled_hyperparameters",
    "weight_decay_groups",
]

# Layers whose weights are scales or lookup tables, not projections: decaying them toward
# zero hurts (the usual practice of BERT, GPT-2, timm and nanoGPT).
_NO_DECAY_LAYERS = (nn.LayerNorm, nn.RMSNorm, nn.BatchNorm, nn.GroupNorm, nn.InstanceNorm,
                    nn.Embedding)


def optimizer_parts(optimizer: optim.Optimizer) -> list[tuple[str, optim.Optimizer]]:
    """``[(column suffix, optimizer)]``: ``[("", opt)]``, or one ``("/i", inner)`` per
    optimizer of a ``MultiOptimizer``.

    Example:
        >>> import mlx.optimizers as optim
        >>> multi = optim.MultiOptimizer([optim.SGD(0.1), optim.Adam(0.01)], [lambda p, w: True])
        >>> [(suffix, type(o).__name__) for suffix, o in optimizer_parts(multi)]
        [('/0', 'SGD'), ('/1', 'Adam')]
    """
    if isinstance(optimizer, optim.MultiOptimizer):
        return [(f"/{i}", inner) for i, inner in enumerate(optimizer.optimizers)]
    return [("", optimizer)]


def hyperparameter_sources(optimizer: optim.Optimizer) -> list[tuple[str, dict, str]]:
    """``[(column, state dict, key)]`` for every value logged per step: ``learning_rate``
    and every other scheduled hyperparameter of every part."""
    sources = []
    for suffix, part in optimizer_parts(optimizer):
        names = ["learning_rate"] if "learning_rate" in part.state else []
        names += [k for k in schedules_of(part) if k not in names]
        sources += [(name + suffix, part.state, name) for name in names]
    return sources


def scheduled_hyperparameters(optimizer: optim.Optimizer) -> list[str]:
    """Names logged per step: ``learning_rate`` and every other scheduled hyperparameter
    (suffixed ``/i`` for the i-th optimizer of a ``MultiOptimizer``).

    Example:
        >>> import mlx.optimizers as optim
        >>> scheduled_hyperparameters(optim.SGD(learning_rate=optim.cosine_decay(0.1, 10)))
        ['learning_rate']
    """
    return [column for column, _, _ in hyperparameter_sources(optimizer)]


def weight_decay_groups(
    model: nn.Module,
    decayed: optim.Optimizer,
    not_decayed: optim.Optimizer,
    *,
    exclude: Callable[[str, nn.Module], bool] | None = None,
) -> optim.MultiOptimizer:
    """Parameter groups with no weight decay for biases, norms and embeddings.

    Biases, every weight of a normalisation layer and of an embedding go to ``not_decayed``
    (group 0, logged as ``learning_rate/0``...); every other parameter to ``decayed``
    (group 1). ``exclude(path, module)`` sends more parameters to group 0.

    Example:
        >>> import mlx.nn as nn, mlx.optimizers as optim
        >>> model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 4), nn.LayerNorm(4))
        >>> opt = weight_decay_groups(model, optim.AdamW(1e-3, weight_decay=0.1),
        ...                           optim.AdamW(1e-3, weight_decay=0.0))
        >>> from mlx.utils import tree_flatten
        >>> sorted(p for p, w in tree_flatten(model.parameters()) if opt.filters[0](p, w))
        ['layers.0.weight', 'layers.1.bias', 'layers.2.bias', 'layers.2.weight']
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an mlx.nn.Module, got {type(model).__name__}")
    for name, opt in (("decayed", decayed), ("not_decayed", not_decayed)):
        if not isinstance(opt, optim.Optimizer) or isinstance(opt, optim.MultiOptimizer):
            raise TypeError(f"{name} must be a single mlx.optimizers optimizer, got {opt!r}")
    no_decay = set()
    for prefix, module in model.named_modules():
        whole = isinstance(module, _NO_DECAY_LAYERS) or (exclude and exclude(prefix, module))
        for name, value in module.items():
            if isinstance(value, mx.array) and (whole or name == "bias"):
                no_decay.add(f"{prefix}.{name}" if prefix else name)
    return optim.MultiOptimizer([not_decayed, decayed], [lambda path, _: path in no_decay])
