"""Classification helpers: the accuracy metric and a one-time check of integer labels.

MLX's cross-entropy indexes the logits with the labels without checking them: a label at or
beyond the number of classes reads outside the array (a crash, or garbage), and a negative one
trains silently. :func:`check_labels` checks a whole label array once, before training, so that
nothing needs checking per step.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np

__all__ = ["accuracy", "check_labels"]


def accuracy(model: nn.Module, x: mx.array, y: mx.array) -> mx.array:
    """Fraction of rows whose arg-max prediction equals the integer label (a metric).

    Example:
        >>> import mlx.core as mx
        >>> accuracy(lambda x: x, mx.array([[0.1, 0.9], [0.8, 0.2]]), mx.array([1, 1])).item()
        0.5
    """
    return mx.mean(mx.argmax(model(x), axis=-1) == y)


def check_labels(labels: Any, num_classes: int, *, name: str = "labels") -> np.ndarray:
    """Check class labels once: integers in ``[0, num_classes)``; return them as ``int32``.

    Args:
        labels: a NumPy or MLX array (or a sequence) of class indices.
        num_classes: the number of classes the model predicts.
        name: what to call the labels in the error (``"y_train"``, ``"dataset.y_test"``...).

    Raises:
        TypeError: the labels are not integers (floats are refused rather than truncated).
        ValueError: a label is negative or ``>= num_classes``; the message names the first
            offending position and value.

    Example:
        >>> check_labels([0, 2, 1], 3).tolist()
        [0, 2, 1]
        >>> check_labels([0, 3], 3)
        Traceback (most recent call last):
        ...
        ValueError: labels[1] is 3, outside the 3 classes [0, 3)
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
            or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    array = np.asarray(labels)
    if array.dtype == np.bool_ or array.dtype.kind not in "iu":
        raise TypeError(
            f"{name} must be integer class indices, got dtype {array.dtype} "
            "(refusing to truncate or reinterpret them)"
        )
    bad = (array < 0) | (array >= num_classes)
    if bad.any():
        where = np.argwhere(bad)[0]
        index = int(where[0]) if where.size == 1 else tuple(int(i) for i in where)
        raise ValueError(
            f"{name}[{index}] is {array[tuple(where)].item()}, outside the {num_classes} "
            f"classes [0, {num_classes})"
        )
    return array.astype(np.int32, copy=False)
