"""Errors around a run directory: the real cause is reported, a failed start leaves nothing
behind, and a process arriving while the owner starts is told so."""

from __future__ import annotations

import errno
import fcntl
import os
import threading

import pytest
from helpers_run_dir import tiny

from trainers.run_dir import RunDirectory, RunDirectoryBusy


class _FullDiskFile:
    """A log file whose buffered bytes cannot be written at close: the disk is full."""

    def __init__(self, f):
        self._f = f

    def __getattr__(self, name):
        return getattr(self._f, name)

    def close(self):
        self._f.close()
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_names_the_checkpoint_file_not_system_jsonl(tmp_path, monkeypatch):
    from trainers import files, system_log

    real_save, real_open = files.save_safetensors, system_log.open_append

    def full(path, *args, **kwargs):
        if "step_00000008" in str(path):
            raise files.storage_error(OSError(errno.ENOSPC, "No space left on device"), path)
        return real_save(path, *args, **kwargs)

    monkeypatch.setattr(files, "save_safetensors", full)
    monkeypatch.setattr(system_log, "open_append", lambda p: _FullDiskFile(real_open(p)))
    with pytest.raises(OSError, match=r"step_00000008\.tmp/model\.safetensors: disk full"):
        tiny(tmp_path)[0].fit()


def test_a_start_refused_for_a_bad_tracker_directory_leaves_nothing(tmp_path):
    pytest.importorskip("tensorboardX")
    from trainers import TensorBoard

    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("a file where the tracker wants a directory")
    run_dir = tmp_path / "run"
    for _ in range(2):  # the same command fails the same way: nothing was left behind
        with pytest.raises(OSError) as info:
            tiny(run_dir, callbacks=[TensorBoard(not_a_dir / "tb")])[0].fit()
        assert "already holds a run" not in str(info.value)
        assert not run_dir.exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("kept")
    with pytest.raises(OSError):
        tiny(existing, callbacks=[TensorBoard(not_a_dir / "tb")])[0].fit()
    assert sorted(os.listdir(existing)) == [".lock", "notes.txt"]
    tiny(existing, callbacks=[TensorBoard(tmp_path / "tb")])[0].fit()  # the fixed command


def test_a_process_arriving_before_the_owner_wrote_its_pid_is_told_so(tmp_path):
    lock = tmp_path / ".lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # an owner that has locked but not yet written its pid
        with pytest.raises(RunDirectoryBusy, match=r"another process \(starting up\)"):
            RunDirectory(tmp_path).acquire()
        later = threading.Timer(0.1, lambda: os.pwrite(fd, b"4242\n", 0))
        later.start()  # the owner writes its pid a moment later: it is named
        with pytest.raises(RunDirectoryBusy, match="in use by process 4242"):
            RunDirectory(tmp_path).acquire()
        later.join()
    finally:
        os.close(fd)
