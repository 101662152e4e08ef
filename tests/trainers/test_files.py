"""Writes inside a run directory: never through a symbolic link, atomic, errors naming the
path and the cause (trainers.files and the checkpoint save that uses it)."""

from __future__ import annotations

import errno
import json
import os

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np
import pytest
from helpers_trainer import MLP, classification_data, flat_weights, xent

from trainers import ArrayBatches, Trainer, list_checkpoints, load_checkpoint
from trainers import files as fs
from trainers.checkpoint import save_checkpoint, verify_checkpoint
from trainers.errors import StorageError, UnsafePathError

OUTSIDE = b"a file outside the run directory\n"


@pytest.fixture
def outside(tmp_path):
    """A file and a directory outside the run directory, and the run directory."""
    (tmp_path / "outside").mkdir()
    target = tmp_path / "outside" / "precious.txt"
    target.write_bytes(OUTSIDE)
    (tmp_path / "outside" / "dir").mkdir()
    run = tmp_path / "run"
    run.mkdir()
    return run, target, tmp_path / "outside" / "dir"


# ------------------------------------------------------------------ symbolic links
@pytest.mark.parametrize("write", [
    lambda p: fs.write_bytes_atomic(p, b"new"),
    lambda p: fs.write_text_atomic(p, "new"),
    lambda p: fs.write_json_atomic(p, {"a": 1}),
    lambda p: fs.open_append(p).write("new"),
    lambda p: fs.truncate(p, 0),
])
def test_a_symlink_in_the_run_directory_is_never_written_through(outside, write):
    run, target, _ = outside
    link = run / "log.csv"
    link.symlink_to(target)
    with pytest.raises(UnsafePathError, match=f"{link}: it is a symbolic link"):
        write(link)
    assert target.read_bytes() == OUTSIDE
    assert link.is_symlink() and sorted(os.listdir(run)) == ["log.csv"]  # no temp file left


@pytest.mark.parametrize("write", [
    lambda p: fs.write_bytes_atomic(p, b"new"),
    lambda p: fs.open_append(p).write("new"),
])
def test_a_dangling_symlink_creates_nothing_outside(outside, write):
    run, target, out_dir = outside
    link = run / "config.json"
    link.symlink_to(out_dir / "created.json")
    with pytest.raises(UnsafePathError, match="symbolic link"):
        write(link)
    assert os.listdir(out_dir) == []


def test_a_leftover_temporary_symlink_is_replaced_not_followed(outside):
    run, target, _ = outside
    (run / ".config.json.tmp").symlink_to(target)  # planted, or left by a crash
    fs.write_json_atomic(run / "config.json", {"b": [1, 2], "a": None})
    assert target.read_bytes() == OUTSIDE
    assert sorted(os.listdir(run)) == ["config.json"]
    assert (run / "config.json").read_bytes() == b'{\n "a": null,\n "b": [\n  1,\n  2\n ]\n}'


def test_fifo_and_directory_in_place_of_a_log_are_refused(outside):
    run, _, _ = outside
    os.mkfifo(run / "log.jsonl")  # opening it for writing would block without O_NONBLOCK
    with pytest.raises(UnsafePathError, match="not a regular file"):
        fs.open_append(run / "log.jsonl")
    (run / "log.csv").mkdir()
    with pytest.raises(UnsafePathError, match="not a regular file"):
        fs.write_text_atomic(run / "log.csv", "x")


def test_ensure_dir_refuses_links_below_the_run_directory_only(outside):
    run, _, out_dir = outside
    linked_run = run.parent / "linked_run"
    linked_run.symlink_to(run)  # the run directory itself may be a link
    fs.ensure_dir(linked_run / "checkpoints" / "deep", root=linked_run)
    assert (run / "checkpoints" / "deep").is_dir()
    (run / "plots").symlink_to(out_dir)
    with pytest.raises(UnsafePathError, match=f"{linked_run / 'plots'}: it is a symbolic link"):
        fs.ensure_dir(linked_run / "plots" / "a", root=linked_run)
    assert os.listdir(out_dir) == []
    (run / "afile").write_text("x")
    with pytest.raises(UnsafePathError, match="not a directory"):
        fs.ensure_dir(run / "afile" / "b", root=run)
    with pytest.raises(ValueError, match="not inside root"):
        fs.ensure_dir(out_dir, root=run)


def test_save_checkpoint_refuses_a_symlinked_checkpoints_directory(outside):
    run, _, out_dir = outside
    (run / "checkpoints").symlink_to(out_dir)
    model, opt = MLP(), optim.SGD(learning_rate=0.1)
    opt.init(model.trainable_parameters())
    with pytest.raises(UnsafePathError, match="checkpoints: it is a symbolic link"):
        save_checkpoint(str(run / "checkpoints"), 3, model, opt, {})
    assert os.listdir(out_dir) == []


def _trainer(run_dir):
    x, y = classification_data(32)
    mx.random.seed(0)
    return Trainer(MLP(), xent, optim.SGD(learning_rate=0.1), ArrayBatches((x, y), 16, seed=1),
                   run_dir=run_dir, max_steps=4, checkpoint_every=2, log_every=2,
                   report_every=0)


def test_trainer_never_writes_through_a_symlinked_checkpoints_directory(outside):
    run, _, out_dir = outside
    (run / "checkpoints").symlink_to(out_dir)
    with pytest.raises(UnsafePathError, match="checkpoints: it is a symbolic link"):
        _trainer(run).fit()
    assert os.listdir(out_dir) == []


@pytest.mark.parametrize("name", ["log.csv", "log.jsonl", "config.json"])
def test_trainer_never_writes_through_a_symlinked_run_file(outside, name):
    run, target, _ = outside
    (run / name).symlink_to(target)
    with pytest.raises((OSError, ValueError)) as info:  # a log.jsonl makes the run "occupied"
        _trainer(run).fit()
    message = str(info.value)
    assert f"{name}: it is a symbolic link" in message or "already holds a run" in message
    assert target.read_bytes() == OUTSIDE
    assert (run / name).is_symlink()  # the user's link is not the trainer's to remove
    try:  # replacing the run may remove the link or refuse it, never write through it
        _trainer(run).fit(overwrite=True)
    except (OSError, ValueError) as e:  # the link is not the trainer's: it is not removed
        assert f"{name}: it is a symbolic link" in str(e) or f"did not write ({name})" in str(e)
    assert target.read_bytes() == OUTSIDE


# ------------------------------------------------------------------ atomic replacement
def test_write_json_is_deterministic_and_replaces_the_whole_file(tmp_path):
    path = tmp_path / "config.json"
    fs.write_json_atomic(path, {"z": 1.5, "a": {"y": [1], "b": "é"}})
    expected = '{\n "a": {\n  "b": "\\u00e9",\n  "y": [\n   1\n  ]\n },\n "z": 1.5\n}'
    assert path.read_bytes() == expected.encode()
    fs.write_json_atomic(path, {"k": 1}, indent=None)
    assert path.read_bytes() == b'{"k": 1}'
    with pytest.raises(TypeError):
        fs.write_json_atomic(path, {"k": object()})
    assert path.read_bytes() == b'{"k": 1}'  # a failed encoding leaves the old file


def test_append_and_truncate(tmp_path):
    path = tmp_path / "log.jsonl"
    with fs.open_append(path) as f:
        f.write("héllo\r\n")  # newline="": bytes land as written
    with fs.open_append(path) as f:
        f.write("x\n")
    assert path.read_bytes() == "héllo\r\nx\n".encode()
    fs.truncate(path, 3)
    assert path.read_bytes() == "hé".encode()


# ------------------------------------------------------------------ errors naming path and cause
@pytest.mark.parametrize(("number", "cause"), [
    (errno.ENOSPC, "disk full (no space left on device)"),
    (errno.EACCES, "permission denied"),
    (errno.EPERM, "permission denied (operation not permitted)"),
    (errno.EROFS, "read-only file system"),
    (errno.EDQUOT, "disk quota exceeded"),
    (errno.EIO, "input/output error (a failing disk or a lost network mount)"),
    (errno.ENOENT, "no such file or directory"),
])
def test_os_errors_name_the_path_and_the_cause(number, cause):
    error = OSError(number, os.strerror(number))
    assert fs.describe_os_error(error, "/r/log.csv") == f"cannot write /r/log.csv: {cause}"
    assert fs.describe_os_error(error, "/r", "create") == f"cannot create /r: {cause}"
    converted = fs.storage_error(error, "/r/log.csv")
    assert isinstance(converted, OSError) and converted.errno == number
    assert converted.filename == "/r/log.csv"
    assert str(converted) == f"cannot write /r/log.csv: {cause}"
    assert fs.storage_error(converted, "/elsewhere") is converted  # the innermost path wins


class FailingOs:
    """Make the ``k``-th call of ``os.<name>`` fail with ``OSError(number)``; with a ``match``
    string, only calls whose first argument (a path) contains it are counted."""

    def __init__(self, monkeypatch, name, k, number, match=None):
        self.calls, self.k, self.number = 0, k, number
        real = getattr(os, name)

        def failing(*args, **kwargs):
            if match is None or match in str(args[0]):
                self.calls += 1
                if self.calls == self.k:
                    raise OSError(self.number, os.strerror(self.number))
            return real(*args, **kwargs)

        monkeypatch.setattr(os, name, failing)


def test_a_failed_atomic_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    path.write_bytes(b"old")
    for name, number, words in (("write", errno.ENOSPC, "disk full"),
                                ("fsync", errno.EIO, "input/output error"),
                                ("replace", errno.EACCES, "permission denied")):
        with monkeypatch.context() as m:
            FailingOs(m, name, 1, number)
            with pytest.raises(StorageError, match=f"cannot write {path}: {words}"):
                fs.write_bytes_atomic(path, b"new")
        assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["summary.json"]


def _model_and_optimizer(seed):
    mx.random.seed(seed)
    model = MLP()
    opt = optim.Adam(learning_rate=0.01)
    opt.init(model.trainable_parameters())
    return model, opt


def _count_calls(monkeypatch, root, name, match):
    counter = FailingOs(monkeypatch, name, 0, 0, match and match.replace("08", "99"))
    model, opt = _model_and_optimizer(9)
    save_checkpoint(str(root), 99, model, opt, {})
    monkeypatch.undo()
    fs.remove_tree(root / "step_00000099")
    return counter.calls


@pytest.mark.parametrize(("name", "number", "words", "match"), [
    ("write", errno.ENOSPC, "disk full", None),
    ("fsync", errno.ENOSPC, "disk full", None),
    ("open", errno.EACCES, "permission denied", None),
    ("mkdir", errno.EDQUOT, "disk quota exceeded", "step_00000008"),
    ("replace", errno.EROFS, "read-only file system", None),
])
def test_a_failed_checkpoint_save_names_the_path_and_keeps_older_ones(
        tmp_path, monkeypatch, name, number, words, match):
    root = tmp_path / "checkpoints"
    model, opt = _model_and_optimizer(1)
    older = save_checkpoint(str(root), 4, model, opt, {"n": 4})
    saved = flat_weights(model)
    calls = _count_calls(monkeypatch, root, name, match)
    assert calls >= 1
    for k in range(1, calls + 1):  # fail each call the save makes, one at a time
        newer, newer_opt = _model_and_optimizer(2)
        with monkeypatch.context() as m:
            FailingOs(m, name, k, number, match)
            with pytest.raises(StorageError, match=f"step_00000008.*: {words}") as info:
                save_checkpoint(str(root), 8, newer, newer_opt, {"n": 8})
        assert info.value.errno == number
        left = sorted(os.listdir(root))
        assert not [n for n in left if "tmp" in n], (k, left)  # no temporary directory left
        if left != ["step_00000004"]:  # only when syncing the renamed directory failed
            assert name in ("open", "fsync") and k == calls, (k, left)
            assert left == ["step_00000004", "step_00000008"]
            verify_checkpoint(root / "step_00000008")
            fs.remove_tree(root / "step_00000008")
        verify_checkpoint(older)
        fresh, fresh_opt = _model_and_optimizer(3)
        assert load_checkpoint(older, fresh, fresh_opt)["n"] == 4
        for key, value in saved.items():
            np.testing.assert_array_equal(flat_weights(fresh)[key], value)


def test_mlx_write_errors_name_the_file_and_the_likely_cause(tmp_path, monkeypatch):
    root = tmp_path / "checkpoints"
    model, opt = _model_and_optimizer(1)
    older = save_checkpoint(str(root), 4, model, opt, {})

    def full(file, arrays, metadata=None):  # what MLX raises when the disk fills up
        raise RuntimeError("[save_safetensors] Unable to write 8 bytes.")

    monkeypatch.setattr(mx, "save_safetensors", full)
    with pytest.raises(StorageError, match=r"step_00000008\.tmp/model\.safetensors: .*"
                       r"Unable to write 8 bytes.*disk full") as info:
        save_checkpoint(str(root), 8, model, opt, {})
    assert isinstance(info.value, OSError)
    assert sorted(os.listdir(root)) == ["step_00000004"]
    monkeypatch.undo()
    verify_checkpoint(older)


def test_trainer_disk_full_at_a_checkpoint_then_resume_is_exact(tmp_path, monkeypatch):
    reference = tmp_path / "reference"
    _trainer(reference).fit()
    run = tmp_path / "run"
    real = mx.save_safetensors

    def full_at_step_4(file, arrays, *args):
        if "step_00000004" in str(getattr(file, "path", file)):
            raise RuntimeError("[save_safetensors] Unable to write 8 bytes.")
        return real(file, arrays, *args)

    monkeypatch.setattr(mx, "save_safetensors", full_at_step_4)
    with pytest.raises(OSError, match=r"step_00000004.*disk full"):
        _trainer(run).fit()
    assert [s for s, _ in list_checkpoints(run / "checkpoints")] == [2]
    monkeypatch.undo()
    _trainer(run).fit(resume=True)
    for name in ("log.jsonl", "log.csv", "config.json"):
        assert (run / name).read_bytes() == (reference / name).read_bytes(), name
    meta = json.loads((run / "checkpoints/step_00000004/meta.json").read_text())
    assert meta["step"] == 4
