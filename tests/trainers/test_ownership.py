"""The run directory's ownership rule: the trainer removes only what it wrote.

Each test plants what a user might keep in a run directory (notes, data, a config of their
own, a file inside ``checkpoints/``) or a damaged marker, and checks that the trainer refuses
clearly and leaves every byte as it was, or removes only its own files.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
from helpers_run_dir import snapshot, tiny
from helpers_trainer import read_jsonl

from trainers import list_checkpoints


def test_overwrite_refuses_a_directory_holding_files_the_trainer_did_not_write(tmp_path):
    tiny(tmp_path)[0].fit()
    (tmp_path / "notes.txt").write_text("my notes")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.npy").write_bytes(b"\x93NUMPY")
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match=r"did not write \(data, notes\.txt\).*overwrite='all'"):
        tiny(tmp_path, seed=1)[0].fit(overwrite=True)
    assert snapshot(tmp_path) == before

    tiny(tmp_path, seed=1)[0].fit(overwrite="all")  # asked for: everything goes
    assert not (tmp_path / "notes.txt").exists() and not (tmp_path / "data").exists()
    assert json.loads((tmp_path / "config.json").read_text())["seed"] == 1


def test_a_file_planted_inside_checkpoints_is_not_the_trainers(tmp_path):
    tiny(tmp_path)[0].fit()
    (tmp_path / "checkpoints" / "README.md").write_text("which checkpoint is good")
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match=r"checkpoints/README\.md"):
        tiny(tmp_path)[0].fit(overwrite=True)
    assert snapshot(tmp_path) == before


def test_overwrite_removes_the_old_run_and_keeps_nothing_else_only_when_all_is_its_own(
        tmp_path):
    tiny(tmp_path, steps=12)[0].fit()
    assert {s for s, _ in list_checkpoints(tmp_path / "checkpoints")} == {4, 8, 12}
    tiny(tmp_path, steps=4, every=2)[0].fit(overwrite=True)
    assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == [2, 4]
    assert sorted(os.listdir(tmp_path)) == [".lock", ".run.json", "checkpoints", "config.json",
                                            "log.csv", "log.jsonl", "system.jsonl"]


def test_resume_on_a_users_own_config_and_log_refuses_and_empties_nothing(tmp_path):
    (tmp_path / "config.json").write_text('{"lr": 0.1}')
    (tmp_path / "log.csv").write_text("step,loss\n0,2.5\n")
    (tmp_path / "train.py").write_text("print('my script')")
    before = snapshot(tmp_path)
    with pytest.raises(ValueError,
                       match=r"did not write \(config\.json, log\.csv\); it is not a run of"):
        tiny(tmp_path)[0].fit(resume=True)
    assert snapshot(tmp_path) == before


def test_a_restart_of_a_run_without_checkpoint_keeps_the_users_files(tmp_path):
    def crash(event):
        if event["event"] == "train" and event["step"] == 1:
            raise RuntimeError("crash before the first checkpoint")

    with pytest.raises(RuntimeError):
        tiny(tmp_path, callbacks=[crash])[0].fit()
    (tmp_path / "notes.txt").write_text("kept")
    tiny(tmp_path)[0].fit(resume=True)  # no checkpoint: the run starts again
    assert (tmp_path / "notes.txt").read_text() == "kept"
    assert [r["step"] for r in read_jsonl(tmp_path / "log.jsonl") if r["kind"] == "train"] \
        == list(range(8))


@pytest.mark.parametrize("marker", [
    {"remove": [".."]},
    {"remove": [""]},
    {"remove": ["."]},
    {"remove": [".lock"]},
    {"remove": ["checkpoints/../../outside"]},
    {"remove": "log.csv"},
    "{not json",
])
def test_a_bad_replacement_marker_is_named_and_removes_nothing(tmp_path, marker):
    parent = tmp_path / "parent"
    run_dir = parent / "run"
    tiny(run_dir)[0].fit()
    (parent / "outside").write_text("not the run's")
    text = marker if isinstance(marker, str) else json.dumps(marker)
    (run_dir / ".replacing.json").write_text(text)
    before = snapshot(parent)
    with pytest.raises(ValueError, match=r"marker .*\.replacing\.json is malformed"):
        tiny(run_dir)[0].fit(resume=True)
    assert snapshot(parent) == before


def test_a_leftover_of_a_killed_removal_is_cleaned_by_the_next_run(tmp_path):
    tiny(tmp_path)[0].fit()
    root = tmp_path / "checkpoints"
    # what a SIGKILL between the rename and the removal of a checkpoint leaves behind
    os.rename(root / "step_00000004", root / "step_00000004.old.tmp")
    before = snapshot(tmp_path)
    tiny(tmp_path)[0].fit(resume=True)  # the run had finished: only the leftover goes
    after = snapshot(tmp_path)
    assert not any(".old.tmp" in name for name in after)
    assert after == {k: v for k, v in before.items() if ".old.tmp" not in k}


def test_an_overwrite_killed_after_removing_the_config_is_finished_by_the_next_one(tmp_path):
    tiny(tmp_path)[0].fit()
    (tmp_path / "notes.txt").write_text("kept")
    # an overwrite killed after it removed checkpoints/ and config.json: its list remains
    names = ["checkpoints", "config.json", "log.csv", "log.jsonl", "system.jsonl", ".run.json"]
    (tmp_path / ".replacing.json").write_text(json.dumps({"remove": names}))
    shutil.rmtree(tmp_path / "checkpoints")
    os.remove(tmp_path / "config.json")
    with pytest.raises(ValueError, match=r"did not write \(notes\.txt\)"):
        tiny(tmp_path)[0].fit(overwrite=True)  # the log files still count as the trainer's
    os.remove(tmp_path / "notes.txt")
    tiny(tmp_path)[0].fit(overwrite=True)
    assert not (tmp_path / ".replacing.json").exists()
    assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == [4, 8]
