"""A resume continues this run or refuses: the run id, the files of a checkpoint and the log
must agree, the training data must be the same, every loaded array must be finite, and a
refused resume changes nothing on disk."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from helpers_run_dir import edit_meta, poison, snapshot, tiny
from helpers_trainer import flat_weights

from trainers import CheckpointError

NEWEST = "checkpoints/step_00000008"


def _killed(run_dir, **kw):
    """A run of 12 updates killed after its checkpoint of step 8 (checkpoints 4 and 8)."""
    def kill(event):
        if event["event"] == "checkpoint" and event["step"] == 8:
            raise KeyboardInterrupt  # stands in for a kill: nothing after the checkpoint

    with pytest.raises(KeyboardInterrupt):
        tiny(run_dir, steps=12, callbacks=[kill], **kw)[0].fit()


def test_the_run_id_is_in_config_checkpoints_and_the_record(tmp_path):
    _killed(tmp_path)
    run_id = json.loads((tmp_path / "config.json").read_text())["run_id"]
    assert isinstance(run_id, str) and len(run_id) == 16
    assert json.loads((tmp_path / ".run.json").read_text())["run_id"] == run_id
    for step in (4, 8):
        meta = json.loads((tmp_path / f"checkpoints/step_{step:08d}/meta.json").read_text())
        assert meta["run_id"] == run_id
    _killed(tmp_path / "other", model_seed=1)  # another initialisation: another run
    assert json.loads((tmp_path / "other/config.json").read_text())["run_id"] != run_id


def test_a_checkpoint_swapped_in_from_another_run_is_refused(tmp_path):
    _killed(tmp_path / "run")
    _killed(tmp_path / "other", model_seed=1)  # the same settings and data, other weights
    shutil.rmtree(tmp_path / "run" / NEWEST)
    shutil.copytree(tmp_path / "other" / NEWEST, tmp_path / "run" / NEWEST)
    before = snapshot(tmp_path / "run")
    with pytest.raises(CheckpointError, match="belongs to another run"):
        tiny(tmp_path / "run", steps=12)[0].fit(resume=True)
    assert snapshot(tmp_path / "run") == before


def test_a_meta_step_that_disagrees_with_the_optimizer_is_refused(tmp_path):
    _killed(tmp_path)
    edit_meta(tmp_path / NEWEST, step=9)
    before = snapshot(tmp_path)
    with pytest.raises(CheckpointError, match=r"step 9 but the optimizer state .* says 8"):
        tiny(tmp_path, steps=12)[0].fit(resume=True)
    assert snapshot(tmp_path) == before


def test_a_log_position_inside_a_row_is_refused(tmp_path):
    _killed(tmp_path)
    meta = json.loads((tmp_path / NEWEST / "meta.json").read_text())
    position = meta["log_position"]
    edit_meta(tmp_path / NEWEST, log_position={**position, "jsonl": position["jsonl"] - 5})
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match="not at the end of a row"):
        tiny(tmp_path, steps=12)[0].fit(resume=True)
    assert snapshot(tmp_path) == before


def test_a_log_row_that_disagrees_with_the_checkpoint_is_refused(tmp_path):
    _killed(tmp_path)
    meta = json.loads((tmp_path / NEWEST / "meta.json").read_text())
    end = meta["log_position"]["jsonl"]
    data = (tmp_path / "log.jsonl").read_bytes()
    last = data[:end].rstrip(b"\n").rsplit(b"\n", 1)[-1]
    row = json.loads(last)
    assert row["kind"] == "eval" and row["step"] == 8  # the evaluation before the save
    loss = json.dumps(row["eval_loss"]).encode()
    changed = last.replace(loss, loss[:-1] + (b"1" if loss[-1:] != b"1" else b"2"))
    assert len(changed) == len(last) and changed != last  # same length, another value
    (tmp_path / "log.jsonl").write_bytes(data.replace(last, changed))
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match="eval row of step 8 holds other values"):
        tiny(tmp_path, steps=12)[0].fit(resume=True)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("change, key", [({"batch": 8}, "batch_size"),
                                         ({"data_seed": 1}, "data")])
def test_a_changed_batch_size_or_data_is_refused_unless_allowed(tmp_path, change, key):
    _killed(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(CheckpointError, match=f"{key}.*allow_changes"):
        tiny(tmp_path, steps=12, **change)[0].fit(resume=True)
    assert snapshot(tmp_path) == before
    result = tiny(tmp_path, steps=12, **change)[0].fit(resume=True, allow_changes=(key,))
    assert result["step"] == 12


@pytest.mark.parametrize("name, key_part, options", [
    ("optimizer.safetensors", "weight", {}),  # SGD's momentum buffer
    ("train_state.safetensors", "ema", {"ema": 0.9}),
])
def test_non_finite_optimizer_or_trainer_state_is_never_loaded(tmp_path, name, key_part,
                                                              options):
    reference, reference_model = tiny(tmp_path / "ref", steps=12, **options)
    reference.fit()
    run_dir = tmp_path / "run"
    _killed(run_dir, **options)
    key = poison(run_dir / NEWEST, name, key_part)
    with pytest.raises(CheckpointError, match=f"non-finite .* in {name}: \\['{key}'\\]"):
        tiny(run_dir, steps=12, **options)[0].fit(resume=str(run_dir / NEWEST))
    with pytest.warns(UserWarning, match=rf"step_00000008 is unusable .*{name}.*resuming from "
                                         r".*step_00000004"):
        trainer, model = tiny(run_dir, steps=12, **options)
        trainer.fit(resume=True)
    for k, value in flat_weights(reference_model).items():
        np.testing.assert_array_equal(flat_weights(model)[k], value, err_msg=k)


def test_a_refused_resume_renames_nothing(tmp_path):
    _killed(tmp_path)
    damaged = tmp_path / NEWEST / "model.safetensors"
    damaged.write_bytes(damaged.read_bytes()[:-7])  # the newest is broken: it would be set aside
    before = snapshot(tmp_path)
    with pytest.raises(CheckpointError, match="seed"):
        tiny(tmp_path, steps=12, seed=5)[0].fit(resume=True)  # but the resume is refused
    assert snapshot(tmp_path) == before
