"""scripts/train.py and scripts/lr_range_test.py end to end on tiny settings, and bad configs."""

from __future__ import annotations

import csv
import json
import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.image  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from helpers_scripts import SCRIPTS, assert_png, load_script  # noqa: E402

import mlx_schedules as ms  # noqa: E402


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
    assert result["suggested_lr"] == pytest.approx(result["min_loss_lr"] / 10)

    run = tmp_path / "run"
    assert train.main(["--schedule", "cosine", "--max-lr-from", str(out / "range_test.json"),
                       "--steps", "10", "--run-dir", str(run), "--no-plots", *TINY]) == 0
    rate = json.loads((run / "experiment.json").read_text())["optimizer"]["learning_rate"]
    assert rate["init"] == result["suggested_lr"]


# ---------------------------------------------------------------- bad input, before training
@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if any training starts."""
    import experiments.run

    def refuse(*args, **kwargs):
        raise AssertionError("training started despite a bad config")

    monkeypatch.setattr(experiments.run, "run_training", refuse)
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
     "unknown optimizer 'Adamm'"),
    ({"optimizer": {"name": "Adam", "learning_rate": 0.1,
                    "momentum": {"name": "constant", "value": 0.9}}},
     "optimizer.momentum", "Adam has no such setting"),
    ({"optimizer": {"name": "SGD", "learning_rate": "fast"}}, "optimizer.learning_rate",
     "expected a number"),
    ({"training": {"steps": "100"}}, "training.steps", "expected an integer"),
    ({"training": {"batch_size": 0}}, "training.batch_size", "expected an integer >= 1"),
    ({"model": {"kind": "transformer"}}, "model.kind", "unknown model"),
    ({"model": {"dropout": "0.1"}}, "model.dropout", "expected a number"),
    ({"dataset": {"name": "npz", "path": "/nonexistent/data.npz"}}, "dataset.path",
     "file not found"),
    ({"trainig": {"steps": 10}}, "trainig", "unknown field"),
])
def test_bad_config_names_the_field_before_training(tmp_path, capsys, no_training, config,
                                                    field, words):
    err = _bad(tmp_path, capsys, config)
    assert f"config error: {field}" in err and words in err


def test_uncached_mlx_data_dataset_is_a_clear_message(tmp_path, capsys, no_training):
    err = _bad(tmp_path, capsys, {"dataset": {"name": "mnist", "cache_dir": str(tmp_path)}})
    assert "dataset.name: 'mnist' is not in the mlx.data cache" in err
    assert str(tmp_path / "mnist") in err and "never download" in err
    err = _bad(tmp_path, capsys, {}, "--dataset", "cifar10", "--cache-dir", str(tmp_path))
    assert "'cifar10' is not in the mlx.data cache" in err and "cifar10_train.pkl" in err


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


def test_occupied_run_dir_needs_overwrite_or_resume(tmp_path, capsys, no_training):
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.jsonl").write_text("")
    assert train.main(["--run-dir", str(run), "--steps", "10"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_example_configs_are_valid():
    from experiments.config import (
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
        else:  # MNIST etc. validate only where mlx.data's cache holds them
            try:
                validate(config)
            except ConfigError as e:
                assert "not in the mlx.data cache" in str(e)


def test_yaml_config_reads_the_same_as_json(tmp_path):
    pytest.importorskip("yaml", reason="YAML configs need pyyaml (the 'yaml' extra)")
    from experiments.config import load_config_file

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
