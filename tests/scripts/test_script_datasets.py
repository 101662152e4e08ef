"""MNIST, Fashion-MNIST and CIFAR-10 from their original archives, checked, never unpickled.

No network here: each test builds tiny archives in the official formats (IDX ``.gz`` files, the
CIFAR-10 binary ``.tar.gz`` of 3073-byte records) and swaps in their MD5s for the published
ones, so the checksum check itself runs; the published digests are checked against the
dataset hosts' values written out below.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile

import numpy as np
import pytest
from helpers_scripts import load_script

from trainers.experiments import datasets
from trainers.experiments.datasets import DataError, DatasetUnavailable, download, load_dataset

IDX_NAMES = {"train": "train", "test": "t10k"}


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes, written from the format's description."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", n)
                                                         for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def standardised(x_train: np.ndarray, x_test: np.ndarray):
    """Per-channel standardisation with the training set's statistics, in float64."""
    axes = tuple(range(x_train.ndim - 1))
    mean = x_train.mean(axis=axes, keepdims=True)
    std = x_train.std(axis=axes, keepdims=True) + 1e-6
    return (x_train - mean) / std, (x_test - mean) / std


@pytest.fixture
def tiny_mnist(tmp_path, monkeypatch):
    """A cache root holding tiny MNIST archives (5 train, 3 test images of 6x7 pixels),
    with their MD5s as the expected ones. Returns (cache root, the arrays written)."""
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (5, 6, 7)), "y_train": np.array([0, 3, 9, 1, 3]),
              "x_test": rng.integers(0, 256, (3, 6, 7)), "y_test": np.array([2, 0, 9])}
    folder = tmp_path / "cache" / "mnist"
    folder.mkdir(parents=True)
    digests = {}
    for split, prefix in IDX_NAMES.items():
        for kind, array in (("images-idx3", arrays[f"x_{split}"]),
                            ("labels-idx1", arrays[f"y_{split}"])):
            name = f"{prefix}-{kind}-ubyte.gz"
            blob = gzip.compress(idx_bytes(array), mtime=0)
            (folder / name).write_bytes(blob)
            digests[name] = md5(blob)
    monkeypatch.setitem(datasets.ARCHIVES, "mnist", digests)
    return tmp_path / "cache", arrays


def cifar_archive(images: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> bytes:
    """A CIFAR-10 binary-version archive: per record one label byte, then the 1024 red, 1024
    green and 1024 blue bytes (row-major 32x32 planes); five training files and a test file."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        files = {f"data_batch_{i + 1}.bin": ("train", [i]) for i in range(5)}
        files["test_batch.bin"] = ("test", [0, 1])
        for name, (split, rows) in files.items():
            records = b"".join(bytes([labels[split][r]])
                               + images[split][r].transpose(2, 0, 1).astype(np.uint8).tobytes()
                               for r in rows)
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(records)
            tar.addfile(info, io.BytesIO(records))
    return buffer.getvalue()


def test_published_checksums_are_the_hosts():
    # MNIST (as its mirrors distribute it), Fashion-MNIST's README, the CIFAR-10 page.
    assert datasets.ARCHIVES["mnist"]["train-images-idx3-ubyte.gz"] == \
        "f68b3c2dcbeaaa9fbdd348bbdeb94873"
    assert datasets.ARCHIVES["mnist"]["t10k-labels-idx1-ubyte.gz"] == \
        "ec29112dd5afa0611ce80d1b7f02629c"
    assert datasets.ARCHIVES["fashion_mnist"]["train-labels-idx1-ubyte.gz"] == \
        "25c81989df183df01b3e8a0aad5dffbe"
    assert datasets.ARCHIVES["fashion_mnist"]["t10k-images-idx3-ubyte.gz"] == \
        "bef4ecab320f06d8554ea6380940ec79"
    assert datasets.ARCHIVES["cifar10"] == {
        "cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530"}
    assert all(len(d) == 4 for d in (datasets.ARCHIVES["mnist"],
                                     datasets.ARCHIVES["fashion_mnist"]))


def test_mnist_reads_the_idx_archives(tiny_mnist):
    cache, arrays = tiny_mnist
    data = load_dataset("mnist", cache_dir=cache)
    expected = standardised(arrays["x_train"][..., None] / 255.0,
                            arrays["x_test"][..., None] / 255.0)
    np.testing.assert_allclose(data["x_train"], expected[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(data["x_test"], expected[1], rtol=1e-5, atol=1e-5)
    assert data["x_train"].shape == (5, 6, 7, 1) and data["x_train"].dtype == np.float32
    assert data["y_train"].tolist() == [0, 3, 9, 1, 3] and data["y_test"].tolist() == [2, 0, 9]


class Exploit:
    """Unpickling this creates ``marker``: what a crafted cache file could do."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_in_the_cache_is_never_opened(tiny_mnist, tmp_path, monkeypatch):
    """Issue 7, finding 5: loading through mlx.data unpickled ``train.pkl`` from the cache
    directory, so a crafted one ran code."""
    cache, _ = tiny_mnist
    marker = tmp_path / "exploited"
    for name in ("train.pkl", "test.pkl"):
        (cache / "mnist" / name).write_bytes(pickle.dumps([Exploit(str(marker))]))

    def refuse(*args, **kwargs):
        raise AssertionError("a pickle was loaded")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    opened = []
    real_open = open

    def tracking_open(file, *args, **kwargs):
        opened.append(os.fspath(file) if isinstance(file, (str, os.PathLike)) else file)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", tracking_open)
    data = load_dataset("mnist", cache_dir=cache)
    assert len(data["y_train"]) == 5 and not marker.exists()
    assert not [f for f in opened if isinstance(f, str) and f.endswith(".pkl")]


def test_a_tampered_archive_is_rejected_naming_it(tiny_mnist):
    cache, _ = tiny_mnist
    path = cache / "mnist" / "train-labels-idx1-ubyte.gz"
    labels = np.array([0, 3, 9, 1, 7])  # one label changed, still a valid IDX file
    path.write_bytes(gzip.compress(idx_bytes(labels), mtime=0))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz is not the published "
                                        r"mnist archive \(MD5 [0-9a-f]{32}, expected"):
        load_dataset("mnist", cache_dir=cache)


def test_train_script_exits_2_on_a_tampered_archive(tiny_mnist, tmp_path, capsys):
    cache, _ = tiny_mnist
    (cache / "mnist" / "t10k-images-idx3-ubyte.gz").write_bytes(b"not the archive")
    train = load_script("train")
    run = tmp_path / "run"
    assert train.main(["--dataset", "mnist", "--cache-dir", str(cache), "--run-dir", str(run),
                       "--batch-size", "2"]) == 2
    err = capsys.readouterr().err
    assert "data error: " in err and "t10k-images-idx3-ubyte.gz is not the published" in err
    assert not run.exists()


def test_cifar10_reads_the_binary_records(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    images = {"train": rng.integers(0, 256, (5, 32, 32, 3)),
              "test": rng.integers(0, 256, (2, 32, 32, 3))}
    labels = {"train": np.array([6, 9, 9, 4, 1]), "test": np.array([3, 8])}
    blob = cifar_archive(images, labels)
    folder = tmp_path / "cifar10"
    folder.mkdir()
    (folder / "cifar-10-binary.tar.gz").write_bytes(blob)
    monkeypatch.setitem(datasets.ARCHIVES, "cifar10", {"cifar-10-binary.tar.gz": md5(blob)})
    data = load_dataset("cifar10", cache_dir=tmp_path)
    expected = standardised(images["train"] / 255.0, images["test"] / 255.0)
    assert data["x_train"].shape == (5, 32, 32, 3)
    np.testing.assert_allclose(data["x_train"], expected[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(data["x_test"], expected[1], rtol=1e-5, atol=1e-5)
    assert data["y_train"].tolist() == [6, 9, 9, 4, 1] and data["y_test"].tolist() == [3, 8]

    # Same size, one pixel changed: the checksum notices.
    tampered = bytearray(blob)
    tampered[-100] ^= 1
    (folder / "cifar-10-binary.tar.gz").write_bytes(bytes(tampered))
    with pytest.raises(DataError, match="is not the published cifar10 archive"):
        load_dataset("cifar10", cache_dir=tmp_path)


class FakeResponse(io.BytesIO):
    """What ``urllib.request.urlopen`` returns, for a payload."""


def fake_urlopen(payloads: dict[str, bytes], calls: list[str]):
    def urlopen(url, timeout=None):
        calls.append(url)
        if url not in payloads:
            raise OSError(f"unreachable: {url}")
        return FakeResponse(payloads[url])
    return urlopen


def test_download_verifies_and_places_each_archive(tmp_path, monkeypatch):
    blob = b"the cifar archive"
    monkeypatch.setitem(datasets.ARCHIVES, "cifar10", {"cifar-10-binary.tar.gz": md5(blob)})
    monkeypatch.setitem(datasets.URLS, "cifar10", ("https://a/", "https://b/"))
    calls: list[str] = []
    urlopen = fake_urlopen({"https://b/cifar-10-binary.tar.gz": blob}, calls)
    root = download("cifar10", tmp_path, urlopen=urlopen, report=lambda line: None)
    assert root == tmp_path / "cifar10"
    assert (root / "cifar-10-binary.tar.gz").read_bytes() == blob
    assert calls == ["https://a/cifar-10-binary.tar.gz", "https://b/cifar-10-binary.tar.gz"]
    assert os.listdir(root) == ["cifar-10-binary.tar.gz"]  # no temporary file left
    # Present and intact: not fetched again.
    download("cifar10", tmp_path, urlopen=urlopen, report=lambda line: None)
    assert len(calls) == 2


def test_download_rejects_a_payload_with_the_wrong_checksum(tmp_path, monkeypatch):
    monkeypatch.setitem(datasets.ARCHIVES, "cifar10", {"cifar-10-binary.tar.gz": md5(b"good")})
    monkeypatch.setitem(datasets.URLS, "cifar10", ("https://a/",))
    urlopen = fake_urlopen({"https://a/cifar-10-binary.tar.gz": b"evil"}, [])
    with pytest.raises(DatasetUnavailable, match=f"MD5 {md5(b'evil')}, expected {md5(b'good')}"):
        download("cifar10", tmp_path, urlopen=urlopen, report=lambda line: None)
    assert os.listdir(tmp_path / "cifar10") == []  # nothing placed, nothing left behind


def test_download_script_reports_failure(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(datasets.URLS, "mnist", ("https://a/",))
    script = load_script("download_data")
    monkeypatch.setattr(script, "download", lambda name, cache_dir: download(
        name, cache_dir, urlopen=fake_urlopen({}, [])))
    assert script.main(["mnist", "--cache-dir", str(tmp_path)]) == 1
    assert "could not download train-images-idx3-ubyte.gz" in capsys.readouterr().err
