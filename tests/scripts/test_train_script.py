"""scripts/train.py and scripts/lr_range_test.py end to end on tiny settings, and bad configs."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers_scripts import SCRIPTS, assert_png, load_script

import mlx_schedules as ms


def train_rows(run_dir) -> list[dict]:
    with open(os.path.join(run_dir, "log.csv"), newline="") as f:
        return [row for row in csv.DictReader(f) if row["kind"] == "train"]


train = load_script("train")
range_script = load_script("lr_range_test")
TINY = ["--set", "model.hidden=[16]", "--set", "training.eval_every=10",
        "--set", "training.checkpoint_every=10", "--set", "training.log_every=10"]


@pytest.mark.slow
def test_tiny_run_writes_everything_and_logs_the_schedule(tmp_path):
    run = tmp_path / "run"
    assert train.main(["--steps", "20", "--run-dir", str(run), "--max-lr", "0.2", *TINY]) == 0
    for name in ("experiment.json", "config.json", "log.jsonl", "log.csv", "summary.json"):
        assert (run / name).is_file(), name
    assert sorted(os.listdir(run / "checkpoints")) == ["step_00000010", "step_00000020"]
    assert_png(str(run / "curves.png"))

    rows = train_rows(run)
    assert [int(r["step"]) for r in rows] == list(range(20))  # one row per step
    optimizer = json.loads((run / "experiment.json").read_text())["optimizer"]
    assert optimizer["learning_rate"] == {"name": "one_cycle", "max_lr": 0.2, "total_steps": 20}
    rate = ms.from_config(optimizer["learning_rate"]).values(20)
    momentum = ms.from_config(optimizer["momentum"]).values(20)
    np.testing.assert_allclose([float(r["learning_rate"]) for r in rows], rate, rtol=1e-6)
    np.testing.assert_allclose([float(r["momentum"]) for r in rows], momentum, rtol=1e-6)

    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 20 and 0 <= summary["final_accuracy"] <= 1
    assert summary["best_accuracy"] >= summary["final_accuracy"]


def eval_rows(run_dir) -> list[dict]:
    with open(os.path.join(run_dir, "log.csv"), newline="") as f:
        return [row for row in csv.DictReader(f) if row["kind"] == "eval"]


@pytest.mark.slow
@pytest.mark.parametrize("stop", [7, 10])  # inside a log/eval/checkpoint block, and on its end
def test_resume_continues_a_stopped_run_exactly(tmp_path, stop):
    whole, split = tmp_path / "whole", tmp_path / "split"
    args = ["--steps", "20", "--no-plots", *TINY]
    assert train.main([*args, "--run-dir", str(whole)]) == 0
    assert train.main([*args, "--run-dir", str(split), "--stop-after", str(stop)]) == 0
    # Stopped after exactly `stop` updates: rows 0..stop-1, evaluated and checkpointed there.
    assert [int(r["step"]) for r in train_rows(split)] == list(range(stop))
    assert int(eval_rows(split)[-1]["step"]) == stop
    assert f"step_{stop:08d}" in os.listdir(split / "checkpoints")
    assert json.loads((split / "summary.json").read_text())["stopped_at"] == stop

    assert train.main(["--resume", str(split)]) == 0
    assert train_rows(split) == train_rows(whole)
    # The log keeps the stop's evaluation; otherwise the evaluations are the same.
    extra = [] if stop % 10 == 0 else [r for r in eval_rows(split) if int(r["step"]) == stop]
    assert [r for r in eval_rows(split) if r not in extra] == eval_rows(whole)
    assert len(extra) == (0 if stop % 10 == 0 else 1)
    # Same final weights, same summary (apart from timing).
    final = os.path.join("checkpoints", "step_00000020", "model.safetensors")
    assert (split / final).read_bytes() == (whole / final).read_bytes()
    summaries = [json.loads((d / "summary.json").read_text()) for d in (split, whole)]
    for s in summaries:
        del s["wall_time_s"]
    assert summaries[0] == summaries[1]


def test_stop_after_must_be_ahead_of_the_run(tmp_path, capsys, no_training):
    assert train.main(["--run-dir", str(tmp_path / "run"), "--stop-after", "0"]) == 2
    assert "--stop-after 0" in capsys.readouterr().err


@pytest.mark.slow
def test_config_file_with_adamw_and_scheduled_beta1_and_weight_decay(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    data = tmp_path / "toy.npz"
    np.savez(data, x_train=x[:64], y_train=y[:64], x_test=x[64:], y_test=y[64:])
    config = {
        "dataset": {"name": "npz", "path": str(data)},
        "model": {"kind": "mlp", "hidden": [8], "dropout": 0.1, "norm": "layer"},
        "optimizer": {"name": "AdamW",
                      "learning_rate": {"name": "warmup", "steps": 4,
                                        "schedule": {"name": "cosine_decay", "init": 0.01,
                                                     "decay_steps": 8}},
                      "beta1": {"name": "linear_schedule", "init": 0.95, "end": 0.85,
                                "steps": 12},
                      "weight_decay": {"name": "exponential_decay", "init": 0.01,
                                       "decay_rate": 0.9}},
        "training": {"steps": 12, "batch_size": 16, "eval_every": 6, "checkpoint_every": None},
        "output": {"run_dir": str(tmp_path / "run"), "plots": False},
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    assert train.main(["--config", str(path)]) == 0
    rows = train_rows(tmp_path / "run")
    assert len(rows) == 12
    for column in ("learning_rate", "beta1", "weight_decay"):
        expected = ms.from_config(config["optimizer"][column]).values(12)
        np.testing.assert_allclose([float(r[column]) for r in rows], expected, rtol=1e-6)


@pytest.mark.slow
def test_range_test_suggests_a_rate_train_can_take(tmp_path, capsys):
    out = tmp_path / "rt"
    assert range_script.main(["--run-dir", str(out), "--sweep-steps", "40", "--min-lr", "1e-3",
                              "--max-lr", "30", "--set", "model.hidden=[16]"]) == 0
    result = json.loads((out / "range_test.json").read_text())
    assert_png(str(out / "range_test.png"))
    assert "suggested max_lr" in capsys.readouterr().out
    sweep = ms.lr_range_test(1e-3, 30.0, 40).values(len(result["learning_rates"]))
    np.testing.assert_allclose(result["learning_rates"], sweep, rtol=1e-6)
    assert result["suggested_lr"] == result["suggestions_by_schedule"]["one_cycle"]
    assert result["suggestions"]["minimum/10"] == pytest.approx(result["min_loss_lr"] / 10)

    run = tmp_path / "run"
    assert train.main(["--schedule", "cosine", "--max-lr-from", str(out / "range_test.json"),
                       "--steps", "10", "--run-dir", str(run), "--no-plots", *TINY]) == 0
    rate = json.loads((run / "experiment.json").read_text())["optimizer"]["learning_rate"]
    # --max-lr-from takes the peak suggested for the family trained (cosine), not 1-cycle's
    assert rate["init"] == result["suggestions_by_schedule"]["cosine"]
    assert rate["init"] == pytest.approx(result["min_loss_lr"] / 5, rel=1e-12)


# ---------------------------------------------------------------- bad input, before training
@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if any training starts."""
    import trainers.experiments.run

    def refuse(*args, **kwargs):
        raise AssertionError("training started despite a bad config")

    monkeypatch.setattr(trainers.experiments.run, "run_training", refuse)
    monkeypatch.setattr(train, "run_training", refuse)


def _bad(tmp_path, capsys, config: dict, *extra: str) -> str:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(config))
    run = tmp_path / "run"
    assert train.main(["--config", str(path), "--run-dir", str(run), *extra]) == 2
    assert not run.exists()
    return capsys.readouterr().err


@pytest.mark.parametrize("config, field, words", [
    ({"optimizer": {"name": "SGD", "learning_rate": {"name": "one_cycel", "max_lr": 0.1}}},
     "optimizer.learning_rate", "unknown schedule 'one_cycel'"),
    ({"optimizer": {"name": "SGD", "learning_rate": {"name": "one_cycle", "max_lr": 0.1}}},
     "optimizer.learning_rate", "total_steps"),
    ({"optimizer": {"name": "Adamm", "learning_rate": 0.1}}, "optimizer.name",
     "must be one of ['AdaDelta', "),
    ({"optimizer": {"name": "Adam", "learning_rate": 0.1,
                    "momentum": {"name": "constant", "value": 0.9}}},
     "optimizer.momentum", "Adam has no such setting"),
    ({"optimizer": {"name": "SGD", "learning_rate": "fast"}}, "optimizer.learning_rate",
     "must be a real number, got 'fast' (str) (or a schedule config)"),
    ({"training": {"steps": "100"}}, "training.steps", "must be an integer, got '100'"),
    ({"training": {"batch_size": 0}}, "training.batch_size", "must be a positive integer, got 0"),
    ({"model": {"kind": "transformer"}}, "model.kind",
     "must be one of ['mlp', 'cnn'], got 'transformer'"),
    ({"model": {"dropout": "0.1"}}, "model.dropout", "must be a real number, got '0.1'"),
    ({"dataset": {"name": "npz", "path": "/nonexistent/data.npz"}}, "dataset.path",
     "file not found"),
    ({"trainig": {"steps": 10}}, "trainig", "unknown field"),
    ({"training": {"compile": "yes"}}, "training.compile", "must be 'auto', true or false"),
    ({"model": {"hidden": [16, 0]}}, "model.hidden[1]", "must be a positive integer, got 0"),
    ({"model": {"norm": "group"}}, "model.norm", "must be one of ['batch', 'layer']"),
    # Beyond what float32 and int64 hold (issue 7, finding 12).
    ({"training": {"clip_norm": 1e39}}, "training.clip_norm", "representable in float32"),
    ({"optimizer": {"name": "SGD", "learning_rate": 1e39}}, "optimizer.learning_rate",
     "representable in float32"),
    ({"optimizer": {"name": "SGD", "learning_rate": 0.1, "momentum": -1e300}},
     "optimizer.momentum", "representable in float32"),
    ({"optimizer": {"name": "Adam", "learning_rate": 0.1, "betas": [0.9, 1e40]}},
     "optimizer.betas[1]", "representable in float32"),
    ({"optimizer": {"name": "SGD", "learning_rate": {"name": "constant", "value": 1e39}}},
     "optimizer.learning_rate.value", "representable in float32"),
    ({"optimizer": {"name": "SGD", "learning_rate": {
        "name": "warmup", "steps": 5, "schedule": {"name": "constant", "value": 3.5e38}}}},
     "optimizer.learning_rate.schedule.value", "representable in float32"),
    ({"training": {"steps": 2**63}}, "training.steps", "must be <= 2**62"),
    ({"training": {"seed": 2**64 - 1}}, "training.seed", "must be <= 2**62"),
])
def test_bad_config_names_the_field_before_training(tmp_path, capsys, no_training, config,
                                                    field, words):
    err = _bad(tmp_path, capsys, config)
    assert f"config error: {field}" in err and words in err


@pytest.mark.parametrize("dataset, flag_name, archive", [
    ("mnist", "dataset", "train-images-idx3-ubyte.gz"),
    ("cifar10", "flags", "cifar-10-binary.tar.gz"),
])
def test_uncached_dataset_is_a_clear_message(tmp_path, capsys, no_training, dataset,
                                             flag_name, archive):
    if flag_name == "dataset":
        err = _bad(tmp_path, capsys, {"dataset": {"name": dataset, "cache_dir": str(tmp_path)}})
    else:
        err = _bad(tmp_path, capsys, {}, "--dataset", dataset, "--cache-dir", str(tmp_path))
    assert f"dataset.name: '{dataset}' is not in the cache" in err
    assert str(tmp_path / dataset) in err and "never download" in err and archive in err
    assert f"mlx-schedules download {dataset} --cache-dir {tmp_path}" in err


def test_yaml_without_pyyaml_or_bad_json_is_reported(tmp_path, capsys, no_training):
    path = tmp_path / "c.json"
    path.write_text("{not json")
    assert train.main(["--config", str(path)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    try:
        import yaml  # noqa: F401
    except ImportError:
        path = tmp_path / "c.yaml"
        path.write_text("training: {steps: 10}\n")
        assert train.main(["--config", str(path)]) == 2
        assert "pyyaml" in capsys.readouterr().err


def test_yaml_syntax_error_is_a_config_error(tmp_path, capsys, no_training):
    pytest.importorskip("yaml", reason="YAML configs need pyyaml (the 'yaml' extra)")
    path = tmp_path / "c.yaml"
    path.write_text("training: {steps: 10\nmodel: [\n")
    run = tmp_path / "run"
    assert train.main(["--config", str(path), "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"config error: {path}: not valid YAML" in err and "line" in err
    assert not run.exists()


def test_a_users_file_named_like_a_run_file_is_refused_and_kept(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.jsonl").write_text("mine")  # the user's, not a trainer's log
    assert train.main(["--run-dir", str(run), "--steps", "10"]) == 2
    err = capsys.readouterr().err
    assert "did not write" in err and "(log.jsonl)" in err and "=True" not in err
    assert sorted(os.listdir(run)) == ["log.jsonl"]  # nothing written beside it
    assert (run / "log.jsonl").read_text() == "mine"


def _tree(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("refusal", ["occupied", "checkpoints without a log", "locked"])
def test_a_refused_run_dir_is_left_as_it_was_and_resumable(tmp_path, capsys, monkeypatch,
                                                           refusal):
    """Issue 7, finding 2: train.py rewrote experiment.json before the trainer refused the run
    directory (its own check looked for log.jsonl only, and a lock is the trainer's to take);
    the first run could then no longer be resumed as it was configured."""
    run = tmp_path / "run"
    args = ["--no-plots", *TINY, "--run-dir", str(run)]
    assert train.main(["--steps", "20", "--stop-after", "10", *args]) == 0
    second = ["--steps", "30", "--schedule", "cosine", *args]
    if refusal == "checkpoints without a log":
        (run / "log.jsonl").unlink()
        (run / "log.csv").unlink()
        words = "already holds a run"
    elif refusal == "locked":
        import trainers

        def locked(self, *args, **kwargs):  # what the trainer's run-directory lock raises
            raise RuntimeError(f"run directory {run} is in use by process 4242")

        monkeypatch.setattr(trainers.Trainer, "fit", locked)
        second.append("--overwrite")  # even overwriting waits for the owner
        words = "in use by process 4242"
    else:
        words = "already holds a run"
    before = _tree(run)
    capsys.readouterr()
    assert train.main(second) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    assert _tree(run) == before  # not one byte changed
    if refusal != "checkpoints without a log":
        monkeypatch.undo()
        assert train.main(["--resume", str(run)]) == 0
        assert json.loads((run / "experiment.json").read_text())["training"]["steps"] == 20
        assert [int(r["step"]) for r in train_rows(run)] == list(range(20))


def test_a_fresh_run_dir_refused_before_training_is_removed_again(tmp_path, capsys,
                                                                 monkeypatch):
    import trainers

    run = tmp_path / "new" / "run"

    def refuse(self, *args, **kwargs):  # the trainer made its folders, then refused
        os.makedirs(run / "checkpoints")
        raise ValueError(f"run directory {run!r} is not writable: disk full")

    monkeypatch.setattr(trainers.Trainer, "fit", refuse)
    assert train.main(["--steps", "10", "--run-dir", str(run)]) == 2
    assert "is not writable: disk full" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()  # every folder the run made is gone again


def test_experiment_json_symlink_is_refused_not_written_through(tmp_path, capsys):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    run = tmp_path / "run"
    run.mkdir()
    os.symlink(outside, run / "experiment.json")
    assert train.main(["--steps", "10", "--no-plots", *TINY, "--run-dir", str(run)]) == 2
    assert outside.read_text() == "keep me"
    assert (run / "experiment.json").is_symlink()  # the user's link is left as it was
    assert "experiment.json: it is a symbolic link" in capsys.readouterr().err


# ---------------------------------------------------------------- bad data, after validation
def _npz(path, **changes):
    """A small valid dataset (3 classes of 4-feature rows), with some arrays replaced."""
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.normal(size=(24, 4)), "y_train": np.arange(24) % 3,
              "x_test": rng.normal(size=(9, 4)), "y_test": np.arange(9) % 3}
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


@pytest.mark.parametrize("changes, extra, words", [
    ({"x_test": None}, [], "dataset.path: "),  # missing: named with the arrays it has
    ({"x_train": np.arange(24.0)}, [], "x_train has shape (24,)"),
    ({"y_train": np.array(list("abc") * 8)}, [], "y_train must be integer class indices"),
    ({"y_train": (np.arange(24) % 3) + 0.5}, [], "y_train must be integer class indices, "
     "got dtype float64"),
    ({"y_test": np.array([0, 1, -1, 2, 0, 1, 2, 0, 1])}, [], "y_test[2] is -1"),
    ({"x_test": np.zeros((0, 4)), "y_test": np.zeros(0, np.int64)}, [], "x_test is empty"),
    ({"x_train": np.full((24, 4), np.nan)}, [], "x_train[0] holds a NaN"),
    ({"y_train": np.arange(23) % 3}, [], "x_train has 24 samples, y_train 23"),
    ({"x_train": np.array([object()] * 24)}, [], "cannot read"),  # refused, not unpickled
    ({}, ["--batch-size", "25"], "training.batch_size: 25 is more than the 24 training"),
    ({}, ["--set", "dataset.limit_train=8", "--batch-size", "9"], "more than the 8 training"),
])
def test_bad_data_exits_2_naming_the_problem_and_leaves_nothing(tmp_path, capsys, no_training,
                                                                changes, extra, words):
    """Issue 7, findings 9 and 12: data problems found after the config passed exited 1 with a
    traceback (or trained on truncated float labels, or on negative ones) and left a
    half-made run directory."""
    if "x_train" in changes and changes["x_train"] is not None \
            and changes["x_train"].dtype == object:
        path = tmp_path / "data.npz"
        np.savez(path, x_train=changes["x_train"], y_train=np.arange(24) % 3,
                 x_test=np.zeros((9, 4)), y_test=np.arange(9) % 3, allow_pickle=True)
    else:
        path = _npz(tmp_path / "data.npz", **changes)
    run = tmp_path / "run"
    assert train.main(["--data-path", str(path), "--run-dir", str(run), *extra]) == 2
    err = capsys.readouterr().err
    assert "data error: " in err and words in err and "Traceback" not in err
    assert not run.exists()


def test_float_labels_holding_whole_numbers_are_refused_too(tmp_path, capsys, no_training):
    path = _npz(tmp_path / "data.npz", y_train=(np.arange(24) % 3).astype(np.float32))
    assert train.main(["--data-path", str(path), "--run-dir", str(tmp_path / "run")]) == 2
    assert "refusing to truncate" in capsys.readouterr().err


def test_a_model_too_large_for_memory_is_refused_before_allocation(tmp_path):
    """Issue 7, finding 12: a config with huge hidden sizes segfaulted while allocating.
    Run as a user would (a separate process), since the old behaviour kills the process."""
    run = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, os.path.join(SCRIPTS, "train.py"), "--run-dir", str(run),
         "--set", "model.hidden=[100000000, 100000000]"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "data error: model.hidden: the model needs about 160 PB to train" in result.stderr
    assert "the largest part is model.hidden[0] x model.hidden[1] (100000000 x 100000000)" \
        in result.stderr
    assert not run.exists()


def test_example_configs_are_valid():
    from trainers.experiments.config import (
        DEFAULT_CONFIG,
        ConfigError,
        load_config_file,
        merge_config,
        validate,
    )

    root = os.path.join(os.path.dirname(SCRIPTS), "configs")
    names = sorted(n for n in os.listdir(root) if n.endswith(".json"))
    assert names
    for name in names:
        config = merge_config(DEFAULT_CONFIG, load_config_file(os.path.join(root, name)))
        if config["dataset"]["name"] in ("digits", "npz"):
            validate(config)
        else:  # MNIST etc. validate only where their archives are in the cache
            try:
                validate(config)
            except ConfigError as e:
                assert "not in the cache" in str(e)


def test_yaml_config_reads_the_same_as_json(tmp_path):
    pytest.importorskip("yaml", reason="YAML configs need pyyaml (the 'yaml' extra)")
    from trainers.experiments.config import load_config_file

    config = {"training": {"steps": 12, "batch_size": 16},
              "optimizer": {"name": "SGD", "momentum": 0.9,
                            "learning_rate": {"name": "one_cycle", "max_lr": 0.1,
                                              "total_steps": 12}}}
    (tmp_path / "c.json").write_text(json.dumps(config))
    (tmp_path / "c.yaml").write_text(
        "training: {steps: 12, batch_size: 16}\n"
        "optimizer:\n  name: SGD\n  momentum: 0.9\n"
        "  learning_rate: {name: one_cycle, max_lr: 0.1, total_steps: 12}\n")
    assert load_config_file(tmp_path / "c.yaml") == load_config_file(tmp_path / "c.json")
    assert load_config_file(tmp_path / "c.yaml") == config
