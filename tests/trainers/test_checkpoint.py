"""Checkpoints and exact resume, including runs killed with SIGKILL at several points."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from helpers_trainer import MLP, classification_data, flat_weights, run_files, train_rows, xent

from trainers import (
    ArrayBatches,
    CheckpointError,
    EarlyStopping,
    NonFiniteError,
    ReduceLROnPlateau,
    Trainer,
    list_checkpoints,
    load_checkpoint,
)
from trainers.checkpoint import (
    TRAINER_META_KEYS,
    find_resumable,
    prune_checkpoints,
    quarantine,
    save_checkpoint,
    verify_checkpoint,
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
    assert sorted(os.listdir(path)) == [
        "manifest.json", "meta.json", "model.safetensors", "optimizer.safetensors"]
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format_version"] == 2
    algorithm = "blake3" if _has_blake3() else "sha256"  # what this installation writes
    for name in ("meta.json", "model.safetensors", "optimizer.safetensors"):
        data = (path / name).read_bytes()
        assert manifest["files"][name] == {"bytes": len(data),
                                           algorithm: _digest(algorithm, data)}
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
    return run_files(run_dir)


def test_corrupt_checkpoint_is_reported_and_nothing_is_lost(tmp_path):
    trainer, _, _ = make_trainer(tmp_path, crash_at=11)
    with pytest.raises(RuntimeError):
        trainer.fit()
    newest = tmp_path / "checkpoints" / "step_00000008"
    latest = newest / "model.safetensors"
    intact = latest.read_bytes()
    latest.write_bytes(intact[:-7])
    before = _snapshot(tmp_path)
    _, model, opt = make_trainer(tmp_path)
    opt.init(model.trainable_parameters())
    with pytest.raises(CheckpointError, match="corrupt checkpoint file .*step_00000008"):
        load_checkpoint(newest, model, opt)
    assert find_resumable(tmp_path / "checkpoints")[0] == str(
        tmp_path / "checkpoints" / "step_00000004")
    assert _snapshot(tmp_path) == before
    latest.write_bytes(intact)
    (newest / "meta.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="meta.json"):
        load_checkpoint(newest, model, opt)
    os.remove(newest / "meta.json")
    with pytest.raises(FileNotFoundError, match="meta.json"):
        load_checkpoint(newest, model, opt)


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


# ------------------------------------------------------------------ verified checkpoints
def _crashed_run(run_dir):
    """A run crashed at step 10: checkpoints of steps 4 and 8 on disk."""
    trainer, _, _ = make_trainer(run_dir, crash_at=11)
    with pytest.raises(RuntimeError, match="simulated crash"):
        trainer.fit()
    root = run_dir / "checkpoints"
    assert [s for s, _ in list_checkpoints(root)] == [4, 8]
    return root


def _fresh(hidden=16):
    """A model and optimizer with the structure of ``make_trainer``'s, other values."""
    mx.random.seed(1)
    model = MLP(hidden=hidden, dropout=0.25)
    opt = optim.Adam(learning_rate=0.1)
    opt.state["lr_factor"] = mx.array(1.0)
    opt.init(model.trainable_parameters())
    return model, opt


def _has_blake3():
    try:
        import blake3  # noqa: F401
    except ImportError:
        return False
    return True


def _digest(algorithm, data):
    """A file's digest computed here, with the hash library itself."""
    if algorithm == "sha256":
        return hashlib.sha256(data).hexdigest()
    import blake3
    return blake3.blake3(data).hexdigest()


def _rewrite_manifest_entry(path, name, algorithm="sha256"):
    """Record ``name``'s current size and digest in the manifest (a deliberate edit)."""
    manifest = json.loads((path / "manifest.json").read_text())
    data = (path / name).read_bytes()
    manifest["files"][name] = {"bytes": len(data), algorithm: _digest(algorithm, data)}
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_weights_altered_in_place_are_detected_by_the_checksum(tmp_path):
    root = _crashed_run(tmp_path)
    target = root / "step_00000008" / "model.safetensors"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0x01  # the lowest byte of the last weight: still a finite float, same size
    target.write_bytes(bytes(data))
    model, opt = _fresh()
    weights = flat_weights(model)
    with pytest.raises(CheckpointError,
                       match=r"step_00000008/model\.safetensors.*(SHA-256|BLAKE3) differs"):
        load_checkpoint(root / "step_00000008", model, opt)
    assert all(np.array_equal(flat_weights(model)[k], v) for k, v in weights.items())
    with pytest.raises(CheckpointError, match="(SHA-256|BLAKE3) differs"):
        verify_checkpoint(root / "step_00000008")
    path, bad = find_resumable(root)
    assert path == str(root / "step_00000004")
    assert [p for p, _ in bad] == [str(root / "step_00000008")]
    assert "model.safetensors" in bad[0][1] and "differs from the manifest" in bad[0][1]


def test_empty_newest_checkpoint_falls_back_to_the_older_one(tmp_path, reference):
    ref_dir, ref_weights = reference
    root = _crashed_run(tmp_path)
    (root / "step_00000012").mkdir()  # e.g. a copy interrupted before any file
    path, bad = find_resumable(root)
    assert path == str(root / "step_00000008")
    assert [(p, r.split(":")[0]) for p, r in bad] == [
        (str(root / "step_00000012"), "checkpoint file missing")]
    assert [s for s, _ in list_checkpoints(root)] == [4, 8]  # not listed: incomplete
    trainer, model, _ = make_trainer(tmp_path)
    trainer.fit(resume=True)
    assert files(tmp_path) == files(ref_dir)
    for key, value in ref_weights.items():
        np.testing.assert_array_equal(flat_weights(model)[key], value, err_msg=key)
    # kept for inspection under another name, never deleted
    assert (root / "step_00000012.corrupt").is_dir()
    assert [s for s, _ in list_checkpoints(root)] == [8, 12]


def test_corrupt_newest_checkpoint_falls_back_and_is_kept(tmp_path, reference):
    ref_dir, _ = reference
    root = _crashed_run(tmp_path)
    target = root / "step_00000008" / "model.safetensors"
    damaged = target.read_bytes()[:-7]
    target.write_bytes(damaged)
    trainer, _, _ = make_trainer(tmp_path)
    trainer.fit(resume=True)
    assert files(tmp_path) == files(ref_dir)
    kept = [d for d in os.listdir(root) if d.startswith("step_00000008.corrupt")]
    assert kept and (root / kept[0] / "model.safetensors").read_bytes() == damaged


@pytest.mark.parametrize(("edit", "field"), [
    ({"data_position": None}, "data_position"),
    ({"data_position": 5}, "data_position"),
    ({"data_position": {"epoch": 1}}, "data_position"),
    ({"data_position": {"epoch": 1, "index": -2}}, "data_position"),
    ({"log_position": [1, 2]}, "log_position"),
    ({"log_position": {"jsonl": "10", "csv": 5}}, "log_position"),
    ({"config": []}, "config"),
    ({"callbacks": None}, "callbacks"),
    ({"step": "8"}, "step"),
    ({"step": -1}, "step"),
    ({"seed": 1.5}, "seed"),
    ({"format_version": 7}, "format_version"),
    ("remove data_position", "data_position"),
    ("remove step", "step"),
    ("remove config", "config"),
])
def test_hand_edited_meta_names_the_field(tmp_path, edit, field):
    root = _crashed_run(tmp_path)
    path = root / "step_00000008"
    meta = json.loads((path / "meta.json").read_text())
    if isinstance(edit, str):
        del meta[edit.split()[1]]
    else:
        meta.update(edit)
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"corrupt checkpoint file .*meta\.json"):
        verify_checkpoint(path)
    _rewrite_manifest_entry(path, "meta.json")  # a deliberate edit: the manifest agrees
    model, opt = _fresh()
    weights = flat_weights(model)
    with pytest.raises(CheckpointError, match=f"'{field}'"):
        load_checkpoint(path, model, opt, required=TRAINER_META_KEYS)
    assert all(np.array_equal(flat_weights(model)[k], v) for k, v in weights.items())
    with pytest.raises(CheckpointError, match=f"'{field}'"):
        make_trainer(tmp_path)[0].fit(resume=path)


def test_non_finite_weights_are_never_resumed_from(tmp_path):
    root = tmp_path / "checkpoints"
    model, opt = _fresh()
    save_checkpoint(str(root), 2, model, opt, {})
    good = flat_weights(model)
    weight = np.array(model.l2.weight)
    weight[1, 3] = np.nan
    model.l2.weight = mx.array(weight)
    save_checkpoint(str(root), 3, model, opt, {})
    other, other_opt = _fresh(hidden=16)
    before = flat_weights(other)
    with pytest.raises(CheckpointError, match=r"non-finite weights .*l2\.weight"):
        load_checkpoint(root / "step_00000003", other, other_opt)
    assert all(np.array_equal(flat_weights(other)[k], v) for k, v in before.items())
    path, bad = find_resumable(str(root))
    assert path == str(root / "step_00000002")
    assert "non-finite" in bad[0][1]
    load_checkpoint(path, other, other_opt)
    assert all(np.array_equal(flat_weights(other)[k], v) for k, v in good.items())


def test_non_finite_error_names_only_a_checkpoint_known_to_be_good():
    good = NonFiniteError(5, math.nan, 1.0, "ck/step_00000004")
    assert "last good checkpoint: ck/step_00000004" in str(good)
    assert good.checkpoint == "ck/step_00000004"
    unchecked = NonFiniteError(5, math.nan, 1.0, "ck/step_00000004", checkpoint_finite=False)
    assert "last good" not in str(unchecked) and unchecked.checkpoint is None
    assert "without checking" in str(unchecked)
    assert "no checkpoint saved" in str(NonFiniteError(5, math.nan, 1.0, None))


def test_prune_keeps_the_newest_intact_and_never_touches_quarantined(tmp_path):
    root = tmp_path / "checkpoints"
    model, opt = _fresh()
    for step in (1, 2, 3, 4):
        save_checkpoint(str(root), step, model, opt, {})
    for step in (3, 4):  # altered in place: listed (manifest present), but not intact
        target = root / f"step_{step:08d}" / "model.safetensors"
        data = bytearray(target.read_bytes())
        data[-1] ^= 0x01
        target.write_bytes(bytes(data))
    quarantined = quarantine(str(root / "step_00000001"))
    assert quarantined == str(root / "step_00000001.corrupt")
    (root / "step_00000009.tmp").mkdir()  # a killed save
    prune_checkpoints(str(root), 2)
    assert sorted(os.listdir(root)) == [
        "step_00000001.corrupt", "step_00000002", "step_00000003", "step_00000004"]
    prune_checkpoints(str(root), 1, intact=str(root / "step_00000002"))
    assert sorted(os.listdir(root)) == ["step_00000001.corrupt", "step_00000002",
                                        "step_00000004"]


def test_same_step_saved_again_replaces_an_intact_one_and_quarantines_a_bad_one(tmp_path):
    root = tmp_path / "checkpoints"
    model, opt = _fresh()
    first = save_checkpoint(str(root), 5, model, opt, {"run": 1})
    save_checkpoint(str(root), 5, model, opt, {"run": 2})
    assert sorted(os.listdir(root)) == ["step_00000005"]
    assert json.loads((root / "step_00000005" / "meta.json").read_text())["run"] == 2
    (root / "step_00000005" / "optimizer.safetensors").write_bytes(b"garbage")
    save_checkpoint(str(root), 5, model, opt, {"run": 3})
    (root / "step_00000005" / "model.safetensors").unlink()
    save_checkpoint(str(root), 5, model, opt, {"run": 4})
    assert sorted(os.listdir(root)) == [
        "step_00000005", "step_00000005.corrupt", "step_00000005.corrupt-2"]
    assert (root / "step_00000005.corrupt" / "optimizer.safetensors").read_bytes() == b"garbage"
    assert json.loads((root / "step_00000005.corrupt-2" / "meta.json").read_text())["run"] == 3
    verify_checkpoint(first)
    assert [s for s, _ in list_checkpoints(str(root))] == [5]


def test_find_resumable_can_quarantine_what_it_rejects(tmp_path):
    root = tmp_path / "checkpoints"
    model, opt = _fresh()
    for step in (1, 2):
        save_checkpoint(str(root), step, model, opt, {})
    (root / "step_00000002" / "manifest.json").write_text("{")
    (root / "step_00000003").mkdir()
    path, bad = find_resumable(str(root), quarantine_bad=True)
    assert path == str(root / "step_00000001")
    assert [p for p, _ in bad] == [str(root / "step_00000003.corrupt"),
                                   str(root / "step_00000002.corrupt")]
    assert "manifest.json" in bad[1][1] and "not valid JSON" in bad[1][1]
    assert sorted(os.listdir(root)) == [
        "step_00000001", "step_00000002.corrupt", "step_00000003.corrupt"]
    assert find_resumable(str(tmp_path / "nothing")) == (None, [])


def test_format_1_checkpoint_loads_unverified_with_a_warning(tmp_path):
    """A checkpoint as the previous version wrote it: no manifest, format_version 1."""
    from mlx.utils import tree_flatten

    model, opt = _fresh()
    path = tmp_path / "checkpoints" / "step_00000007"
    path.mkdir(parents=True)
    mx.save_safetensors(str(path / "model.safetensors"), dict(tree_flatten(model.parameters())))
    mx.save_safetensors(str(path / "optimizer.safetensors"), dict(tree_flatten(opt.state)))
    (path / "meta.json").write_text(json.dumps({"format_version": 1, "step": 7, "x": 1}))
    assert list_checkpoints(str(tmp_path / "checkpoints")) == [(7, str(path))]
    other, other_opt = _fresh(hidden=16)
    other.l1.weight = mx.zeros_like(other.l1.weight)
    with pytest.warns(UserWarning, match="format 1.*not verified"):
        meta = load_checkpoint(path, other, other_opt)
    assert meta == {"format_version": 1, "step": 7, "x": 1}
    np.testing.assert_array_equal(np.array(other.l1.weight), np.array(model.l1.weight))
    (path / "meta.json").write_text(json.dumps({"format_version": 2, "step": 7}))
    with pytest.raises(FileNotFoundError, match="manifest.json"):  # format 2 needs a manifest
        load_checkpoint(path, other, other_opt)
