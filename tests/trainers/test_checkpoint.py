"""Checkpoints and exact resume, including runs killed with SIGKILL at several points."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from helpers_trainer import MLP, classification_data, flat_weights, train_rows, xent

from trainers import (
    ArrayBatches,
    CheckpointError,
    EarlyStopping,
    ReduceLROnPlateau,
    Trainer,
    list_checkpoints,
    load_checkpoint,
)

SCRIPT = os.path.join(os.path.dirname(__file__), "_trainer_resume_script.py")
TOTAL = 12


class CrashingData:
    """ArrayBatches that raise after ``crash_at`` batches (a crash in the middle of a block)."""

    def __init__(self, data, crash_at=None):
        self.data, self.crash_at, self.count = data, crash_at, 0

    def __len__(self):
        return len(self.data)

    def epoch(self, e):
        for batch in self.data.epoch(e):
            self.count += 1
            if self.count == self.crash_at:
                raise RuntimeError("simulated crash")
            yield batch


def make_trainer(run_dir, crash_at=None, seed=3, hidden=16, callbacks_extra=()):
    mx.random.seed(0)
    x, y = classification_data(64)
    model = MLP(hidden=hidden, dropout=0.25)
    opt = optim.Adam(learning_rate=optim.cosine_decay(0.05, TOTAL))
    plateau = ReduceLROnPlateau(opt, "eval_loss", patience=0, factor=0.5)
    trainer = Trainer(
        model, xent, opt, CrashingData(ArrayBatches((x, y), 16, seed=1), crash_at),
        run_dir=run_dir, max_steps=TOTAL, eval_data=[(x, y)], eval_every=3,
        checkpoint_every=4, keep_checkpoints=2, log_every=5, report_every=0, seed=seed,
        callbacks=[plateau, *callbacks_extra],
    )
    return trainer, model, opt


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("reference")
    trainer, model, opt = make_trainer(run_dir)
    trainer.fit()
    return run_dir, flat_weights(model)


def files(run_dir):
    return {n: (run_dir / n).read_bytes() for n in ("log.jsonl", "log.csv", "config.json")}


@pytest.mark.parametrize("crash_at", [2, 7, 10, 12])
def test_resume_after_crash_is_identical(tmp_path, reference, crash_at):
    ref_dir, ref_weights = reference
    trainer, _, _ = make_trainer(tmp_path, crash_at=crash_at)
    with pytest.raises(RuntimeError, match="simulated crash"):
        trainer.fit()
    trainer, model, _ = make_trainer(tmp_path)
    trainer.fit(resume=True)
    for key, value in ref_weights.items():
        np.testing.assert_array_equal(flat_weights(model)[key], value, err_msg=key)
    assert files(tmp_path) == files(ref_dir)


def test_checkpoint_contents_and_keep_last(tmp_path, reference):
    ref_dir, _ = reference
    steps = [s for s, _ in list_checkpoints(ref_dir / "checkpoints")]
    assert steps == [8, 12]  # every 4 updates and at the end, keeping 2
    assert not [n for n in os.listdir(ref_dir / "checkpoints") if n.endswith(".tmp")]
    path = ref_dir / "checkpoints" / "step_00000008"
    assert sorted(os.listdir(path)) == ["meta.json", "model.safetensors", "optimizer.safetensors"]
    meta = json.loads((path / "meta.json").read_text())
    assert meta["step"] == 8 and meta["seed"] == 3
    assert meta["data_position"] == {"epoch": 1, "index": 4}  # 4 batches per epoch, all taken
    opt_state = mx.load(str(path / "optimizer.safetensors"))
    assert opt_state["step"].dtype == mx.uint64 and opt_state["step"].item() == 8
    assert "lr_factor" in opt_state
    # the log position points just after the eval row of step 6 and the train row of step 7
    rows = (ref_dir / "log.jsonl").read_bytes()[: meta["log_position"]["jsonl"]].splitlines()
    assert json.loads(rows[-1]) == {**json.loads(rows[-1]), "kind": "train", "step": 7}
    assert meta["callbacks"]["0"]["num_bad"] >= 0
    # the lr actually used = cosine(t) * lr_factor kept in optimizer state
    factor = opt_state["lr_factor"].item()
    row7 = json.loads(rows[-1])
    expected = 0.5 * 0.05 * (1 + np.cos(np.pi * 7 / TOTAL)) * factor
    assert row7["learning_rate"] == pytest.approx(expected, rel=1e-6)


def test_resume_from_an_older_checkpoint_truncates_the_log(tmp_path, reference):
    ref_dir, ref_weights = reference
    trainer, _, _ = make_trainer(tmp_path)
    trainer.fit()
    older = list_checkpoints(tmp_path / "checkpoints")[0][1]
    trainer, model, _ = make_trainer(tmp_path)
    trainer.fit(resume=older)
    assert files(tmp_path) == files(ref_dir)
    np.testing.assert_array_equal(flat_weights(model)["l1.weight"], ref_weights["l1.weight"])


def test_leftover_temp_checkpoint_is_ignored(tmp_path, reference):
    ref_dir, _ = reference
    trainer, _, _ = make_trainer(tmp_path, crash_at=11)
    with pytest.raises(RuntimeError):
        trainer.fit()
    (tmp_path / "checkpoints" / "step_00000009.tmp").mkdir()  # a save killed half-way
    (tmp_path / "checkpoints" / "step_00000009.tmp" / "model.safetensors").write_bytes(b"x")
    trainer, _, _ = make_trainer(tmp_path)
    trainer.fit(resume=True)
    assert files(tmp_path) == files(ref_dir)
    assert not (tmp_path / "checkpoints" / "step_00000009.tmp").exists()


def _snapshot(run_dir):
    out = {}
    for root, _, names in os.walk(run_dir):
        for name in names:
            path = os.path.join(root, name)
            out[os.path.relpath(path, run_dir)] = open(path, "rb").read()
    return out


def test_corrupt_checkpoint_is_reported_and_nothing_is_lost(tmp_path):
    trainer, _, _ = make_trainer(tmp_path, crash_at=11)
    with pytest.raises(RuntimeError):
        trainer.fit()
    latest = tmp_path / "checkpoints" / "step_00000008" / "model.safetensors"
    latest.write_bytes(latest.read_bytes()[:-7])
    before = _snapshot(tmp_path)
    trainer, _, _ = make_trainer(tmp_path)
    with pytest.raises(CheckpointError, match="corrupt checkpoint file .*step_00000008"):
        trainer.fit(resume=True)
    assert _snapshot(tmp_path) == before
    (tmp_path / "checkpoints" / "step_00000008" / "meta.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="meta.json"):
        make_trainer(tmp_path)[0].fit(resume=True)
    os.remove(tmp_path / "checkpoints" / "step_00000008" / "meta.json")
    with pytest.raises(FileNotFoundError, match="meta.json"):
        make_trainer(tmp_path)[0].fit(resume=True)


def test_mismatched_checkpoint_is_rejected_without_changes(tmp_path):
    trainer, _, _ = make_trainer(tmp_path, crash_at=11)
    with pytest.raises(RuntimeError):
        trainer.fit()
    before = _snapshot(tmp_path)
    trainer, model, _ = make_trainer(tmp_path, hidden=8)
    weights = flat_weights(model)
    with pytest.raises(CheckpointError, match="model weights .*l1.weight"):
        trainer.fit(resume=True)
    assert all(np.array_equal(flat_weights(model)[k], v) for k, v in weights.items())
    with pytest.raises(CheckpointError, match="seed=3.*seed=4"):
        make_trainer(tmp_path, seed=4)[0].fit(resume=True)
    with pytest.raises(FileNotFoundError, match="step_00000099"):
        make_trainer(tmp_path)[0].fit(resume=tmp_path / "checkpoints" / "step_00000099")
    assert _snapshot(tmp_path) == before


def test_optimizer_mismatch_and_load_in_place(tmp_path):
    trainer, model, opt = make_trainer(tmp_path)
    trainer.fit()
    path = list_checkpoints(tmp_path / "checkpoints")[-1][1]
    other = MLP()
    sgd = optim.SGD(learning_rate=0.1, momentum=0.9)
    sgd.init(other.trainable_parameters())
    with pytest.raises(CheckpointError, match="optimizer state"):
        load_checkpoint(path, other, sgd)
    fresh, adam = MLP(dropout=0.25), optim.Adam(learning_rate=0.1)
    adam.state["lr_factor"] = mx.array(1.0)
    adam.init(fresh.trainable_parameters())
    state_dict = adam.state
    meta = load_checkpoint(path, fresh, adam)
    assert adam.state is state_dict  # updated in place, never replaced
    assert meta["step"] == TOTAL and adam.state["step"].item() == TOTAL
    np.testing.assert_array_equal(np.array(fresh.l2.weight), np.array(model.l2.weight))
    np.testing.assert_array_equal(np.array(adam.state["l1"]["weight"]["v"]),
                                  np.array(opt.state["l1"]["weight"]["v"]))


def test_early_stopping_state_survives_resume(tmp_path):
    stop = EarlyStopping("eval_loss", patience=100)
    trainer, _, _ = make_trainer(tmp_path, crash_at=11, callbacks_extra=[stop])
    with pytest.raises(RuntimeError):
        trainer.fit()
    saved = json.loads((tmp_path / "checkpoints/step_00000008/meta.json").read_text())
    restored = EarlyStopping("eval_loss", patience=100)
    make_trainer(tmp_path, callbacks_extra=[restored])[0].fit(resume=True)
    assert saved["callbacks"]["1"]["best"] is not None
    assert restored.best <= saved["callbacks"]["1"]["best"]


# ------------------------------------------------------------------ SIGKILL, in subprocesses
def _run(run_dir, *args):
    return subprocess.run([sys.executable, SCRIPT, str(run_dir), *args], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.slow
def test_sigkill_at_several_steps_then_resume_is_bit_exact(tmp_path):
    _run(tmp_path / "ref").check_returncode()
    ref = tmp_path / "ref"
    ref_weights = mx.load(str(ref / "checkpoints/step_00000016/model.safetensors"))
    plans = {
        "early": [["--kill-at-batch", "3"]],  # step 1, before any checkpoint
        "twice": [["--kill-at-batch", "13"], ["--resume", "--kill-at-batch", "9"]],
        "after_checkpoint": [["--kill-at-checkpoint", "10"]],
    }
    for name, kills in plans.items():
        run_dir = tmp_path / name
        for args in kills:
            proc = _run(run_dir, *args)
            assert proc.returncode == -9, (name, proc.stderr[-2000:])
        _run(run_dir, "--resume").check_returncode()
        assert (run_dir / "log.jsonl").read_bytes() == (ref / "log.jsonl").read_bytes(), name
        assert (run_dir / "log.csv").read_bytes() == (ref / "log.csv").read_bytes(), name
        got = mx.load(str(run_dir / "checkpoints/step_00000016/model.safetensors"))
        for key, value in ref_weights.items():
            assert mx.array_equal(got[key], value).item(), (name, key)
    rows = train_rows(ref / "log.jsonl")
    assert [r["step"] for r in rows] == list(range(16))


def test_unrelated_model_class_cannot_load(tmp_path):
    trainer, _, _ = make_trainer(tmp_path)
    trainer.fit()
    path = list_checkpoints(tmp_path / "checkpoints")[-1][1]
    linear = nn.Linear(6, 2)
    adam = optim.Adam(learning_rate=0.1)
    adam.init(linear.trainable_parameters())
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(path, linear, adam)
