"""Trackers: TensorBoard and MLflow files, read back with each tool's own reader, equal the log
(W&B's offline run is read back in tests/scripts/test_lora.py).

Every test compares the tracker's stored values against the trainer's ``log.jsonl`` (the
run's record of truth), for every step and every column, and checks each point is stored
once, also after a crash and a resume.
"""

from __future__ import annotations

import csv
import os
import sys

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np
import pytest
from helpers_trainer import MLP, classification_data, read_jsonl, xent

from trainers import ArrayBatches, Trainer, accuracy
from trainers.trackers import MLflow, TensorBoard, WandB

mlx_schedules = pytest.importorskip("mlx_schedules")

TOTAL = 10


class Crash(Exception):
    """Stands for a process killed in the middle of a run."""


def crash_at(step: int):
    """A callback that fails on the training row of ``step`` (after the trackers saw it)."""

    def callback(info: dict) -> None:
        if info["event"] == "train" and info["step"] == step:
            raise Crash(f"killed at step {step}")

    return callback


def make_trainer(run_dir, callbacks, seed: int = 0) -> Trainer:
    """A tiny classifier: scheduled rate and momentum, gradient norm, an accuracy metric."""
    x, y = classification_data(48, 6, seed=seed)
    mx.random.seed(seed)
    opt = optim.SGD(learning_rate=mlx_schedules.one_cycle(0.2, TOTAL), momentum=0.9)
    mlx_schedules.schedule_hyperparameters(opt, momentum=mlx_schedules.one_cycle_momentum(TOTAL))
    return Trainer(
        MLP(6, 8, 2), xent, opt, ArrayBatches((x, y), 8, seed=1), run_dir=run_dir,
        max_steps=TOTAL, eval_data=[(x[:24], y[:24]), (x[24:], y[24:])],
        metrics={"accuracy": accuracy}, eval_every=4, checkpoint_every=4, log_every=2,
        report_every=0, grad_norm=True, compile=False, callbacks=callbacks,
    )


def expected_points(run_dir) -> dict[str, dict[int, float]]:
    """``{column: {step: value}}`` from the run's log.jsonl: the values a tracker must hold."""
    points: dict[str, dict[int, float]] = {}
    for row in read_jsonl(os.path.join(run_dir, "log.jsonl")):
        for name, value in row.items():
            if name in ("kind", "step", "epoch") or value is None:
                continue
            assert row["step"] not in points.setdefault(name, {}), (name, row["step"])
            points[name][row["step"]] = value
    return points


def assert_same_points(stored: dict[str, list[tuple[int, float]]], run_dir,
                       precision: type = float) -> None:
    """Each column holds exactly the logged steps, once each, with the logged values.

    ``precision`` is the type the tracker stores (TensorBoard: float32, MLflow: float64): the
    stored value must be the logged one rounded to it, exactly.
    """
    expected = expected_points(run_dir)
    assert {"loss", "grad_norm", "learning_rate", "momentum", "eval_loss",
            "eval_accuracy"} <= set(expected)
    assert sorted(stored) == sorted(expected)
    for name, want in expected.items():
        steps = [step for step, _ in stored[name]]
        assert sorted(steps) == sorted(want), name  # every step, none twice
        for step, value in stored[name]:
            assert value == float(precision(want[step])), (name, step)


# ---------------------------------------------------------------------------- TensorBoard
def tensorboard_points(log_dir) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in ``log_dir`` as TensorBoard's own reader serves it."""
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator")
    acc = event_accumulator.EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.mark.slow
def test_tensorboard_holds_every_logged_value(tmp_path):
    pytest.importorskip("tensorboardX")
    run_dir = tmp_path / "run"
    make_trainer(run_dir, [TensorBoard()]).fit()  # log_dir None: <run_dir>/tensorboard
    assert_same_points(tensorboard_points(run_dir / "tensorboard"), run_dir, np.float32)
    rows = [r for r in read_jsonl(run_dir / "log.jsonl") if r["kind"] == "train"]
    assert [r["step"] for r in rows] == list(range(TOTAL))


@pytest.mark.slow
def test_tensorboard_after_crash_and_resume_holds_each_point_once(tmp_path):
    pytest.importorskip("tensorboardX")
    run_dir, log_dir = tmp_path / "run", tmp_path / "tb"
    crashed = TensorBoard(log_dir)
    # checkpoint and evaluation at step 4; rows 4 and 5 reach TensorBoard, then the crash
    with pytest.raises(Crash):
        make_trainer(run_dir, [crashed, crash_at(5)]).fit()
    crashed.close()  # what the writer's background flush would have written before the kill
    before = tensorboard_points(log_dir)
    assert sorted(s for s, _ in before["loss"]) == list(range(6))
    assert [s for s, _ in before["eval_loss"]] == [4]

    make_trainer(run_dir, [TensorBoard(log_dir)]).fit(resume=True)
    assert len(os.listdir(log_dir)) == 2  # one event file per session
    after = tensorboard_points(log_dir)
    assert_same_points(after, run_dir, np.float32)
    assert sorted(s for s, _ in after["eval_loss"]) == [4, 8, 10]  # eval 4 kept, not doubled

    make_trainer(run_dir, [TensorBoard(log_dir)]).fit(resume=True)  # finished: changes nothing
    assert tensorboard_points(log_dir) == after


@pytest.mark.slow
def test_tensorboard_fresh_start_replaces_an_old_run_in_the_same_directory(tmp_path):
    pytest.importorskip("tensorboardX")
    log_dir = tmp_path / "tb"
    make_trainer(tmp_path / "old", [TensorBoard(log_dir)], seed=1).fit()
    make_trainer(tmp_path / "new", [TensorBoard(log_dir)], seed=2).fit()
    assert_same_points(tensorboard_points(log_dir), tmp_path / "new", np.float32)


def test_tensorboard_writes_every_numeric_column(tmp_path):
    pytest.importorskip("tensorboardX")
    tb = TensorBoard(tmp_path, rank=0)
    tb({"event": "start", "step": 0, "resumed": False, "run_dir": None})
    tb({"event": "train", "step": 0, "epoch": 0, "loss": 1.5, "learning_rate/0": 0.25,
        "learning_rate/1": 0.125, "beta1/0": 0.875, "loss_scale": 1024})
    tb({"event": "eval", "step": 1, "epoch": 0, "eval_loss": 0.75, "ema_eval_loss": 0.5})
    tb({"event": "checkpoint", "step": 1, "path": str(tmp_path / "ckpt")})
    tb({"event": "end", "step": 1, "stopped_early": False})
    assert tensorboard_points(tmp_path) == {
        "loss": [(0, 1.5)], "learning_rate/0": [(0, 0.25)], "learning_rate/1": [(0, 0.125)],
        "beta1/0": [(0, 0.875)], "loss_scale": [(0, 1024.0)], "eval_loss": [(1, 0.75)],
        "ema_eval_loss": [(1, 0.5)],
    }


def test_trackers_on_other_ranks_write_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    trackers = [TensorBoard(tmp_path / "tb", rank=1),
                MLflow("x", tracking_uri=(tmp_path / "mlruns").as_uri(), rank=1),
                WandB("x", dir=tmp_path / "wandb", rank=1)]
    events = [{"event": "start", "step": 0, "resumed": False, "run_dir": str(tmp_path)},
              {"event": "train", "step": 0, "epoch": 0, "loss": 1.0, "learning_rate": 0.1},
              {"event": "eval", "step": 1, "epoch": 0, "eval_loss": 1.0},
              {"event": "checkpoint", "step": 1, "path": "x"},
              {"event": "end", "step": 1, "stopped_early": False}]
    for tracker in trackers:
        for event in events:
            tracker(event)
    assert os.listdir(tmp_path) == []


def test_missing_writer_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # makes the import fail
    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "wandb", None)
    start = {"event": "start", "step": 0, "resumed": False, "run_dir": str(tmp_path)}
    with pytest.raises(ImportError, match=r'pip install "mlx-schedules\[tensorboard\]"'):
        TensorBoard(tmp_path, rank=0)(start)
    with pytest.raises(ImportError, match=r'pip install "mlx-schedules\[mlflow\]"'):
        MLflow(rank=0)(start)
    with pytest.raises(ImportError, match=r'pip install "mlx-schedules\[wandb\]"'):
        WandB(rank=0)(start)


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="log_dir"):
        TensorBoard(3)
    with pytest.raises(ValueError, match="rank must be a non-negative int or None, got -1"):
        TensorBoard("tb", rank=-1)
    with pytest.raises(ValueError, match="flush_secs"):
        TensorBoard("tb", flush_secs=0)
    with pytest.raises(ValueError, match="experiment"):
        MLflow("")
    with pytest.raises(ValueError, match="batch_rows must be a positive int, got 0"):
        MLflow(batch_rows=0)
    with pytest.raises(TypeError, match="params must be a dict"):
        MLflow(params=[("a", 1)])
    with pytest.raises(TypeError, match="project must be a string or None"):
        WandB(3)
    with pytest.raises(TypeError, match="config must be a dict"):
        WandB("p", config=[1])
    with pytest.raises(ValueError, match="every must be a positive int, got 0"):
        WandB("p", every=0)


# ---------------------------------------------------------------------------- MLflow
def mlflow_points(uri: str, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """Every metric of the run as ``MlflowClient`` reads it from the store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    keys = client.get_run(run_id).data.metrics
    return {key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
            for key in keys}


@pytest.fixture
def mlflow_uri(tmp_path, monkeypatch):
    """A local MLflow store (the file store: fast to create; the SQLite one takes seconds)."""
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return (tmp_path / "mlruns").as_uri()


@pytest.mark.slow
def test_mlflow_holds_every_logged_value(tmp_path, mlflow_uri):
    from mlflow.tracking import MlflowClient

    tracker = MLflow("tiny", tracking_uri=mlflow_uri, params={"hidden": 8}, batch_rows=3)
    make_trainer(tmp_path / "run", [tracker]).fit()
    assert_same_points(mlflow_points(mlflow_uri, tracker.run_id), tmp_path / "run")
    run = MlflowClient(tracking_uri=mlflow_uri).get_run(tracker.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "run"
    assert run.data.params == {"hidden": "8"}
    assert run.data.tags["run_dir"] == str(tmp_path / "run")


@pytest.mark.slow
def test_mlflow_after_crash_and_resume_continues_the_run_once_per_step(tmp_path, mlflow_uri):
    from mlflow.tracking import MlflowClient

    crashed = MLflow("tiny", tracking_uri=mlflow_uri, batch_rows=1)  # rows 4, 5 sent
    with pytest.raises(Crash):
        make_trainer(tmp_path / "run", [crashed, crash_at(5)]).fit()
    before = mlflow_points(mlflow_uri, crashed.run_id)
    assert sorted(s for s, _ in before["loss"]) == list(range(6))

    resumed = MLflow("tiny", tracking_uri=mlflow_uri)  # the run id comes from the checkpoint
    make_trainer(tmp_path / "run", [resumed]).fit(resume=True)
    assert resumed.run_id == crashed.run_id
    assert_same_points(mlflow_points(mlflow_uri, resumed.run_id), tmp_path / "run")
    client = MlflowClient(tracking_uri=mlflow_uri)
    experiment = client.get_experiment_by_name("tiny")
    assert len(client.search_runs([experiment.experiment_id])) == 1
    assert client.get_run(resumed.run_id).info.status == "FINISHED"



@pytest.mark.slow
def test_mlflow_marks_a_ctrl_c_killed_and_the_resume_finishes_it(tmp_path, mlflow_uri):
    import signal

    from mlflow.tracking import MlflowClient

    from trainers import TrainingInterrupted

    def ctrl_c(info: dict) -> None:
        if info["event"] == "train" and info["step"] == 5:
            os.kill(os.getpid(), signal.SIGINT)

    stopped = MLflow("tiny", tracking_uri=mlflow_uri)
    with pytest.raises(TrainingInterrupted):
        make_trainer(tmp_path / "run", [stopped, ctrl_c]).fit()
    client = MlflowClient(tracking_uri=mlflow_uri)
    assert client.get_run(stopped.run_id).info.status == "KILLED"
    resumed = MLflow("tiny", tracking_uri=mlflow_uri)
    make_trainer(tmp_path / "run", [resumed]).fit(resume=True)
    assert resumed.run_id == stopped.run_id
    assert client.get_run(resumed.run_id).info.status == "FINISHED"
    assert_same_points(mlflow_points(mlflow_uri, resumed.run_id), tmp_path / "run")



# ---------------------------------------------------------------------------- your own
def test_the_csv_tracker_of_the_docs_holds_every_logged_value(tmp_path):
    """The user-written tracker shown in docs/TRACKERS.md, run as printed there."""
    docs = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "TRACKERS.md")
    with open(docs, encoding="utf-8") as f:
        blocks = f.read().split("```python\n")
    code = next(b.split("```")[0] for b in blocks if "class CSVTracker" in b)
    code = code.split("\nTrainer(")[0]  # the class, without the usage line
    namespace: dict = {}
    exec(code, namespace)
    run_dir, path = tmp_path / "run", tmp_path / "values.csv"
    tracker = namespace["CSVTracker"](str(path))
    make_trainer(run_dir, [tracker]).fit()
    tracker.file.close()
    stored: dict[str, list[tuple[int, float]]] = {}
    with open(path, encoding="utf-8") as f:
        for step, name, value in csv.reader(f):
            stored.setdefault(name, []).append((int(step), float(value)))
    assert_same_points(stored, run_dir)


@pytest.mark.slow
def test_mlflow_fresh_starts_are_new_runs(tmp_path, mlflow_uri):
    from mlflow.tracking import MlflowClient

    tracker = MLflow("tiny", tracking_uri=mlflow_uri)
    make_trainer(tmp_path / "run", [tracker], seed=1).fit()
    first = tracker.run_id
    make_trainer(tmp_path / "run", [tracker], seed=2).fit(overwrite=True)
    assert tracker.run_id != first
    assert_same_points(mlflow_points(mlflow_uri, tracker.run_id), tmp_path / "run")
    experiment = MlflowClient(tracking_uri=mlflow_uri).get_experiment_by_name("tiny")
    assert len(MlflowClient(tracking_uri=mlflow_uri).search_runs([experiment.experiment_id])) == 2


def test_every_keeps_the_multiples_and_every_evaluation(tmp_path, mlflow_uri):
    pytest.importorskip("tensorboardX")
    trackers = [TensorBoard(tmp_path / "tb", rank=0, every=3),
                MLflow("x", tracking_uri=mlflow_uri, rank=0, every=3)]
    events = [{"event": "start", "step": 0, "resumed": False, "run_dir": str(tmp_path)}]
    for step in range(8):
        events.append({"event": "train", "step": step, "epoch": 0, "loss": step / 8})
        if step % 5 == 4:
            events.append({"event": "eval", "step": step + 1, "epoch": 0, "eval_loss": step / 4})
    events.append({"event": "end", "step": 8, "stopped_early": False})
    for tracker in trackers:
        for event in events:
            tracker(dict(event))
    want = {"loss": [(0, 0.0), (3, 0.375), (6, 0.75)], "eval_loss": [(5, 1.0)]}
    assert tensorboard_points(tmp_path / "tb") == want
    assert mlflow_points(mlflow_uri, trackers[1].run_id) == want
    with pytest.raises(ValueError, match="every must be a positive int, got 0"):
        TensorBoard(tmp_path, every=0)


def test_wandb_resuming_a_finished_run_starts_no_new_run(tmp_path, monkeypatch):
    """A stand-in for the wandb module records what the tracker asks of it: the run logs
    every row at its step and finishes; resuming the finished run starts nothing."""
    import types

    calls = []

    class FakeRun:
        id, step = "abc123", 0

        def log(self, values, step):
            calls.append(("log", step, values["loss"]) if "loss" in values else ("eval", step))
            FakeRun.step = step

        def finish(self):
            calls.append(("finish",))

    def init(**kwargs):
        calls.append(("init", kwargs["id"], kwargs["resume"]))
        return FakeRun()

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    run_dir = tmp_path / "run"
    make_trainer(run_dir, [WandB("p", rank=0)]).fit()
    train_steps = [c[1] for c in calls if c[0] == "log"]
    expected = sorted(expected_points(run_dir)["loss"])
    assert calls[0] == ("init", None, None) and calls[-1] == ("finish",)
    assert train_steps == expected
    calls.clear()
    make_trainer(run_dir, [WandB("p", rank=0)]).fit(resume=True)  # finished: changes nothing
    assert calls == []
