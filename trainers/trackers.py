"""Experiment trackers: TensorBoard, MLflow and Weights & Biases as plain trainer callbacks.

Each tracker is a callable taking the trainer's event dicts (see :mod:`trainers.callbacks`):
it writes the numeric values of every ``train`` row (``loss``, ``grad_norm``,
``learning_rate`` and every other scheduled hyperparameter, per-group columns such as
``learning_rate/0``) and of every ``eval`` row (``eval_loss``, ``eval_<metric>``,
``ema_eval_<metric>``) under their column names, at the row's ``step``. ``step`` and
``epoch`` are the x axis and are not written as values.

Only the main process writes: callbacks run on every rank of a data-parallel run, and a
tracker whose ``rank`` is not 0 does nothing (``rank=None`` asks
``mx.distributed.init().rank()`` at the first event).

The writers are optional dependencies, imported when the first event arrives:
``pip install "mlx-schedules[tensorboard]"`` (tensorboardX) and
``pip install "mlx-schedules[mlflow]"`` (mlflow-skinny with its SQLite store) and
``pip install "mlx-schedules[wandb]"`` (wandb).
"""

from __future__ import annotations

import importlib
import numbers
import os
import time
from typing import Any

__all__ = ["MLflow", "TensorBoard", "WandB", "numeric_values"]

_AXES = ("event", "step", "epoch")


def numeric_values(info: dict) -> dict[str, float]:
    """The values a tracker writes from an event: every real number except the step and epoch.

    Booleans (``resumed``, ``stopped_early``) and strings (``path``, ``run_dir``) are left out.

    Example:
        >>> numeric_values({"event": "train", "step": 3, "epoch": 0, "loss": 0.5,
        ...                 "learning_rate/0": 0.1, "note": "x", "flag": True})
        {'loss': 0.5, 'learning_rate/0': 0.1}
    """
    return {key: float(value) for key, value in info.items()
            if key not in _AXES and _is_number(value)}


def _is_number(value: Any) -> bool:
    kind = type(value)
    if kind is float or kind is int:  # the trainer's values; the ABC check costs more
        return True
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_rank(rank: int | None) -> int | None:
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 0):
        raise ValueError(f"rank must be a non-negative int or None, got {rank!r}")
    return rank


def _check_every(every: int) -> int:
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be a positive int, got {every!r}")
    return every


def _process_rank() -> int:
    """This process's rank in ``mx.distributed.init()`` (0 when not launched distributed)."""
    import mlx.core as mx

    if not mx.distributed.is_available():
        return 0
    return mx.distributed.init().rank()


def _import_optional(module: str, extra: str, what: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(
            f"{what} needs the optional dependency {module!r}, which is not installed: "
            f'pip install "mlx-schedules[{extra}]"'
        ) from e


class _Tracker:
    """What every tracker does before it writes: only rank 0 writes (``rank``, read from
    ``mx.distributed`` at the first event when ``None``), a resume of a run that had finished
    writes nothing, and ``train`` rows are sent every ``every`` steps. Subclasses implement
    :meth:`_on_start` (a ``start`` event of a run that continues) and :meth:`_on_event`
    (every later event)."""

    rank: int | None
    every: int
    _idle: bool = False  # a finished run's events: nothing is written

    def __call__(self, info: dict) -> None:
        if self.rank is None:
            self.rank = _process_rank()
        if self.rank != 0:
            return
        event = info.get("event")
        if event == "start":
            self._idle = bool(info.get("finished"))  # a finished run: nothing to add
            if not self._idle:
                self._on_start(info)
        elif not self._idle:
            self._on_event(event, info)

    def _due(self, event: Any, info: dict) -> bool:
        """An evaluation, or a training row at the ``every`` cadence."""
        return event == "eval" or (event == "train" and info["step"] % self.every == 0)

    def _on_start(self, info: dict) -> None:
        raise NotImplementedError

    def _on_event(self, event: Any, info: dict) -> None:
        raise NotImplementedError


class TensorBoard(_Tracker):
    """Write training columns and eval metrics as TensorBoard scalars (via tensorboardX).

    Every numeric value of a ``train`` or ``eval`` event becomes the scalar of the same name
    (``loss``, ``learning_rate``, ``momentum``, ``learning_rate/0``, ``eval_accuracy``...)
    at global step = the row's ``step``. The event file is flushed after every evaluation,
    checkpoint and at the end, and closed at the end (call :meth:`close` yourself if the run
    may end without an ``end`` event, e.g. on an exception).

    **Resume.** Resuming a run that had finished writes nothing (no new event file). Each
    other ``start`` event opens a new event file that begins with a restart marker
    at the start step (tensorboardX's ``purge_step``): TensorBoard's reader then discards
    every point written earlier at that step or later, so the rows a crashed run logged
    after its last checkpoint, which the resumed run logs again, appear once. A fresh start
    marks step 0, which replaces any old run left in ``log_dir``. The evaluation at the
    checkpoint's own step is not repeated by a resume, so the tracker saves it with the
    checkpoint (``state_dict``) and writes it again after the marker.

    Args:
        log_dir: the directory for event files; ``None`` uses ``<run_dir>/tensorboard``
            (deleted with the run by ``fit(overwrite=True)``).
        rank: this process's rank; only rank 0 writes. ``None`` reads
            ``mx.distributed.init().rank()`` at the first event.
        flush_secs: the writer also flushes in the background this often.
        every: write the training rows whose step is a multiple of this (evaluations
            always): the lever for very fast steps, where a row's ~0.1 ms counts.

    Raises:
        ImportError: tensorboardX is missing (``pip install "mlx-schedules[tensorboard]"``).

    Example:
        >>> import tempfile
        >>> tb = TensorBoard(tempfile.mkdtemp())
        >>> tb({"event": "start", "step": 0, "resumed": False, "run_dir": None})
        >>> tb({"event": "train", "step": 0, "epoch": 0, "loss": 0.7, "learning_rate": 0.1})
        >>> tb({"event": "end", "step": 1, "stopped_early": False})
    """

    def __init__(self, log_dir: str | os.PathLike | None = None, *, rank: int | None = None,
                 flush_secs: float = 30.0, every: int = 1):
        if log_dir is not None and not isinstance(log_dir, (str, os.PathLike)):
            raise TypeError(f"log_dir must be a path or None, got {type(log_dir).__name__}")
        if not (isinstance(flush_secs, numbers.Real) and flush_secs > 0):
            raise ValueError(f"flush_secs must be a positive number, got {flush_secs!r}")
        self.log_dir: str | None = None if log_dir is None else os.fspath(log_dir)
        self.rank: int | None = _check_rank(rank)
        self.flush_secs: float = flush_secs
        self.every: int = _check_every(every)
        self._writer: Any = None
        self._summary: Any = None
        self._last_eval: dict[str, Any] | None = None
        self._restored_eval: dict[str, Any] | None = None

    def _on_start(self, info: dict) -> None:
        self._open(info.get("step", 0), info.get("run_dir"))

    def _on_event(self, event: Any, info: dict) -> None:
        if self._due(event, info):
            writer = self._writer or self._open(None, None)
            self._write(int(info["step"]), numeric_values(info))
            if event == "eval":
                self._last_eval = dict(info)
                writer.flush()
        elif event == "checkpoint" and self._writer is not None:
            self._writer.flush()
        elif event in ("end", "interrupted"):
            self.close()

    def _open(self, start_step: int | None, run_dir: str | None) -> Any:
        """A new event file in ``log_dir``; with ``start_step`` it begins with a restart marker."""
        tensorboardX = _import_optional("tensorboardX", "tensorboard", "TensorBoard")
        self.close()
        if self.log_dir is None:
            if run_dir is None:
                raise ValueError("TensorBoard(log_dir=None) needs the trainer's run_dir; "
                                 "give a log_dir for a run without one")
            self.log_dir = os.path.join(run_dir, "tensorboard")
            from .run_dir import record_owned

            record_owned(run_dir, "tensorboard")  # removed with the run by an overwrite
        # One event per row through tensorboardX's FileWriter (its SummaryWriter sends one
        # per scalar through a 10-event queue, 4x slower). tensorboardX names files by the
        # second and host only and truncates a file of the same name; a nanosecond suffix
        # keeps files apart and in the order they were opened.
        self._writer = tensorboardX.FileWriter(
            self.log_dir, max_queue=1000, flush_secs=self.flush_secs,
            filename_suffix=f".{time.time_ns()}.{os.getpid()}",
        )
        self._summary = importlib.import_module("tensorboardX.proto.summary_pb2").Summary
        if start_step is not None:
            # What SummaryWriter(purge_step=...) writes: a restart marker at start_step,
            # after which readers drop every earlier point at that step or later.
            from tensorboardX.proto.event_pb2 import Event, SessionLog

            self._writer.add_event(Event(step=start_step, file_version="brain.Event:2"))
            self._writer.add_event(
                Event(step=start_step, session_log=SessionLog(status=SessionLog.START)))
        restored, self._restored_eval = self._restored_eval, None
        if start_step is not None and restored and int(restored.get("step", -1)) == start_step:
            self._write(start_step, numeric_values(restored))
        return self._writer

    def _write(self, step: int, values: dict[str, float]) -> None:
        summary = self._summary
        self._writer.add_summary(
            summary(value=[summary.Value(tag=k, simple_value=v) for k, v in values.items()]),
            global_step=step)

    def flush(self) -> None:
        """Write everything pending to the event file."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file (a later event opens a new one)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def state_dict(self) -> dict[str, Any]:
        """The last evaluation, saved in checkpoints to be written again after a resume."""
        return {"last_eval": self._last_eval}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._restored_eval = state.get("last_eval")
        self._last_eval = self._restored_eval


class MLflow(_Tracker):
    """Log training columns and eval metrics to an MLflow run (through ``MlflowClient``).

    Every numeric value of a ``train`` or ``eval`` event becomes an MLflow metric of the same
    name at the row's ``step``. Metrics are sent in batches: after every evaluation and
    checkpoint, at the end, and whenever ``batch_rows`` training rows are waiting. The run is
    created at the ``start`` event (tagged with the trainer's ``run_dir``) and marked
    ``FINISHED`` at the end (``KILLED`` when Ctrl-C stopped the run).

    **Resume.** The MLflow run id is saved in the trainer's checkpoints (``state_dict``), so
    a resumed run continues the same MLflow run. MLflow cannot delete points, so at a
    resumed start the tracker reads the last step the run already holds for ``loss`` and
    for ``eval_loss`` and skips rows up to it: with the trainer's exact resume those rows
    are the same values again. (After a resume with ``allow_changes``, rows the crashed run
    had already logged past the checkpoint keep their old values.)

    Args:
        experiment: the MLflow experiment name (created when missing).
        tracking_uri: where MLflow stores runs, e.g. ``"sqlite:///mlflow.db"`` or a server
            URL; ``None`` uses MLflow's default (``MLFLOW_TRACKING_URI`` or its own).
        run_name: the run's display name (default: the basename of the trainer's run_dir).
        run_id: continue this existing MLflow run instead of creating one.
        params: run parameters (``{name: value}``) logged when the run is created.
        tags: extra run tags.
        rank: this process's rank; only rank 0 logs (``None``: ``mx.distributed``'s rank).
        batch_rows: training rows buffered before a batch is sent.
        every: log the training rows whose step is a multiple of this (evaluations always).

    Raises:
        ImportError: MLflow is missing (``pip install "mlx-schedules[mlflow]"``).

    Example (a file store, which MLflow 3 accepts only when asked to):
        >>> import os, pathlib, tempfile
        >>> os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
        >>> uri = pathlib.Path(tempfile.mkdtemp(), "mlruns").as_uri()
        >>> tracker = MLflow("demo", tracking_uri=uri, rank=0)
        >>> tracker({"event": "start", "step": 0, "resumed": False, "run_dir": "runs/demo"})
        >>> tracker({"event": "train", "step": 0, "epoch": 0, "loss": 0.5})
        >>> tracker({"event": "end", "step": 1, "stopped_early": False})
        >>> from mlflow.tracking import MlflowClient
        >>> history = MlflowClient(uri).get_metric_history(tracker.run_id, "loss")
        >>> [(m.step, m.value) for m in history]
        [(0, 0.5)]
    """

    _BATCH_LIMIT = 1000  # metrics per MlflowClient.log_batch call (MLflow's limit)

    def __init__(self, experiment: str = "mlx-schedules", *, tracking_uri: str | None = None,
                 run_name: str | None = None, run_id: str | None = None,
                 params: dict[str, Any] | None = None, tags: dict[str, Any] | None = None,
                 rank: int | None = None, batch_rows: int = 50, every: int = 1):
        if not isinstance(experiment, str) or not experiment:
            raise ValueError(f"experiment must be a non-empty string, got {experiment!r}")
        if not isinstance(batch_rows, int) or isinstance(batch_rows, bool) or batch_rows < 1:
            raise ValueError(f"batch_rows must be a positive int, got {batch_rows!r}")
        for name, value in (("params", params), ("tags", tags)):
            if value is not None and not isinstance(value, dict):
                raise TypeError(f"{name} must be a dict, got {type(value).__name__}")
        self.experiment, self.tracking_uri, self.run_name = experiment, tracking_uri, run_name
        self.run_id = run_id
        self._given_run_id = run_id
        self.params, self.tags = dict(params or {}), dict(tags or {})
        self.rank = _check_rank(rank)
        self.batch_rows = batch_rows
        self.every = _check_every(every)
        self._client: Any = None
        self._pending: list[Any] = []
        self._pending_rows = 0
        self._skip_through = {"train": -1, "eval": -1}

    def _on_start(self, info: dict) -> None:
        self._start(info)

    def _on_event(self, event: Any, info: dict) -> None:
        if self._due(event, info):
            if self._client is None:
                self._start({"resumed": False})
            step = int(info["step"])
            if step <= self._skip_through[event]:
                return
            from mlflow.entities import Metric

            stamp = int(time.time() * 1000)
            self._pending += [Metric(name, value, stamp, step)
                              for name, value in numeric_values(info).items()]
            self._pending_rows += event == "train"
            if event == "eval" or self._pending_rows >= self.batch_rows:
                self.flush()
        elif event == "checkpoint":
            self.flush()
        elif event in ("end", "interrupted") and self._client is not None:
            self.flush()  # Ctrl-C: KILLED until a resume sets it RUNNING again
            self._client.set_terminated(self.run_id,
                                        "FINISHED" if event == "end" else "KILLED")

    def _start(self, info: dict) -> None:
        mlflow = _import_optional("mlflow", "mlflow", "MLflow")
        self._client = mlflow.tracking.MlflowClient(tracking_uri=self.tracking_uri)
        self._pending, self._pending_rows = [], 0
        self._skip_through = {"train": -1, "eval": -1}
        run_dir = info.get("run_dir")
        # A fresh start of the trainer is a new MLflow run, unless the user named one.
        if not info.get("resumed") and self.run_id != self._given_run_id:
            self.run_id = None
        if self.run_id is None:
            experiment = self._client.get_experiment_by_name(self.experiment)
            experiment_id = (experiment.experiment_id if experiment is not None
                             else self._client.create_experiment(self.experiment))
            name = self.run_name or (os.path.basename(os.path.normpath(run_dir))
                                     if run_dir else None)
            tags = {**({"run_dir": os.path.abspath(run_dir)} if run_dir else {}), **self.tags}
            run = self._client.create_run(experiment_id, run_name=name,
                                          tags={k: str(v) for k, v in tags.items()})
            self.run_id = run.info.run_id
            if self.params:
                from mlflow.entities import Param

                self._client.log_batch(self.run_id, params=[
                    Param(str(k), str(v)) for k, v in self.params.items()])
        else:
            self._client.update_run(self.run_id, status="RUNNING")
            if info.get("resumed"):
                self._skip_through = {"train": self._last_step("loss"),
                                      "eval": self._last_step("eval_loss")}

    def _last_step(self, key: str) -> int:
        history = self._client.get_metric_history(self.run_id, key)
        return max((m.step for m in history), default=-1)

    def flush(self) -> None:
        """Send the waiting metrics to MLflow."""
        while self._pending:
            batch, self._pending = (self._pending[:self._BATCH_LIMIT],
                                    self._pending[self._BATCH_LIMIT:])
            self._client.log_batch(self.run_id, metrics=batch)
        self._pending_rows = 0

    def state_dict(self) -> dict[str, Any]:
        """The MLflow run id, saved in checkpoints so that a resume continues the run."""
        return {"run_id": self.run_id}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("run_id") is not None:
            self.run_id = state["run_id"]


class WandB(_Tracker):
    """Log training columns and eval metrics to a Weights & Biases run (``wandb.log``).

    Every numeric value of a ``train`` or ``eval`` event is logged under its column name at
    the row's ``step``. The run starts at the ``start`` event and finishes at the end. Set
    ``WANDB_MODE=offline`` to keep it on disk only (``<dir>/wandb/offline-run-*``).

    **Resume.** The run id is saved in the trainer's checkpoints (``state_dict``): a resumed
    run continues the same W&B run (``resume="allow"``). W&B accepts no point below the step
    it has reached, so rows below the step W&B reports for the resumed run (values the crashed
    run already sent; the same again, with the trainer's exact resume) are skipped. Resuming
    a run that had finished starts no W&B run and sends nothing.

    Args:
        project: the W&B project (``None``: W&B's default).
        name: the run's display name (default: the basename of the trainer's run_dir).
        dir: where W&B writes its files (default: the trainer's run_dir).
        config: the run's config (plain data), shown beside its charts.
        rank: this process's rank; only rank 0 logs (``None``: ``mx.distributed``'s rank).
        every: log the training rows whose step is a multiple of this (evaluations always).

    Raises:
        ImportError: wandb is missing (``pip install "mlx-schedules[wandb]"``).
    """

    def __init__(self, project: str | None = None, *, name: str | None = None,
                 dir: str | os.PathLike | None = None, config: dict[str, Any] | None = None,
                 rank: int | None = None, every: int = 1):
        if project is not None and not isinstance(project, str):
            raise TypeError(f"project must be a string or None, got {project!r}")
        if config is not None and not isinstance(config, dict):
            raise TypeError(f"config must be a dict, got {type(config).__name__}")
        self.project, self.name = project, name
        self.dir = None if dir is None else os.fspath(dir)
        self.config = dict(config or {})
        self.rank = _check_rank(rank)
        self.every = _check_every(every)
        self.run_id: str | None = None
        self._run: Any = None

    def _on_start(self, info: dict) -> None:
        self._start(info)

    def _on_event(self, event: Any, info: dict) -> None:
        if self._due(event, info):
            if self._run is None:
                self._start({"resumed": False})
            step = int(info["step"])
            if step < self._run.step:  # sent before the crash this run resumes from
                return
            self._run.log(numeric_values(info), step=step)
        elif event == "end" and self._run is not None:
            self._run.finish()
            self._run = None

    def _start(self, info: dict) -> None:
        wandb = _import_optional("wandb", "wandb", "Weights & Biases")
        run_dir = info.get("run_dir")
        if not info.get("resumed"):
            self.run_id = None  # a fresh start of the trainer is a new W&B run
        directory = self.dir or run_dir
        if directory is not None:
            os.makedirs(directory, exist_ok=True)
        name = self.name or (os.path.basename(os.path.normpath(run_dir)) if run_dir else None)
        self._run = wandb.init(project=self.project, name=name, dir=directory,
                               config=self.config, id=self.run_id,
                               resume="allow" if self.run_id else None)
        self.run_id = self._run.id

    def state_dict(self) -> dict[str, Any]:
        """The W&B run id, saved in checkpoints so that a resume continues the run."""
        return {"run_id": self.run_id}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("run_id") is not None:
            self.run_id = state["run_id"]
