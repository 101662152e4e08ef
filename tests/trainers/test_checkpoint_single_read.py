"""A checkpoint is read once at load: its digests are computed from the bytes MLX read.

The digests are compared here with ones computed independently from the files' bytes, and an
alteration anywhere in a file (header or data) is caught with the file named, whichever path
the loader took (arrays that parse, or a header that does not).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct

import blake3
import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest

from trainers import CheckpointError, load_checkpoint
from trainers.checkpoint import find_resumable, save_checkpoint


class Mixed(nn.Module):
    """Parameters of several dtypes and shapes, a 0-d one and an empty one included."""

    def __init__(self):
        super().__init__()
        self.w = mx.arange(12, dtype=mx.float32).reshape(3, 4) / 7
        self.h = mx.array([1.5, -2.25, 3.0], dtype=mx.bfloat16)
        self.f = mx.array([0.5, 0.25], dtype=mx.float16)
        self.s = mx.array(3.0)
        self.e = mx.zeros((0, 5))
        self.i = mx.array([7, -9], dtype=mx.int32)


def _save(tmp_path, model=None):
    model = model or Mixed()
    opt = optim.SGD(learning_rate=0.1)
    opt.init(model.trainable_parameters())
    return save_checkpoint(str(tmp_path / "c"), 5, model, opt, {}), model, opt


def test_load_verifies_against_digests_of_the_file_bytes(tmp_path):
    path, model, opt = _save(tmp_path)
    manifest = json.loads(open(os.path.join(path, "manifest.json"), "rb").read())
    for name, entry in manifest["files"].items():
        data = open(os.path.join(path, name), "rb").read()
        assert entry["bytes"] == len(data)
        expected = blake3.blake3(data).hexdigest() if "blake3" in entry else \
            hashlib.sha256(data).hexdigest()
        assert entry.get("blake3", entry.get("sha256")) == expected
    fresh = Mixed()
    for name in ("w", "h", "f", "s", "i"):
        setattr(fresh, name, mx.zeros_like(getattr(fresh, name)))
    load_checkpoint(path, fresh, opt)
    for name in ("w", "h", "f", "s", "e", "i"):
        a, b = getattr(fresh, name), getattr(model, name)
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(np.array(a.astype(mx.float32)), np.array(b.astype(mx.float32)))


@pytest.mark.parametrize("where", ["header", "data"])
def test_one_flipped_byte_anywhere_is_reported_naming_the_file(tmp_path, where):
    path, model, opt = _save(tmp_path)
    target = os.path.join(path, "model.safetensors")
    data = bytearray(open(target, "rb").read())
    length = struct.unpack("<Q", bytes(data[:8]))[0]
    # in the header: a byte of the JSON (it no longer parses or no longer matches);
    # in the data: the last byte of the arrays (the file still parses)
    index = 8 + length // 2 if where == "header" else len(data) - 1
    data[index] ^= 0x20
    open(target, "wb").write(bytes(data))
    fresh = Mixed()
    before = np.array(fresh.w)
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*(BLAKE3|SHA-256) differs"):
        load_checkpoint(path, fresh, opt)
    assert np.array_equal(np.array(fresh.w), before)  # nothing was changed
    found, bad = find_resumable(str(tmp_path / "c"))
    assert found is None and "model.safetensors" in bad[0][1]


def test_a_header_that_does_not_tile_the_file_is_refused_even_with_a_matching_digest(tmp_path):
    """A file written by someone else with a hole between arrays, its manifest updated to
    match: the digest agrees, but the arrays MLX read would not be the whole file."""
    path, model, opt = _save(tmp_path, nn.Linear(2, 1))
    target = os.path.join(path, "model.safetensors")
    data = open(target, "rb").read()
    length = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + length])
    body = data[8 + length:]
    first = min((k for k in header if k != "__metadata__"),
                key=lambda k: header[k]["data_offsets"][0])
    for k, v in header.items():  # shift every array after the first by 4 bytes: a hole
        if k not in ("__metadata__", first):
            v["data_offsets"] = [o + 4 for o in v["data_offsets"]]
    end = header[first]["data_offsets"][1]
    body = body[:end] + b"\0\0\0\0" + body[end:]
    text = json.dumps(header).encode()
    text += b" " * (-(8 + len(text)) % 8)
    new = struct.pack("<Q", len(text)) + text + body
    open(target, "wb").write(new)
    manifest_path = os.path.join(path, "manifest.json")
    manifest = json.loads(open(manifest_path, "rb").read())
    entry = manifest["files"]["model.safetensors"]
    entry["bytes"] = len(new)
    algorithm = "blake3" if "blake3" in entry else "sha256"
    entry[algorithm] = (blake3.blake3(new) if algorithm == "blake3"
                        else hashlib.sha256(new)).hexdigest()
    open(manifest_path, "w").write(json.dumps(manifest))
    with pytest.raises(CheckpointError,
                       match=r"model\.safetensors: its header's offsets leave a gap"):
        load_checkpoint(path, nn.Linear(2, 1), opt)


def _count_loads(monkeypatch):
    calls = []
    real = mx.load

    def counting(path, *args, **kwargs):
        calls.append(os.path.basename(str(path)))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(mx, "load", counting)
    return calls


def test_what_find_resumable_kept_is_loaded_without_reading_again(tmp_path, monkeypatch):
    path, model, opt = _save(tmp_path)
    calls = _count_loads(monkeypatch)
    found, bad = find_resumable(str(tmp_path / "c"), keep_loaded=True)
    assert found == path and bad == []
    assert sorted(calls) == ["model.safetensors", "optimizer.safetensors"]
    calls.clear()
    fresh = Mixed()
    fresh.w = mx.zeros_like(fresh.w)
    load_checkpoint(path, fresh, opt)
    assert calls == []  # nothing read twice
    assert np.array_equal(np.array(fresh.w), np.arange(12, dtype=np.float32).reshape(3, 4) / 7)
    load_checkpoint(path, fresh, opt)  # taken once: the next load reads again
    assert sorted(calls) == ["model.safetensors", "optimizer.safetensors"]


def test_a_file_changed_after_find_resumable_is_read_and_checked_again(tmp_path):
    path, model, opt = _save(tmp_path)
    assert find_resumable(str(tmp_path / "c"), keep_loaded=True)[0] == path
    target = os.path.join(path, "model.safetensors")
    data = bytearray(open(target, "rb").read())
    data[-1] ^= 0x01
    os.utime(target, ns=(0, 0))  # even with another modification time than before...
    open(target, "r+b").write(bytes(data))  # ...the write sets a new one
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*differs"):
        load_checkpoint(path, Mixed(), opt)


def test_a_trainer_resume_reads_each_array_file_once(tmp_path, monkeypatch):
    from helpers_trainer import MLP, classification_data, xent

    from trainers import ArrayBatches, Trainer

    def make(steps):
        mx.random.seed(0)
        x, y = classification_data(32)
        return Trainer(MLP(), xent, optim.SGD(learning_rate=0.1),
                       ArrayBatches((x, y), 8, seed=1), run_dir=str(tmp_path / "run"),
                       max_steps=steps, checkpoint_every=2, report_every=0)

    make(4).fit()
    calls = _count_loads(monkeypatch)
    make(6).fit(resume=True, allow_changes=("max_steps",))
    assert sorted(calls) == ["model.safetensors", "optimizer.safetensors"]


def test_read_checkpoint_arrays_returns_every_file_verified_and_refuses_nan(tmp_path):
    from trainers.checkpoint import read_checkpoint_arrays

    path, model, opt = _save(tmp_path)
    arrays = read_checkpoint_arrays(path)
    assert sorted(arrays) == ["model.safetensors", "optimizer.safetensors"]
    assert np.array_equal(np.array(arrays["model.safetensors"]["w"]),
                          np.arange(12, dtype=np.float32).reshape(3, 4) / 7)
    bad = Mixed()
    bad.w = mx.array([[1.0, float("nan")]])
    nan_path, _, _ = _save(tmp_path / "nan", bad)  # saved as is: the digest matches
    with pytest.raises(CheckpointError, match=r"non-finite weights .* model\.safetensors: \['w'\]"):
        read_checkpoint_arrays(nan_path)


def test_restore_best_refuses_best_weights_that_are_not_finite(tmp_path):
    """best/ written with NaN weights (by another program, its manifest matching): the
    trainer's restore_best raises naming them instead of loading them into the model."""
    import types

    from helpers_trainer import MLP, classification_data, xent

    from trainers import ArrayBatches, Trainer

    mx.random.seed(0)
    x, y = classification_data(32)
    model = MLP()
    trainer = Trainer(model, xent, optim.SGD(learning_rate=0.1), ArrayBatches((x, y), 8, seed=1),
                      run_dir=str(tmp_path / "run"), max_steps=4, eval_data=[(x, y)],
                      eval_every=2, keep_best=("eval_loss", "min"), restore_best=True,
                      report_every=0)
    trainer.fit()
    best = [n for n in os.listdir(tmp_path / "run" / "best") if n.startswith("step_")][0]
    poisoned = MLP()
    poisoned.l1.weight = mx.full(poisoned.l1.weight.shape, float("inf"))
    opt = optim.SGD(learning_rate=0.1)
    opt.init(poisoned.trainable_parameters())
    step = int(best[len("step_"):])
    target = tmp_path / "run" / "best"
    shutil.rmtree(target / best)
    save_checkpoint(str(target), step, poisoned, opt, {})
    before = np.array(model.l1.weight)
    run = types.SimpleNamespace(best={"step": step},
                                directory=types.SimpleNamespace(path=str(tmp_path / "run")))
    with pytest.raises(CheckpointError, match=r"non-finite weights .*l1\.weight"):
        trainer._restore_best(run)
    assert np.array_equal(np.array(model.l1.weight), before)
