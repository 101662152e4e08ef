"""The run directory: one owner, clean overwrite, idempotent resume, resume compatibility,
and every argument checked before anything is written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np
import pytest
from helpers_trainer import MLP, classification_data, flat_weights, read_jsonl, run_files, xent

from trainers import ArrayBatches, CheckpointError, Trainer, list_checkpoints
from trainers.run_dir import RunDirectory, RunDirectoryBusy, record_owned

HOLD = os.path.join(os.path.dirname(__file__), "_trainer_hold_script.py")


def make(run_dir, *, steps=8, every=4, optimizer=None, seed=0, hidden=8, keep=3, **kw):
    mx.random.seed(seed)
    x, y = classification_data(64)
    opt = optimizer or optim.SGD(learning_rate=optim.cosine_decay(0.1, steps), momentum=0.9)
    model = MLP(hidden=hidden)
    trainer = Trainer(model, xent, opt, ArrayBatches((x, y), 16, seed=1), run_dir=run_dir,
                      max_steps=steps, eval_data=[(x, y)], eval_every=every,
                      checkpoint_every=every, keep_checkpoints=keep, log_every=3,
                      report_every=0, compile=False, **kw)
    return trainer, model


def tree(run_dir) -> dict[str, bytes]:
    """Every file under the run directory (the lock's bytes included), by relative path."""
    return run_files(run_dir)


# ---------------------------------------------------------------- finding 1: overwrite
def test_overwrite_replaces_the_whole_old_run(tmp_path):
    old, _ = make(tmp_path, steps=12, every=4, keep=5)
    old.fit()
    record_owned(tmp_path, "summary.json")  # a script's file of the old run, recorded
    (tmp_path / "summary.json").write_text("{}")
    assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == [4, 8, 12]

    new, model = make(tmp_path, steps=6, every=2, seed=1)
    new.fit(overwrite=True)
    assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == [2, 4, 6]
    assert not (tmp_path / "summary.json").exists()
    assert [r["step"] for r in read_jsonl(tmp_path / "log.jsonl") if r["kind"] == "train"] \
        == list(range(6))
    # a later resume continues the new run (finished: nothing changes), not the old one
    before = tree(tmp_path)
    again, again_model = make(tmp_path, steps=6, every=2, seed=1)
    again.fit(resume=True)
    assert tree(tmp_path) == before
    for key, value in flat_weights(model).items():
        np.testing.assert_array_equal(flat_weights(again_model)[key], value)


def test_an_interrupted_overwrite_is_finished_by_the_next_run(tmp_path):
    old, _ = make(tmp_path)
    old.fit()
    names = sorted(n for n in os.listdir(tmp_path) if n != ".lock")  # as the trainer lists
    # a crash right after the names to remove were recorded and one was removed
    (tmp_path / ".replacing.json").write_text(json.dumps({"remove": names}))
    os.remove(tmp_path / "log.csv")
    new, _ = make(tmp_path, steps=4, every=2)
    new.fit(resume=True)  # no usable run left: starts cleanly, never mixing in old files
    assert not (tmp_path / ".replacing.json").exists()
    assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == [2, 4]
    rows = read_jsonl(tmp_path / "log.jsonl")
    assert [r["step"] for r in rows if r["kind"] == "train"] == [0, 1, 2, 3]


def test_overwrite_never_follows_a_symlink_out_of_the_run_directory(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("precious")
    run_dir = tmp_path / "run"
    first, _ = make(run_dir)
    first.fit()
    os.symlink(outside, run_dir / "link")
    second, _ = make(run_dir)
    second.fit(overwrite="all")  # the link is not the trainer's: only "all" removes it
    assert (outside / "keep.txt").read_text() == "precious"
    assert not os.path.lexists(run_dir / "link")


# ---------------------------------------------------------------- finding 3: idempotent
def test_resuming_a_finished_run_changes_no_byte(tmp_path):
    trainer, model = make(tmp_path, steps=8, every=4)
    trainer.fit()
    before = tree(tmp_path)
    events = []
    again, again_model = make(tmp_path, steps=8, every=4, callbacks=[events.append])
    result = again.fit(resume=True)
    assert tree(tmp_path) == before
    assert [e["event"] for e in events] == ["start", "end"]
    rows = read_jsonl(tmp_path / "log.jsonl")
    assert [r["step"] for r in rows if r["kind"] == "eval"] == [4, 8]  # no duplicate eval
    assert result["step"] == 8 and result["eval_loss"] == rows[-1]["eval_loss"]
    for key, value in flat_weights(model).items():
        np.testing.assert_array_equal(flat_weights(again_model)[key], value)


# ---------------------------------------------------------------- finding 4: one owner
def _hold(run_dir, steps, pause, *extra):
    return subprocess.Popen([sys.executable, HOLD, str(run_dir), str(steps), str(pause), *extra],
                            stderr=subprocess.PIPE, text=True)


def _wait_for(path, proc, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"first run never started: {proc.communicate()[1]}")
        time.sleep(0.05)


@pytest.mark.slow
def test_a_second_process_fails_clearly_and_the_first_finishes_intact(tmp_path):
    run_dir = tmp_path / "run"
    first = _hold(run_dir, 20, 0.0, "--hold")  # trains only once released below
    try:
        _wait_for(f"{run_dir}.started", first)
        for extra in ((), ("--resume",)):  # fresh or resuming, the second process is refused
            second = subprocess.run([sys.executable, HOLD, str(run_dir), "20", "0", *extra],
                                    capture_output=True, text=True, timeout=120)
            assert second.returncode == 3, second.stderr
            assert str(run_dir) in second.stderr
            assert f"in use by process {first.pid}" in second.stderr
        open(f"{run_dir}.release", "w").close()
        assert first.wait(timeout=120) == 0
    finally:
        first.kill()
    rows = read_jsonl(run_dir / "log.jsonl")
    assert [r["step"] for r in rows if r["kind"] == "train"] == list(range(20))
    assert (run_dir / ".lock").read_bytes() == b""  # emptied on a clean release


@pytest.mark.slow
def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path):
    run_dir = tmp_path / "run"
    first = _hold(run_dir, 1000, 0.05)
    _wait_for(f"{run_dir}.started", first)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert (run_dir / ".lock").read_text().strip() == str(first.pid)  # stale, not held
    trainer, _ = make(run_dir, steps=4, every=2)
    trainer.fit(overwrite=True)  # another run: it is not blocked by the dead holder's lock
    assert list_checkpoints(run_dir / "checkpoints")[-1][0] == 4
    assert (run_dir / ".lock").read_bytes() == b""


def test_lock_in_one_process_names_the_holder(tmp_path):
    held = RunDirectory(tmp_path)
    held.acquire()
    try:
        trainer, _ = make(tmp_path)
        with pytest.raises(RunDirectoryBusy, match=f"in use by process {os.getpid()}"):
            trainer.fit()
        assert sorted(os.listdir(tmp_path)) == [".lock"]  # nothing written by the refused run
    finally:
        held.release()


# ---------------------------------------------------------------- finding 10: compatibility
@pytest.mark.parametrize("change, allow", [
    ("schedule", "schedules"),
    ("optimizer_class", "optimizer"),
    ("momentum", "hyperparameters"),
])
def test_resume_refuses_a_changed_optimizer_or_schedule_unless_allowed(tmp_path, change, allow):
    def optimizer(changed: bool):
        if change == "optimizer_class":
            cls = optim.AdamW if changed else optim.Adam
            return cls(learning_rate=optim.cosine_decay(0.01, 8))
        if change == "schedule":
            return optim.SGD(learning_rate=optim.cosine_decay(0.2 if changed else 0.1, 8),
                             momentum=0.9)
        return optim.SGD(learning_rate=optim.cosine_decay(0.1, 8),
                         momentum=0.5 if changed else 0.9)

    first, _ = make(tmp_path, steps=8, every=4, optimizer=optimizer(False))
    first.fit()
    second, _ = make(tmp_path, steps=8, every=4, optimizer=optimizer(True))
    before = tree(tmp_path)
    with pytest.raises(CheckpointError, match=allow):
        second.fit(resume=str(tmp_path / "checkpoints" / "step_00000004"))
    assert tree(tmp_path) == before
    third, _ = make(tmp_path, steps=8, every=4, optimizer=optimizer(True))
    if change == "optimizer_class":
        # AdamW has a weight_decay the Adam run did not: both must be named
        third.fit(resume=str(tmp_path / "checkpoints" / "step_00000004"),
                  allow_changes=("optimizer", "hyperparameters"))
    else:
        third.fit(resume=str(tmp_path / "checkpoints" / "step_00000004"), allow_changes=(allow,))
    assert list_checkpoints(tmp_path / "checkpoints")[-1][0] == 8


def test_allow_changes_names_only_real_settings(tmp_path):
    trainer, _ = make(tmp_path)
    with pytest.raises(ValueError, match="allow_changes.*'colour'"):
        trainer.fit(allow_changes=("colour",))
    assert not os.path.exists(tmp_path / "config.json")


# ---------------------------------------------------------------- finding 12: arguments
@pytest.mark.parametrize("kwargs, error, match", [
    ({"seed": -1}, ValueError, "seed must be an integer >= 0"),
    ({"seed": 1.5}, TypeError, "seed must be an integer"),
    ({"seed": True}, TypeError, "seed must be an integer"),
    ({"seed": 2**70}, ValueError, "seed must be <= 2\\*\\*62"),
    ({"log": 1}, TypeError, "log must be True or False"),
    ({"compile": 0}, TypeError, "compile must be True or False"),
    ({"grad_norm": 1}, TypeError, "grad_norm must be True or False"),
    ({"max_steps": True}, TypeError, "max_steps must be an integer"),
    ({"log_every": 0}, ValueError, "log_every must be a positive integer"),
    ({"clip_norm": float("nan")}, ValueError, "clip_norm must be finite"),
    ({"keep_checkpoints": 2.0}, TypeError, "keep_checkpoints must be an integer"),
    ({"progress": 1}, TypeError, "progress must be True, False or None"),
    ({"config": {"f": object()}}, TypeError, "config must be JSON-serialisable"),
])
def test_bad_arguments_fail_before_anything_is_written(tmp_path, kwargs, error, match):
    run_dir = tmp_path / "run"
    x, y = classification_data(32)
    base = {"run_dir": run_dir, "max_steps": 4}
    with pytest.raises(error, match=match):
        Trainer(MLP(hidden=4), xent, optim.SGD(learning_rate=0.1),
                ArrayBatches((x, y), 8), **{**base, **kwargs})
    assert not run_dir.exists()


# ---------------------------------------------------------------- filesystem errors
def test_disk_full_during_a_save_names_the_file_and_the_run_stays_resumable(tmp_path,
                                                                            monkeypatch):
    import errno

    from trainers import files

    reference_dir = tmp_path / "reference"
    reference, reference_model = make(reference_dir, steps=8, every=4)
    reference.fit()

    run_dir = tmp_path / "run"
    real_save = files.save_safetensors
    calls = {"n": 0}

    def full_disk(path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # the second checkpoint's model file
            # what the storage layer turns a full disk into (its own tests check that)
            raise files.storage_error(OSError(errno.ENOSPC, "No space left on device"), path)
        return real_save(path, *args, **kwargs)

    monkeypatch.setattr(files, "save_safetensors", full_disk)
    trainer, _ = make(run_dir, steps=8, every=4)
    with pytest.raises(OSError, match="disk full") as info:
        trainer.fit()
    assert "step_00000008" in str(info.value)
    assert [s for s, _ in list_checkpoints(run_dir / "checkpoints")] == [4]
    assert not [n for n in os.listdir(run_dir / "checkpoints") if n.endswith(".tmp")]

    monkeypatch.setattr(files, "save_safetensors", real_save)
    resumed, model = make(run_dir, steps=8, every=4)
    resumed.fit(resume=True)
    for key, value in flat_weights(reference_model).items():
        np.testing.assert_array_equal(flat_weights(model)[key], value)
    for name in ("log.jsonl", "log.csv"):
        assert (run_dir / name).read_bytes() == (reference_dir / name).read_bytes()
