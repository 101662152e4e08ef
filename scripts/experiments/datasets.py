"""Datasets for the scripts, as ``{"x_train", "y_train", "x_test", "y_test"}`` numpy arrays.

Images are float32 in ``[0, 1]`` (then standardised per channel with the training set's mean and
standard deviation), laid out ``N x H x W x C``; labels are int32.

- ``digits`` (the default): scikit-learn's handwritten digits, 1797 images of 8x8 pixels, shipped
  inside scikit-learn (no download). Split into train/test with a fixed seed.
- ``mnist``, ``fashion_mnist``, ``cifar10``: through ``mlx.data.datasets``, from its cache only.
  This toolkit never downloads; when the cache is empty the error says where the files must be
  and how to fetch them on a machine with network access.
- ``npz``: any ``.npz`` file holding ``x_train, y_train, x_test, y_test``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["DATASETS", "MLX_DATA_CACHE_FILES", "check_available", "default_cache_dir",
           "load_dataset"]

DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "npz")

# What mlx.data.datasets looks for in its cache directory before it would download.
MLX_DATA_CACHE_FILES = {
    "mnist": ("mnist", ("train.pkl", "test.pkl")),
    "fashion_mnist": ("fashion-mnist", ("train.pkl", "test.pkl")),
    "cifar10": ("cifar", ("cifar10_train.pkl", "cifar10_test.pkl")),
}
_LOADERS = {"mnist": "load_mnist", "fashion_mnist": "load_fashion_mnist",
            "cifar10": "load_cifar10"}
_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


class DatasetUnavailable(FileNotFoundError):
    """A dataset is not on this machine (and the scripts do not download)."""


def default_cache_dir() -> Path:
    """``mlx.data``'s cache root, ``~/.cache/mlx.data``."""
    return Path.home() / ".cache" / "mlx.data"


def _cache_dir(name: str, cache_dir: str | os.PathLike | None) -> Path:
    sub, _ = MLX_DATA_CACHE_FILES[name]
    return Path(cache_dir) / sub if cache_dir is not None else default_cache_dir() / sub


def check_available(name: str, *, path: str | os.PathLike | None = None,
                    cache_dir: str | os.PathLike | None = None) -> None:
    """Raise :class:`DatasetUnavailable` (or ``ValueError``) unless ``name`` can be loaded.

    Only looks at files: nothing is read or downloaded. ``cache_dir`` is the mlx.data cache root
    (default ``~/.cache/mlx.data``); ``path`` is the ``.npz`` file for ``name="npz"``.

    Example:
        >>> check_available("digits")
        >>> check_available("npz", path="/nonexistent.npz")
        Traceback (most recent call last):
        ...
        experiments.datasets.DatasetUnavailable: dataset.path: file not found: /nonexistent.npz
    """
    if name not in DATASETS:
        raise ValueError(f"dataset.name: unknown dataset {name!r}; valid names are "
                         f"{list(DATASETS)}")
    if name == "digits":
        try:
            import sklearn.datasets  # noqa: F401
        except ImportError:
            raise DatasetUnavailable(
                "dataset.name: 'digits' needs scikit-learn (pip install scikit-learn, or "
                "pip install 'mlx-schedules[datasets]')") from None
    elif name == "npz":
        if path is None:
            raise ValueError("dataset.path: the 'npz' dataset needs a path to a .npz file "
                             "holding x_train, y_train, x_test, y_test")
        if not os.path.isfile(path):
            raise DatasetUnavailable(f"dataset.path: file not found: {path}")
        if not os.fspath(path).endswith(".npz"):
            raise ValueError(f"dataset.path: expected a .npz file, got {path}")
    else:
        try:
            import mlx.data.datasets  # noqa: F401
        except ImportError:
            raise DatasetUnavailable(
                f"dataset.name: {name!r} loads through mlx-data, which is not installed "
                "(pip install mlx-data)") from None
        root = _cache_dir(name, cache_dir)
        _, files = MLX_DATA_CACHE_FILES[name]
        missing = [f for f in files if not (root / f).is_file()]
        if missing:
            loader = _LOADERS[name]
            raise DatasetUnavailable(
                f"dataset.name: {name!r} is not in the mlx.data cache: {root} lacks "
                f"{', '.join(missing)}. These scripts never download. On a machine with "
                f"network access run\n    python -c \"import mlx.data.datasets as d; "
                f"d.{loader}(train=True); d.{loader}(train=False)\"\n"
                f"and copy {root} here (or point dataset.cache_dir / --cache-dir at the "
                "directory above it); or use the embedded 'digits', or any .npz file with "
                "x_train, y_train, x_test, y_test")


def _standardise(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    axes = tuple(range(x_train.ndim - 1))
    mean = x_train.mean(axis=axes, keepdims=True)
    std = x_train.std(axis=axes, keepdims=True) + 1e-6
    return ((x_train - mean) / std).astype(np.float32), ((x_test - mean) / std).astype(np.float32)


def _digits(test_fraction: float, split_seed: int) -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[..., None]  # 1797 x 8 x 8 x 1
    y = bunch.target.astype(np.int32)
    order = np.random.default_rng(split_seed).permutation(len(x))
    n_test = int(round(test_fraction * len(x)))
    test, train = order[:n_test], order[n_test:]
    return {"x_train": x[train], "y_train": y[train], "x_test": x[test], "y_test": y[test]}


def _mlx_data(name: str, cache_dir: str | os.PathLike | None) -> dict[str, np.ndarray]:
    import mlx.data.datasets as dd

    loader = getattr(dd, _LOADERS[name])
    root = _cache_dir(name, cache_dir)
    out = {}
    for split, train in (("train", True), ("test", False)):
        buffer = loader(root=root, train=train)
        batch = buffer.batch(len(buffer))[0]
        out[f"x_{split}"] = np.asarray(batch["image"], dtype=np.float32) / 255.0
        out[f"y_{split}"] = np.asarray(batch["label"]).astype(np.int32).reshape(-1)
    return out


def _npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    with np.load(path) as f:
        missing = [k for k in _ARRAYS if k not in f.files]
        if missing:
            raise ValueError(f"dataset.path: {path} lacks {missing} (it has {f.files})")
        out = {k: np.asarray(f[k]) for k in _ARRAYS}
    for split in ("train", "test"):
        x, y = out[f"x_{split}"], out[f"y_{split}"]
        if len(x) != len(y):
            raise ValueError(f"dataset.path: x_{split} has {len(x)} rows, y_{split} {len(y)}")
        if x.dtype == np.uint8:
            x = x.astype(np.float32) / 255.0
        if x.ndim == 2:  # flat features: one "pixel row" per sample, one channel
            x = x[:, None, :, None]
        elif x.ndim == 3:  # grey images without a channel axis
            x = x[..., None]
        out[f"x_{split}"] = x.astype(np.float32)
        out[f"y_{split}"] = y.astype(np.int32).reshape(-1)
    return out


def load_dataset(name: str = "digits", *, path: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None, test_fraction: float = 0.25,
                 split_seed: int = 0, limit_train: int | None = None) -> dict[str, np.ndarray]:
    """Load a dataset as standardised float32 images (N x H x W x C) and int32 labels.

    Args:
        name: one of :data:`DATASETS`.
        path: the ``.npz`` file for ``name="npz"``.
        cache_dir: the mlx.data cache root (default ``~/.cache/mlx.data``).
        test_fraction, split_seed: the fixed split of ``digits`` (which has no official one).
        limit_train: keep only the first this many training samples (quick runs).

    Example:
        >>> d = load_dataset("digits")
        >>> d["x_train"].shape, d["x_test"].shape, d["y_train"].dtype
        ((1348, 8, 8, 1), (449, 8, 8, 1), dtype('int32'))
    """
    check_available(name, path=path, cache_dir=cache_dir)
    if name == "digits":
        data = _digits(test_fraction, split_seed)
    elif name == "npz":
        data = _npz(path)
    else:
        data = _mlx_data(name, cache_dir)
    if limit_train is not None:
        data["x_train"], data["y_train"] = data["x_train"][:limit_train], \
            data["y_train"][:limit_train]
    data["x_train"], data["x_test"] = _standardise(data["x_train"], data["x_test"])
    return data
