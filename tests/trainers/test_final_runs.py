"""Final means final: a run that ended (its length reached, or a callback's STOP) resumes as a
no-op for every file in its directory, trackers included; PAUSE is the resumable stop."""

from __future__ import annotations

import os

import pytest
from helpers_run_dir import snapshot, tiny
from helpers_trainer import read_jsonl

from trainers import EarlyStopping


def _resume_changes_nothing(run_dir, **kw):
    before = snapshot(run_dir)
    events = []
    result = tiny(run_dir, callbacks=[events.append, *kw.pop("callbacks", ())], **kw)[0] \
        .fit(resume=True)
    assert snapshot(run_dir) == before
    assert [e["event"] for e in events] == ["start", "end"]
    assert events[0]["finished"] is True
    return result


def test_a_run_stopped_by_early_stopping_stays_stopped(tmp_path):
    def stopper():  # the loss falls, so "max" sees no improvement: stop at the 2nd evaluation
        return EarlyStopping("eval_loss", mode="max", patience=0)

    first = tiny(tmp_path, steps=20, every=2, callbacks=[stopper()])[0].fit()
    assert first["step"] == 4
    result = _resume_changes_nothing(tmp_path, steps=20, every=2, callbacks=[stopper()])
    assert result["step"] == 4 and result["already_finished"] is True
    assert max(r["step"] for r in read_jsonl(tmp_path / "log.jsonl")) == 4


def test_a_finished_run_without_checkpoints_is_not_trained_again(tmp_path):
    tiny(tmp_path, checkpoint_every=0)[0].fit()
    _resume_changes_nothing(tmp_path, checkpoint_every=0)


def test_resuming_a_finished_run_adds_no_tensorboard_event_file(tmp_path):
    pytest.importorskip("tensorboardX")
    from trainers import TensorBoard

    tiny(tmp_path, callbacks=[TensorBoard()])[0].fit()
    assert len(os.listdir(tmp_path / "tensorboard")) == 1
    _resume_changes_nothing(tmp_path, callbacks=[TensorBoard()])


def test_a_paused_run_continues_and_a_longer_run_resumes_a_finished_one(tmp_path):
    from trainers import PAUSE

    reference = tiny(tmp_path / "ref", steps=12)[0]
    reference.fit()

    def pause(event):  # at the end of the block of step 8, where it evaluates anyway
        return PAUSE if event["event"] == "train" and event["step"] == 7 else None

    assert tiny(tmp_path / "run", steps=12, callbacks=[pause])[0].fit()["step"] == 8
    assert tiny(tmp_path / "run", steps=12)[0].fit(resume=True)["step"] == 12
    tiny(tmp_path / "short", steps=8)[0].fit()  # ended at 8; a longer run continues it
    longer = tiny(tmp_path / "short", steps=12)[0].fit(
        resume=True, allow_changes=("max_steps", "schedules"))
    assert longer["step"] == 12 and longer["already_finished"] is False
    for name in ("log.jsonl", "log.csv"):
        expected = (tmp_path / "ref" / name).read_bytes()
        assert (tmp_path / "run" / name).read_bytes() == expected
