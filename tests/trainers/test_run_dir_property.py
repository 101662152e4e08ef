"""A property of the run directory: whatever a user does (start, resume, overwrite, runs
stopped half-way, resumes with changed settings, files of their own planted anywhere), the
directory never loses a file the trainer did not write, a refusal changes nothing, and a last
resume with the run's settings ends byte-equal to an uninterrupted run or refuses clearly.

A run is stopped half-way by an exception raised from a callback at a random training row:
the in-process stand-in for a kill (SIGKILL itself, inside every file operation, is
``test_checkpoint_faults.py``).
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from helpers_run_dir import snapshot, tiny
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from trainers import CheckpointError

STEPS, EVERY = 6, 2
_NAME = st.text("abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=8).filter(
    lambda n: n not in ("config.json", "log.jsonl", "log.csv", "system.jsonl", "checkpoints",
                        "best", "tensorboard"))
_START = st.tuples(st.just("start"), st.sampled_from(["fresh", "resume", "overwrite"]),
                   st.one_of(st.none(), st.integers(0, STEPS - 1)),  # killed at this row
                   st.sampled_from([None, "seed", "batch"]))  # a changed setting
_PLANT = st.tuples(st.just("plant"), st.sampled_from(["", "checkpoints"]), _NAME,
                   st.binary(max_size=16))


class _Killed(BaseException):
    """Raised at a training row: the run stops there, as if killed."""


def _trainer_files(run_dir, planted) -> dict[str, bytes]:
    """The files an uninterrupted run also has: not hidden, not system.jsonl, not planted."""
    return {k: v for k, v in snapshot(run_dir).items() if v is not None
            and k not in planted and not os.path.basename(k).startswith(".")
            and k != "system.jsonl"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("reference")
    tiny(run_dir, steps=STEPS, every=EVERY)[0].fit()
    return _trainer_files(run_dir, {})


def _start(run_dir, mode, kill_at, change) -> None:
    def kill(event):
        if kill_at is not None and event["event"] == "train" and event["step"] == kill_at:
            raise _Killed

    options = {"seed": 1} if change == "seed" else {"batch": 8} if change == "batch" else {}
    trainer, _ = tiny(run_dir, steps=STEPS, every=EVERY, callbacks=[kill], **options)
    before = snapshot(run_dir) if os.path.isdir(run_dir) else None
    try:
        trainer.fit(resume=mode == "resume", overwrite=mode == "overwrite")
    except _Killed:
        event(f"{mode}: killed")
    except (ValueError, CheckpointError) as e:  # a refusal: clear, and nothing changed
        event(f"{mode}: refused")
        assert "run directory" in str(e) or "checkpoint" in str(e), e
        after = snapshot(run_dir) if os.path.isdir(run_dir) else None
        assert after == before


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(st.one_of(_START, _PLANT), min_size=1, max_size=4))
def test_the_directory_keeps_user_files_and_ends_as_an_uninterrupted_run(reference, ops):
    parent = tempfile.mkdtemp()
    run_dir = os.path.join(parent, "run")
    planted: dict[str, bytes] = {}
    try:
        for op in ops:
            if op[0] == "plant":
                _, folder, name, content = op
                rel = os.path.join(folder, name) if folder else name
                if os.path.lexists(os.path.join(run_dir, rel)) or \
                        os.path.isfile(os.path.join(run_dir, folder)):
                    continue
                os.makedirs(os.path.join(run_dir, folder), exist_ok=True)
                with open(os.path.join(run_dir, rel), "wb") as f:
                    f.write(content)
                planted[rel] = content
            else:
                _start(run_dir, *op[1:])
            for rel, content in planted.items():
                with open(os.path.join(run_dir, rel), "rb") as f:
                    assert f.read() == content, (rel, op)
        try:
            tiny(run_dir, steps=STEPS, every=EVERY)[0].fit(resume=True)
        except (ValueError, CheckpointError) as e:
            event("last resume: refused")
            assert "run directory" in str(e) or "checkpoint" in str(e), e
        else:
            event("last resume: equal to the uninterrupted run")
            assert _trainer_files(run_dir, planted) == reference
        for rel, content in planted.items():
            with open(os.path.join(run_dir, rel), "rb") as f:
                assert f.read() == content, rel
    finally:
        shutil.rmtree(parent)
