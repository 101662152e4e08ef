"""Models for the scripts: an MLP and a small CNN, with optional dropout and normalisation.

Both take images ``N x H x W x C`` (the MLP flattens them) and return class logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx
import mlx.nn as nn

__all__ = ["CNN", "MLP", "MODELS", "NORMS", "build_model", "cross_entropy"]

MODELS = ("mlp", "cnn")
NORMS = (None, "batch", "layer")


def _norm(kind: str | None, features: int, *, spatial: bool = False) -> nn.Module | None:
    if kind == "batch":
        return nn.BatchNorm(features)
    if kind == "layer":
        return nn.LayerNorm(features) if not spatial else nn.GroupNorm(1, features,
                                                                        pytorch_compatible=True)
    return None


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
        self.dropout = nn.Dropout(dropout) if dropout else None
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
        self.dropout = nn.Dropout(dropout) if dropout else None
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
