"""Models for the scripts: an MLP and a small CNN, with optional dropout and normalisation.

Both take images ``N x H x W x C`` (the MLP flattens them) and return class logits.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import mlx.core as mx
import mlx.nn as nn

__all__ = ["CNN", "MLP", "MODELS", "NORMS", "ModelTooLarge", "build_model", "check_model_fits",
           "cross_entropy", "memory_estimate"]

MODELS = ("mlp", "cnn")
NORMS = (None, "batch", "layer")


def _norm(kind: str, features: int, *, spatial: bool = False) -> nn.Module:
    """The normalisation layer of a config's ``model.norm`` ("batch" or "layer")."""
    if kind == "batch":
        return nn.BatchNorm(features)
    if kind == "layer":
        return nn.LayerNorm(features) if not spatial else nn.GroupNorm(1, features,
                                                                        pytorch_compatible=True)
    raise ValueError(f"model.norm must be 'batch' or 'layer', got {kind!r}")


class MLP(nn.Module):
    """Flatten, then ``Linear -> [norm] -> ReLU -> [dropout]`` per hidden layer, then logits.

    Example:
        >>> import mlx.core as mx
        >>> MLP(64, 10, hidden=(32,))(mx.zeros((2, 8, 8, 1))).shape
        (2, 10)
    """

    def __init__(self, in_features: int, num_classes: int, *, hidden: Sequence[int] = (128,),
                 dropout: float = 0.0, norm: str | None = None):
        super().__init__()
        sizes = [in_features, *hidden]
        self.layers = [nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
        self.norms = [_norm(norm, b) for b in hidden] if norm else []
        self.dropout: nn.Module | None = nn.Dropout(dropout) if dropout else None
        self.head = nn.Linear(sizes[-1], num_classes)

    def __call__(self, x: mx.array) -> mx.array:
        x = x.reshape(x.shape[0], -1)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if self.norms:
                x = self.norms[i](x)
            x = nn.relu(x)
            if self.dropout is not None:
                x = self.dropout(x)
        return self.head(x)


class CNN(nn.Module):
    """A small CNN: ``[conv3x3 -> [norm] -> ReLU -> maxpool2]`` per channel count, then a
    global average pool, optional dropout and a linear head.

    Example:
        >>> import mlx.core as mx
        >>> CNN(1, 10, channels=(8, 16))(mx.zeros((2, 8, 8, 1))).shape
        (2, 10)
    """

    def __init__(self, in_channels: int, num_classes: int, *, channels: Sequence[int] = (16, 32),
                 dropout: float = 0.0, norm: str | None = None):
        super().__init__()
        sizes = [in_channels, *channels]
        self.convs = [nn.Conv2d(a, b, 3, padding=1) for a, b in zip(sizes[:-1], sizes[1:])]
        self.norms = [_norm(norm, b, spatial=True) for b in channels] if norm else []
        self.pool = nn.MaxPool2d(2, 2)
        self.dropout: nn.Module | None = nn.Dropout(dropout) if dropout else None
        self.head = nn.Linear(sizes[-1], num_classes)

    def __call__(self, x: mx.array) -> mx.array:
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if self.norms:
                x = self.norms[i](x)
            x = nn.relu(x)
            if min(x.shape[1], x.shape[2]) >= 2:  # 8x8 digits would vanish after 3 pools
                x = self.pool(x)
        x = mx.mean(x, axis=(1, 2))
        if self.dropout is not None:
            x = self.dropout(x)
        return self.head(x)


def build_model(kind: str, input_shape: Sequence[int], num_classes: int, *,
                hidden: Sequence[int] = (128,), channels: Sequence[int] = (16, 32),
                dropout: float = 0.0, norm: str | None = None) -> nn.Module:
    """Build ``"mlp"`` or ``"cnn"`` for images of ``input_shape`` (H, W, C).

    Example:
        >>> build_model("mlp", (8, 8, 1), 10, hidden=(16,)).head.weight.shape
        (10, 16)
    """
    if kind == "mlp":
        in_features = 1
        for n in input_shape:
            in_features *= n
        return MLP(in_features, num_classes, hidden=hidden, dropout=dropout, norm=norm)
    if kind == "cnn":
        return CNN(input_shape[-1], num_classes, channels=channels, dropout=dropout, norm=norm)
    raise ValueError(f"model.kind: unknown model {kind!r}; valid kinds are {list(MODELS)}")


def cross_entropy(model: nn.Module, x: mx.array, y: mx.array) -> mx.array:
    """Mean softmax cross-entropy of the model's logits against integer labels (the loss)."""
    return nn.losses.cross_entropy(model(x), y, reduction="mean")


# ---------------------------------------------------------------- memory, before allocation
# float32 weights, their gradients and up to two optimizer moments (Adam's); activations are
# kept for the backward pass and matched by gradients of the same size.
BYTES_PER_PARAMETER = 4 * 4
BYTES_PER_ACTIVATION = 4 * 2


class ModelTooLarge(ValueError):
    """A model config needs more memory than the machine has; names the field that sizes it."""


def memory_estimate(kind: str, input_shape: Sequence[int], num_classes: int, *,
                    hidden: Sequence[int] = (128,), channels: Sequence[int] = (16, 32),
                    norm: str | None = None, batch_size: int = 1) -> dict[str, int]:
    """Bytes a training step needs, per config field that sizes them, without building the
    model: parameters (with gradients and optimizer moments) and activations of one batch.

    The parameter counts are the models' own (a test compares them with built models).

    Example:
        >>> for part, size in memory_estimate("mlp", (8, 8, 1), 10, hidden=[32],
        ...                                   batch_size=4).items():
        ...     print(part, size)
        the input x model.hidden[0] (64 x 32) 34304
        model.hidden[0] x classes (32 x 10) 5600
    """
    norm_size = {"batch": 4, "layer": 2}.get(norm or "", 0)  # batch norm adds running stats
    fields: dict[str, int] = {}

    def add(field: str, parameters: int, activations: int) -> None:
        fields[field] = fields.get(field, 0) + parameters * BYTES_PER_PARAMETER \
            + activations * batch_size * BYTES_PER_ACTIVATION

    if kind == "mlp":
        width, name = math.prod(input_shape), "the input"
        for i, h in enumerate(hidden):
            add(f"{name} x model.hidden[{i}] ({width} x {h})", width * h + h + norm_size * h, h)
            width, name = h, f"model.hidden[{i}]"
        add(f"{name} x classes ({width} x {num_classes})", width * num_classes + num_classes,
            num_classes)
    elif kind == "cnn":
        height, width, depth = input_shape
        name = "the input"
        for i, c in enumerate(channels):
            add(f"{name} x model.channels[{i}] ({depth} x {c} x 3 x 3)",
                9 * depth * c + c + norm_size * c, height * width * c)
            if min(height, width) >= 2:
                height, width = height // 2, width // 2
            depth, name = c, f"model.channels[{i}]"
        add(f"{name} x classes ({depth} x {num_classes})", depth * num_classes + num_classes,
            num_classes)
    else:
        raise ValueError(f"model.kind: unknown model {kind!r}; valid kinds are {list(MODELS)}")
    return fields


def lm_memory_estimate(config: dict[str, Any], *, weight_bytes: int, trainable: int,
                       batch_size: int, seq_len: int, grad_checkpoint: bool = False
                       ) -> dict[str, int]:
    """Bytes a causal language model's training step needs, by the part that grows with each
    setting: the weights as they are (``weight_bytes``: quantized ones included), gradients and
    AdamW's two moments of the ``trainable`` parameters (float32), the attention scores and
    probabilities kept for the backward pass (``batch x heads x seq_len^2`` per layer; one
    layer at a time with gradient checkpointing) and the logits with their gradient
    (``batch x seq_len x vocabulary``). A lower bound: the other activations add more.
    ``config`` is the model's (mlx-lm) config: ``num_hidden_layers``, ``num_attention_heads``,
    ``vocab_size``.

    Example:
        >>> parts = lm_memory_estimate({"num_hidden_layers": 2, "num_attention_heads": 4,
        ...                             "vocab_size": 256}, weight_bytes=4000, trainable=1000,
        ...                             batch_size=2, seq_len=100)
        >>> sorted(parts.values())
        [16000, 409600, 1280000]
    """
    layers = 1 if grad_checkpoint else int(config.get("num_hidden_layers", 1))
    heads = int(config.get("num_attention_heads", 1))
    vocab = int(config.get("vocab_size", 1))
    checkpointed = ", one layer at a time" if grad_checkpoint else f" x {layers} layers"
    return {
        f"weights, and gradients and AdamW moments of {trainable:,} trained parameters":
            weight_bytes + 12 * trainable,
        f"attention scores and probabilities (batch {batch_size} x {heads} heads x "
        f"{seq_len}^2{checkpointed})": 8 * batch_size * heads * seq_len * seq_len * layers,
        f"logits and their gradient (batch {batch_size} x {seq_len} x vocabulary {vocab})":
            8 * batch_size * seq_len * vocab,
    }


def physical_memory() -> int | None:
    """This machine's memory in bytes (``None`` where the OS does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _size(n: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def check_model_fits(estimate: dict[str, int], *, field: str,
                     available: int | None = None) -> int:
    """Raise :class:`ModelTooLarge`, naming ``field`` and the largest layer, when
    ``estimate``'s total exceeds ``available`` bytes (default: the machine's memory); return
    the total.

    Example:
        >>> check_model_fits({"model.hidden[0] x model.hidden[1] (10 x 10)": 2000,
        ...                   "the input x model.hidden[0] (4 x 10)": 500},
        ...                  field="model.hidden", available=1000)
        Traceback (most recent call last):
        ...
        trainers.experiments.models.ModelTooLarge: model.hidden: the model needs about 2.5 kB \
to train \
(weights, gradients, optimizer state, activations), more than this machine's 1 kB of memory; \
the largest part is model.hidden[0] x model.hidden[1] (10 x 10)
    """
    total = sum(estimate.values())
    available = physical_memory() if available is None else available
    if available is not None and total > available:
        largest = max(estimate, key=lambda part: estimate[part])
        raise ModelTooLarge(f"{field}: the model needs about {_size(total)} to train (weights, "
                            "gradients, optimizer state, activations), more than this "
                            f"machine's {_size(available)} of memory; the largest part is "
                            f"{largest}")
    return total
