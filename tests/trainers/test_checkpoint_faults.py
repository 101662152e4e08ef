"""Fault injection: a run killed (SIGKILL) inside every file operation of a checkpoint save.

The run of ``_trainer_resume_script.py`` (16 updates, a checkpoint every 5, keeping 2) is
killed inside each os-level file operation performed while its checkpoints of steps 5 and 15
are saved (syncing the logs, writing ``step_<n>.tmp/``, the rename, pruning step 5 after
step 15), and once right after its final save; each killed run is then resumed. Every run
directory must end byte-identical to an uninterrupted run: logs, config, and every file of
every checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers_trainer import run_files

SCRIPT = os.path.join(os.path.dirname(__file__), "_trainer_resume_script.py")
SAVE_STEPS = (5, 15)  # the first save creates checkpoints/; the save of 15 prunes step 5


def _run(*args, timeout=120):
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


def _tree(run_dir):
    """Every file under ``run_dir`` (names starting with '.' excluded, e.g. a lock file)."""
    return run_files(run_dir, hidden=False)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run's files, and the file operations of its saves of steps 5 and 15."""
    root = tmp_path_factory.mktemp("faults")
    ops = {}
    for step in SAVE_STEPS:  # one run per counted save; both runs give the same files
        counted = _run(root / f"ref{step}", "--count-ops", step)
        assert counted.returncode == 0, counted.stderr[-3000:]
        ops[step] = json.loads(counted.stdout.strip().splitlines()[-1])["ops"]
    expected = _tree(root / f"ref{SAVE_STEPS[0]}")
    assert _tree(root / f"ref{SAVE_STEPS[1]}") == expected
    return expected, ops


def _kill_resume_compare(tmp_path, expected, plans):
    """Run every plan (arguments that kill the run), resume each, compare with ``expected``."""

    def kill(item):
        name, args = item
        return name, _run(tmp_path / name, *args)

    with ThreadPoolExecutor(2) as pool:
        for name, proc in pool.map(kill, plans.items()):
            assert proc.returncode == -9, (name, proc.stderr[-3000:])

    # Resume them in two processes (one interpreter start-up each, not one per directory).
    names = sorted(plans)

    def resume(group):
        return _run(*[tmp_path / n for n in group], "--resume", timeout=300)

    with ThreadPoolExecutor(2) as pool:
        for proc in pool.map(resume, [g for g in (names[0::2], names[1::2]) if g]):
            assert proc.returncode == 0, proc.stderr[-3000:]

    different = {}
    for name in names:
        got = _tree(tmp_path / name)
        if got != expected:
            different[name] = sorted(
                n for n in set(got) | set(expected) if got.get(n) != expected.get(n))
    assert not different, different


@pytest.mark.slow
def test_reference_run_files(reference):
    expected, ops = reference
    assert sorted(n for n in expected if not n.startswith("checkpoints/")) == [
        "config.json", "log.csv", "log.jsonl"]
    assert sorted(n for n in expected if n.startswith("checkpoints/")) == [
        f"checkpoints/step_{s:08d}/{f}" for s in (15, 16)
        for f in ("manifest.json", "meta.json", "model.safetensors", "optimizer.safetensors")
    ]
    for step in SAVE_STEPS:
        # a save writes 4 files (open, write, fsync each) and renames its directory into place
        assert ops[step].count("fsync") >= 4 and "replace" in ops[step], ops[step]
        assert ops[step].count("open") >= 4 and ops[step].count("write") >= 4, ops[step]
    # the save of step 15 also prunes step 5 (keep_checkpoints=2): removals are counted
    assert "rmdir" in ops[15] and "rmdir" not in ops[5]


@pytest.mark.slow
@pytest.mark.parametrize("save_step", SAVE_STEPS)
def test_kill_inside_every_file_operation_of_a_save_then_resume_is_byte_identical(
        tmp_path, reference, save_step):
    expected, ops = reference
    plans = {f"op{k:03d}_{name}": ["--kill-at-op", k, "--ops-of", save_step]
             for k, name in enumerate(ops[save_step], start=1)}
    _kill_resume_compare(tmp_path, expected, plans)


@pytest.mark.slow
def test_kill_after_the_final_save_then_resume_is_byte_identical(tmp_path, reference):
    expected, _ = reference
    _kill_resume_compare(tmp_path, expected, {"after_final_save": ["--kill-at-checkpoint", 16]})


@pytest.mark.slow
def test_kill_inside_every_file_operation_of_an_overwrite_then_rerun_is_byte_identical(
        tmp_path, reference):
    """An overwrite killed anywhere, then run again, ends as a fresh run would: never a
    mixture of the old run and the new one."""
    expected, _ = reference
    old = tmp_path / "old"
    # the old run: killed at its checkpoint of step 10, plus a checkpoint the new run never
    # writes (a file the trainer did not write would make the overwrite refuse)
    assert _run(old, "--kill-at-checkpoint", 10).returncode == -9
    shutil.copytree(old / "checkpoints" / "step_00000010", old / "checkpoints" / "step_00000099")
    counted_dir = tmp_path / "counted"
    shutil.copytree(old, counted_dir)
    counted = _run(counted_dir, "--count-ops", -1)
    assert counted.returncode == 0, counted.stderr[-3000:]
    assert _tree(counted_dir) == expected
    ops = json.loads(counted.stdout.strip().splitlines()[-1])["ops"]
    assert "unlink" in ops and "rmdir" in ops  # the old run's files were removed
    names = [f"op{k:03d}" for k in range(1, len(ops) + 1)]
    for name in names:
        shutil.copytree(old, tmp_path / name)

    def kill(name):
        return name, _run(tmp_path / name, "--kill-at-op", int(name[2:]), "--ops-of", -1)

    with ThreadPoolExecutor(2) as pool:
        for name, proc in pool.map(kill, names):
            assert proc.returncode == -9, (name, proc.stderr[-3000:])
    # Once the names to remove are recorded, even resume=True finishes the replacement
    # (and starts the new run); before that the old run is intact. The user's usual retry
    # is the overwrite itself.
    recorded = [n for n in names if (tmp_path / n / ".replacing.json").exists()]
    assert recorded, "no kill landed after the list of names to remove was written"
    retry = [n for n in names if n not in recorded[::2]]
    for group, flag in ((retry, "--overwrite"), (recorded[::2], "--resume")):
        proc = _run(*[tmp_path / n for n in group], flag, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    different = {}
    for name in names:
        got = _tree(tmp_path / name)
        wrong = sorted(k for k in set(got) | set(expected) if got.get(k) != expected.get(k))
        if wrong:
            different[name] = wrong
    assert not different, different
