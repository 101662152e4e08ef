"""One training run from a validated config, through :class:`trainers.Trainer`.

The per-step rates and momenta come from the trainer's log, which reads them from
``optimizer.state`` after each update: the values the updates used, not a recomputation.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import time
from collections.abc import Callable
from typing import Any

import mlx.core as mx
import numpy as np

import mlx_schedules as ms
from trainers import PAUSE, ArrayBatches, Trainer, accuracy
from trainers import lr_range_test as trainer_range_test
from trainers.files import write_json_atomic
from trainers.run_dir import record_owned

from .config import build_optimizer
from .datasets import check_data, load_dataset
from .models import build_model, check_model_fits, cross_entropy, memory_estimate

__all__ = ["MemoryLog", "OnStart", "compile_wanted", "load_data", "prepare_data", "range_test",
           "read_log", "run_training", "steps_to_target", "summarise"]


def compile_wanted(setting: Any) -> bool:
    """Whether ``training.compile`` asks for a compiled step (``Trainer(compile=...)``).

    ``auto`` compiles except on Linux's CPU backend, where each new compiled step runs a C++
    compiler (1-5 s per run, measured) while a whole 300-step digits run takes ~0.4 s without.
    """
    if setting != "auto":
        return bool(setting)
    return not (platform.system() == "Linux" and mx.default_device().type == mx.cpu)


class MemoryLog:
    """A trainer callback keeping every training and evaluation row in memory."""

    def __init__(self) -> None:
        self.train: list[dict] = []
        self.eval: list[dict] = []

    def __call__(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "train":
            self.train.append({k: v for k, v in event.items() if k != "event"})
        elif kind == "eval":
            self.eval.append({k: v for k, v in event.items() if k != "event"})


class OnStart:
    """A trainer callback calling ``action(event)`` at the ``start`` event: once the trainer
    owns the run directory (locked, an overwritten run removed, the checkpoint loaded) and
    before the first update. Files of the command's own belong there, not earlier: a run
    directory the trainer refuses is left exactly as it was.

    ``owns`` names the entries the command may write at the top of the run directory
    (``summary.json``, ``curves.png``...): they are recorded as the run's own first
    (:func:`trainers.run_dir.record_owned`), so that ``--overwrite`` removes them with the run
    instead of refusing a directory that holds files the trainer did not write.
    """

    def __init__(self, action: Callable[[dict], Any], owns: tuple[str, ...] = ()):
        self.action = action
        self.owns = owns
        self.started = False

    def __call__(self, event: dict) -> None:
        if event.get("event") == "start":
            self.started = True
            if self.owns and event.get("run_dir") and not event.get("finished") \
                    and mx.distributed.init().rank() == 0:  # rank 0 owns the directory
                record_owned(event["run_dir"], *self.owns)
            self.action(event)


class _StopAfter:
    """Stop the run after exactly ``steps`` updates (to resume it later).

    A training row's ``step`` is the update's index, so the row ``steps - 1`` is the last
    update to take. The trainer honours ``PAUSE`` at the end of the block holding that row;
    :func:`run_training` sizes the blocks so that one ends there.
    """

    def __init__(self, steps: int):
        self.steps = steps

    def __call__(self, event: dict) -> Any:
        if event.get("event") == "train" and event["step"] >= self.steps - 1:
            return PAUSE
        return None


# What a branch changes against its checkpoint: the run's length and the rate's schedule (and
# the fixed hyperparameters, where a constant rate becomes a schedule).
_BRANCH_CHANGES = ("max_steps", "schedules", "hyperparameters")


class _WriteSettings:
    """At the ``start`` event of a branch, write ``config.json`` with the new run's settings
    (the trainer writes it only for a fresh start, and a branch starts from a checkpoint)."""

    def __init__(self, run_dir: str | None):
        self.run_dir = run_dir
        self.trainer: Trainer | None = None

    def __call__(self, event: dict) -> None:
        if event.get("event") == "start" and self.trainer is not None and self.run_dir:
            write_json_atomic(os.path.join(self.run_dir, "config.json"),
                              self.trainer.settings.to_json())


def _copy_log(checkpoint: str, run_dir: str) -> None:
    """The original run's log files, into the branch's directory: the trainer cuts them at
    the checkpoint's position (rows after it belong to the original run only)."""
    original = os.path.dirname(os.path.dirname(os.path.abspath(checkpoint)))
    os.makedirs(run_dir, exist_ok=True)
    for name in ("log.jsonl", "log.csv"):
        source = os.path.join(original, name)
        if os.path.isfile(source):
            shutil.copyfile(source, os.path.join(run_dir, name))


def _model(config: dict[str, Any], data: dict[str, np.ndarray]):
    m = config["model"]
    num_classes = int(max(data["y_train"].max(), data["y_test"].max())) + 1
    return build_model(m["kind"], data["x_train"].shape[1:], num_classes, hidden=m["hidden"],
                       channels=m["channels"], dropout=m["dropout"], norm=m["norm"])


def load_data(dataset: dict[str, Any]) -> dict[str, np.ndarray]:
    """The arrays of a validated ``dataset`` section."""
    return load_dataset(dataset["name"], path=dataset["path"], cache_dir=dataset["cache_dir"],
                        test_fraction=dataset["test_fraction"],
                        split_seed=dataset["split_seed"], limit_train=dataset["limit_train"])


def prepare_data(config: dict[str, Any]) -> dict[str, np.ndarray]:
    """Load a validated config's data and check it once, before anything is built or written:
    the arrays (:func:`trainers.experiments.datasets.check_data`) and that the model they call
    for fits
    in memory (estimated from the config, not allocated).

    Raises:
        trainers.experiments.datasets.DatasetUnavailable: the files are missing.
        trainers.experiments.datasets.DataError: the files or arrays are unusable (names the \
problem).
        trainers.experiments.models.ModelTooLarge: the model would not fit (names the field).
    """
    data = load_data(config["dataset"])
    batch_size = config["training"]["batch_size"]
    num_classes = check_data(data, batch_size=batch_size)
    m = config["model"]
    # Evaluation takes the whole test set as one batch.
    estimate = memory_estimate(
        m["kind"], data["x_train"].shape[1:], num_classes, hidden=m["hidden"],
        channels=m["channels"], norm=m["norm"], batch_size=max(batch_size, len(data["x_test"])))
    check_model_fits(estimate, field="model.hidden" if m["kind"] == "mlp" else "model.channels")
    return data


def steps_to_target(evals: list[dict], target: float | None) -> int | None:
    """The first evaluation step whose accuracy reaches ``target`` (``None`` if none does).

    Example:
        >>> steps_to_target([{"step": 10, "eval_accuracy": 0.5},
        ...                  {"step": 20, "eval_accuracy": 0.9}], 0.8)
        20
    """
    if target is None:
        return None
    for row in evals:
        if row.get("eval_accuracy", -1.0) >= target:
            return int(row["step"])
    return None


def summarise(train_rows: list[dict], eval_rows: list[dict], *, target: float | None,
              wall_time: float) -> dict[str, Any]:
    """The summary of a run: final/best accuracy, steps to target, losses, wall time."""
    accuracies = [r["eval_accuracy"] for r in eval_rows if "eval_accuracy" in r]
    losses = [r["loss"] for r in train_rows]
    tail = losses[-max(1, len(losses) // 10):] if losses else []
    return {
        "steps": int(train_rows[-1]["step"]) + 1 if train_rows else 0,
        "final_accuracy": accuracies[-1] if accuracies else None,
        "best_accuracy": max(accuracies) if accuracies else None,
        "final_eval_loss": eval_rows[-1].get("eval_loss") if eval_rows else None,
        "final_train_loss": float(np.mean(tail)) if tail else None,
        "target_accuracy": target,
        "steps_to_target": steps_to_target(eval_rows, target),
        "wall_time_s": wall_time,
    }


def run_training(config: dict[str, Any], *, data: dict[str, np.ndarray] | None = None,
                 run_dir: str | None = None, log_files: bool = True, resume: bool = False,
                 overwrite: bool = False, stop_after: int | None = None,
                 callbacks: tuple[Callable[[dict], Any], ...] = (),
                 branch_from: str | None = None, report: bool = False,
                 progress: bool | None = None) -> tuple[dict, MemoryLog]:
    """Train the model of a validated config; return ``(summary, rows of this session)``.

    Args:
        config: a config that passed :func:`trainers.experiments.config.validate`.
        data: the arrays from :func:`prepare_data`, when the caller already loaded them
            (comparisons reuse them); by default loaded and checked here.
        run_dir: where the trainer writes (default ``config["output"]["run_dir"]``).
        log_files: write ``log.jsonl``/``log.csv`` and checkpoints into ``run_dir``; with
            ``False`` nothing is written anywhere (``run_dir`` is ignored) and the rows stay
            in memory.
        resume: continue from the newest checkpoint in ``run_dir``.
        stop_after: stop after exactly this many updates (counted from the start of the run,
            also when resuming); the trainer then evaluates and checkpoints at that step.
        branch_from: a checkpoint of another run to start from (``train.py --branch``): its
            weights, optimizer state and data position, with this config's (changed) run
            length and schedules; the log up to the checkpoint is copied from that run, and
            ``config.json`` is written with this run's settings.
        report: show the trainer's progress display (:mod:`trainers.progress`), refreshed
            every ``training.log_every`` updates; ``progress`` as ``Trainer(progress=...)``
            (default: a bar on a terminal, plain lines elsewhere).

    Raises:
        trainers.TrainingInterrupted: Ctrl-C stopped the run after a checkpoint (resume it
            with ``resume=True``).
    """
    training = config["training"]
    data = data if data is not None else prepare_data(config)
    run_dir = (run_dir or config["output"]["run_dir"]) if log_files else None
    seed = training["seed"]
    mx.random.seed(seed)  # the model's initial weights
    model = _model(config, data)
    optimizer = build_optimizer(config["optimizer"])
    train_data = ArrayBatches((data["x_train"], data["y_train"]), training["batch_size"],
                              seed=seed)
    eval_data = [(data["x_test"], data["y_test"])]  # one batch: the whole test set
    memory = MemoryLog()
    extra = [_StopAfter(stop_after)] if stop_after else []
    settings = _WriteSettings(run_dir)
    log_every = report_every = training["log_every"]
    if stop_after:
        # Rows (and PAUSE) arrive per block of log_every updates: make a block end at
        # stop_after. The block size changes neither the rows nor the updates.
        log_every = math.gcd(log_every, stop_after)
    eval_every = training["eval_every"] or None
    checkpoint_every = training["checkpoint_every"] if log_files else 0
    trainer = Trainer(
        model, cross_entropy, optimizer, train_data, run_dir=run_dir,
        max_steps=training["steps"], eval_data=eval_data, metrics={"accuracy": accuracy},
        eval_every=eval_every, checkpoint_every=checkpoint_every,
        keep_checkpoints=training["keep_checkpoints"], log_every=log_every,
        report_every=report_every if report else 0, progress=progress, log=log_files,
        seed=seed, grad_accum=training["grad_accum"],
        clip_norm=training["clip_norm"], compile=compile_wanted(training["compile"]),
        callbacks=[memory, *extra, *callbacks, *([settings] if branch_from else [])],
        config={"experiment": config},
    )
    start = time.perf_counter()
    if branch_from is not None:
        assert run_dir is not None  # a branch writes its own run directory
        settings.trainer = trainer
        _copy_log(branch_from, run_dir)
        trainer.fit(resume=branch_from, allow_changes=_BRANCH_CHANGES)
    else:
        trainer.fit(resume=resume, overwrite=overwrite)
    wall = time.perf_counter() - start
    summary = summarise(memory.train, memory.eval, target=training["target_accuracy"],
                        wall_time=wall)
    summary["stopped_at"] = trainer.step if trainer.step < training["steps"] else None
    return summary, memory


def read_log(run_dir: str) -> tuple[list[dict], list[dict]]:
    """The training and evaluation rows of a run directory's ``log.jsonl``."""
    train: list[dict] = []
    evals: list[dict] = []
    with open(os.path.join(run_dir, "log.jsonl"), encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            (train if row.pop("kind") == "train" else evals).append(row)
    return train, evals


def range_test(config: dict[str, Any], *, min_lr: float, max_lr: float, steps: int,
               smoothing: float = 0.98, data: dict | None = None) -> dict[str, Any]:
    """Run the sweep for a validated config; return the JSON-ready result."""
    data = data if data is not None else load_data(config["dataset"])
    training = config["training"]
    mx.random.seed(training["seed"])  # the model's initial weights
    model = _model(config, data)
    section = {"name": config["optimizer"]["name"], "learning_rate": min_lr}
    for key, value in config["optimizer"].items():
        if key not in ("name", "learning_rate"):
            # A cycled momentum would move during the sweep; hold it at its first value.
            section[key] = ms.from_config(value).values(1)[0].item() \
                if isinstance(value, dict) else value
    optimizer = build_optimizer(section)
    batches = ArrayBatches((data["x_train"], data["y_train"]), training["batch_size"],
                           seed=training["seed"])
    result = trainer_range_test(model, cross_entropy, optimizer, batches, min_lr=min_lr,
                                max_lr=max_lr, steps=steps, smoothing=smoothing,
                                seed=training["seed"],
                                compile=compile_wanted(training["compile"]))
    return {
        "suggested_lr": result.suggested_lr,
        "min_loss_lr": result.min_loss_lr,
        "steepest_lr": result.steepest_lr,
        "suggestions_by_schedule": result.suggestions_by_schedule,
        "diverged_at": result.diverged_at,
        "learning_rates": result.learning_rates,
        "losses": result.losses,
        "smoothed_losses": result.smoothed_losses,
        "sweep": {"min_lr": min_lr, "max_lr": max_lr, "steps": steps, "smoothing": smoothing},
        "optimizer": section,
    }
