"""Checkpoint digests: SHA-256 manifests (the older checkpoints) and BLAKE3 ones both verify,
a hash this installation lacks is reported without setting the checkpoint aside, large writes
are hashed right, and the finite check of loaded weights covers every float dtype."""

from __future__ import annotations

import hashlib
import json
import os

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest

from trainers import digests
from trainers.checkpoint import (
    find_resumable,
    finite_flags,
    load_checkpoint,
    save_checkpoint,
    verify_checkpoint,
)
from trainers.digests import DigestUnavailable
from trainers.errors import CheckpointError
from trainers.files import NewFile


def _state():
    mx.random.seed(0)
    model = nn.Linear(3, 2)
    opt = optim.Adam(learning_rate=0.1)
    opt.init(model.trainable_parameters())
    return model, opt


def _save(root, monkeypatch, algorithm):
    monkeypatch.setattr(digests, "default_algorithm", lambda: algorithm)
    model, opt = _state()
    return save_checkpoint(str(root), 1, model, opt, {})


def test_a_sha256_manifest_verifies_and_loads(tmp_path, monkeypatch):
    path = _save(tmp_path, monkeypatch, "sha256")
    manifest = json.loads(open(os.path.join(path, "manifest.json")).read())
    assert manifest["format_version"] == 2
    for name, entry in manifest["files"].items():
        data = open(os.path.join(path, name), "rb").read()
        assert entry == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    model, opt = _state()
    assert load_checkpoint(path, model, opt)["step"] == 1
    with open(os.path.join(path, "meta.json"), "r+b") as f:
        f.write(b"[")  # one byte altered in place
    with pytest.raises(CheckpointError, match=r"meta\.json: its SHA-256 differs"):
        verify_checkpoint(path)


def test_a_blake3_manifest_verifies_and_catches_one_flipped_bit(tmp_path, monkeypatch):
    blake3 = pytest.importorskip("blake3")
    path = _save(tmp_path, monkeypatch, "blake3")
    manifest = json.loads(open(os.path.join(path, "manifest.json")).read())
    for name, entry in manifest["files"].items():
        data = open(os.path.join(path, name), "rb").read()
        assert entry == {"bytes": len(data), "blake3": blake3.blake3(data).hexdigest()}
    verify_checkpoint(path)
    target = os.path.join(path, "model.safetensors")
    data = bytearray(open(target, "rb").read())
    data[-1] ^= 0x01
    open(target, "wb").write(bytes(data))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: its BLAKE3 differs"):
        verify_checkpoint(path)


def test_a_hash_this_installation_lacks_is_reported_and_nothing_is_set_aside(tmp_path,
                                                                             monkeypatch):
    root = tmp_path / "checkpoints"
    path = _save(root, monkeypatch, "sha256")
    manifest_path = os.path.join(path, "manifest.json")
    manifest = json.loads(open(manifest_path).read())
    for entry in manifest["files"].values():  # as a machine with blake3 would have written it
        entry["blake3"] = entry.pop("sha256")
    open(manifest_path, "w").write(json.dumps(manifest))
    monkeypatch.setattr(digests, "_blake3", lambda: None)
    with pytest.raises(DigestUnavailable, match="pip install blake3"):
        verify_checkpoint(path)
    with pytest.raises(DigestUnavailable):
        find_resumable(str(root), quarantine_bad=True)
    assert sorted(os.listdir(root)) == ["step_00000001"]  # not renamed .corrupt


@pytest.mark.parametrize("entry", [{"bytes": 3}, {"bytes": 3, "sha256": "0" * 64,
                                                  "blake3": "0" * 64},
                                   {"bytes": 3, "md5": "0" * 32}])
def test_a_manifest_entry_needs_exactly_one_known_digest(tmp_path, monkeypatch, entry):
    path = _save(tmp_path, monkeypatch, "sha256")
    manifest_path = os.path.join(path, "manifest.json")
    manifest = json.loads(open(manifest_path).read())
    manifest["files"]["meta.json"] = entry
    open(manifest_path, "w").write(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="no valid entry for 'meta.json'"):
        verify_checkpoint(path)


def test_a_large_write_is_hashed_while_written(tmp_path):
    # above the size hashed in a second thread; bytes that differ along the whole buffer
    data = np.random.default_rng(0).integers(0, 256, 3 * digests._PARALLEL_BYTES // 2,
                                             dtype=np.uint8).tobytes()
    with NewFile(tmp_path / "big.bin", algorithm="sha256") as f:
        f.write(b"head")
        f.write(data)
    assert (f.size, f.digest) == (len(data) + 4, hashlib.sha256(b"head" + data).hexdigest())
    assert (tmp_path / "big.bin").read_bytes() == b"head" + data


def test_file_digests_in_parallel_match_hashlib(tmp_path):
    paths, fds = [], []
    for i, size in enumerate((0, 5, digests._CHUNK + 7)):  # empty, small, past one chunk
        path = tmp_path / f"f{i}"
        path.write_bytes(bytes(range(256)) * (size // 256) + bytes(size % 256))
        paths.append(path)
        fds.append(os.open(path, os.O_RDONLY))
    try:
        found = digests.file_digests([(fd, p.stat().st_size, "sha256")
                                      for fd, p in zip(fds, paths)])
    finally:
        for fd in fds:
            os.close(fd)
    assert found == [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


@pytest.mark.parametrize("dtype", [mx.float32, mx.float16, mx.bfloat16])
def test_the_finite_check_finds_nan_and_inf_in_every_float_dtype(dtype):
    arrays = [mx.array([1.0, 2.0], dtype=dtype), mx.array([1.0, float("nan")], dtype=dtype),
              mx.array([[float("-inf")], [0.0]], dtype=dtype), mx.zeros((0,), dtype=dtype)]
    assert finite_flags(arrays) == [True, False, False, True]


@pytest.mark.parametrize("dtype,big", [(mx.float32, 3e38), (mx.float16, 60000.0),
                                       (mx.bfloat16, 3e38)])
def test_finite_values_whose_sum_overflows_are_still_finite(dtype, big):
    """The fast path sums the array; a sum that overflows must not be taken for an inf."""
    inf = float("inf")
    arrays = [mx.array(v, dtype=dtype) for v in
              ([big, big, big], [big, -big, inf], [-big, -big], [inf, -inf])]
    assert finite_flags(arrays) == [True, False, True, False]
