"""Classification helpers: labels are checked once, before training."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from trainers import accuracy, check_labels


def test_valid_labels_come_back_as_int32():
    out = check_labels(np.array([0, 4, 2], np.int64), 5, name="y_train")
    assert out.dtype == np.int32 and out.tolist() == [0, 4, 2]
    assert check_labels(mx.array([1, 0]), 2).tolist() == [1, 0]


@pytest.mark.parametrize("labels, error, match", [
    ([0, 5, 1], ValueError, r"y\[1\] is 5, outside the 5 classes \[0, 5\)"),
    ([0, -1], ValueError, r"y\[1\] is -1, outside"),
    (np.array([[0, 1], [2, 7]]), ValueError, r"y\[\(1, 1\)\] is 7"),
    (np.array([0.0, 1.0]), TypeError, "integer class indices, got dtype float64"),
    (np.array([True, False]), TypeError, "got dtype bool"),
    (np.array(["a", "b"]), TypeError, "integer class indices"),
])
def test_bad_labels_are_named_with_their_position(labels, error, match):
    with pytest.raises(error, match=match):
        check_labels(labels, 5, name="y")


def test_num_classes_must_be_a_positive_integer():
    for bad in (0, -3, 2.0, True):
        with pytest.raises(ValueError, match="num_classes must be a positive integer"):
            check_labels([0], bad)


def test_accuracy_counts_argmax_hits():
    logits = mx.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    labels = mx.array([1, 1, 1, 0])
    assert accuracy(lambda x: x, logits, labels).item() == pytest.approx(3 / 4)
