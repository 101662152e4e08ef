"""The training loop.

:meth:`Trainer.fit` reads top to bottom: open the run (own the directory, replace or resume,
load the checkpoint before compiling), build the compiled step, then one optimizer update per
iteration, with the block boundary's work (write rows, report, evaluate, checkpoint) as named
calls, and the end of the run. The pieces live beside it: :mod:`trainers.settings` (what a run
is), :mod:`trainers.run_dir` (ownership and resume point), :mod:`trainers.pending` (per-step
values on the device), :mod:`trainers.runlog` (log files, console report),
:mod:`trainers.checkpoint` and :mod:`trainers.step` (the compiled step).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TextIO, cast

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten

from mlx_schedules.checks import check_int

from .callbacks import PAUSE, STOP
from .checkpoint import (
    TRAINER_META_KEYS,
    drop_kept,
    finite_flags,
    load_checkpoint,
    prune_checkpoints,
    read_checkpoint_arrays,
    read_meta,
    save_checkpoint,
)
from .data import BatchStream, as_source, batch_size_of, shard, to_device
from .errors import CheckpointError, NonFiniteError, TrainingInterrupted
from .files import write_json_atomic
from .fingerprint import (
    describe_data,
    describe_hyperparameters,
    describe_optimizer,
    describe_schedules,
    run_id_of,
    weights_digest,
)
from .interrupt import Interrupt
from .memory import checkpoint_blocks
from .metrics import accuracy
from .optimizers import hyperparameter_sources, scheduled_hyperparameters
from .pending import PendingValues
from .progress import ProgressDisplay, samples_per_update
from .run_dir import RunDirectory
from .runlog import RunLog
from .settings import RESUME_KEYS, TrainerSettings
from .step import make_eval_step, make_train_step
from .system_log import SystemLog
from .train_state import LossScale, ema_weights, init_train_state

__all__ = ["Trainer", "accuracy", "scheduled_hyperparameters"]


def _all_finite(tree: Any) -> bool:
    """Whether every floating array of a tree is finite (the check a checkpoint's weights get
    at load: NumPy on the CPU backend, one MLX reduction elsewhere; the host waits)."""
    # without ``destination`` tree_flatten returns a list (its stub is the union with dict)
    leaves = cast(list[tuple[str, mx.array]], tree_flatten(tree))
    floats = [a for _, a in leaves if mx.issubdtype(a.dtype, mx.inexact)]
    return all(finite_flags(floats))


@dataclasses.dataclass
class _Run:
    """What one call of :meth:`Trainer.fit` tracks between updates."""

    step: int
    data: BatchStream
    pending: PendingValues
    directory: RunDirectory | None = None
    log: RunLog | None = None
    report: ProgressDisplay | None = None
    resumed: bool = False
    finished: bool = False  # the run had ended before this call: nothing is done or written
    ended: dict | None = None  # how the run ended ({"step", "reason"}), when it has
    last_row: dict = dataclasses.field(default_factory=dict)
    last_eval: dict = dataclasses.field(default_factory=dict)
    evaluated_at: int = -1
    saved_at: int = -1
    stop: str | None = None  # STOP or PAUSE, asked by a callback
    best: dict | None = None  # {"value", "step"} of the best evaluation (keep_best)
    system: SystemLog | None = None
    shapes: set = dataclasses.field(default_factory=set)  # batch shapes the step was built for
    tokens: float = 0.0  # real tokens in the rows written so far (with ``tokens=``)

    def close(self, *, failed: bool = False, refused: bool = False) -> None:
        """Close the files and release the directory. ``failed``: an error is on its way,
        which a failing close (a full disk) must not replace; ``refused``: the run never
        started, so the files it created are removed (the same command can run again)."""
        errors = []
        for part in (self.system, self.log, self.report):
            if part is not None:
                try:
                    part.close()
                except Exception as e:  # reported below, after everything is closed
                    errors.append(e)
        self.system = self.log = self.report = None
        if self.directory is not None:
            self.directory.release(refused=refused)
            self.directory = None
        if errors and not failed:
            raise errors[0]

    def result(self) -> dict:
        result = {k: v for k, v in self.last_row.items() if k != "kind"}
        result.update({k: v for k, v in self.last_eval.items() if k != "event"})
        result["step"] = self.step
        result["compiled_shapes"] = len(self.shapes)
        if self.best is not None:
            result["best_step"], result["best_value"] = self.best["step"], self.best["value"]
        result["already_finished"] = self.finished
        return result


class Trainer:
    """Train an ``mlx.nn.Module`` with one compiled step, logging every step to a run directory.

    Args:
        model: the module to train.
        loss_fn: ``loss_fn(model, *batch)`` for tuple batches, ``loss_fn(model, **batch)`` for
            dict batches; returns the scalar mean loss.
        optimizer: any ``mlx.optimizers`` optimizer; its learning rate and any hyperparameter
            scheduled with :func:`mlx_schedules.schedule_hyperparameters` may be schedules.
        train_data: batches: :class:`trainers.data.ArrayBatches`, an ``mlx.data`` Buffer or
            Stream of batches, a list of batches, a callable ``epoch -> iterable``, or a one-shot
            iterator. A batch is a dict or tuple of arrays (numpy or mx).
        run_dir: where logs and checkpoints go (created; must be writable). ``None`` keeps
            nothing on disk: it requires ``log=False`` and ``checkpoint_every=0``.
        max_steps: number of optimizer updates. Or give ``epochs`` (passes over
            ``train_data``); with both, the run stops at whichever comes first.
        eval_data: batches for evaluation (a re-iterable or anything ``train_data`` accepts).
        metrics: extra eval metrics ``{name: fn(model, *batch) -> batch mean}``;
            the loss is always evaluated as ``eval_loss``. Use :func:`accuracy` for accuracy.
        eval_every: evaluate every this many updates (and always at the end).
        eval_at_start: also evaluate before the first update of a run (an ``eval`` row at
            step 0: the untrained model's scores, as mlx-lm's trainer reports first); a
            resume does not repeat it.
        checkpoint_every: save a checkpoint every this many updates (and at the end);
            ``None`` saves only at the end, ``0`` never.
        keep_checkpoints: how many recent checkpoints to keep.
        log_every: updates per block: the per-step values stay on the device for this many
            updates and are then fetched in one transfer and written.
        report_every: console report interval in updates (``0`` turns the report off);
            default ``log_every``: the display is refreshed when a block of rows is written.
        log: ``False`` writes no log files (the non-finite check still runs per block).
        seed: base seed; the random key is reseeded to ``seed + step`` before every update.
        grad_accum: micro-batches per update (gradients averaged inside the compiled step).
        clip_norm: clip the global gradient norm to this value.
        grad_norm: log the global gradient norm of every update (column ``grad_norm``) and
            stop on a non-finite gradient at its exact step. Off by default because it costs
            one reduction over all gradients per update (15-25% of a small MLP's step on the
            Linux CPU backend; little on Metal or larger models). Off (and no ``clip_norm``),
            only the loss is checked per step: a NaN gradient shows one step later, as the
            NaN loss it causes, and the weights are checked before every checkpoint so a bad
            last update never becomes one. ``clip_norm`` computes the norm anyway.
        compile: compile the training step with ``mx.compile`` (default). ``False`` runs the
            same function eagerly: for very short runs, where compiling (1-5 s on the Linux
            CPU backend) costs more than it saves.
        precision: ``"float32"`` (default), ``"bfloat16"`` or ``"float16"``: the forward and
            backward pass run in that dtype (weights and the batch's floating arrays are cast
            inside the compiled step) while the master weights and the optimizer state stay
            float32, and are what checkpoints hold. ``"float16"`` adds dynamic loss scaling:
            an update whose gradients overflow is skipped (the step counter, and so every
            schedule, does not move) and the scale halves; columns ``loss_scale`` and
            ``skipped``. The row of step ``t`` then shows the schedules at ``t`` minus the
            skips before it (:func:`trainers.train_state.schedule_steps` defines it; the rate
            audit uses the same function). Keep the model's own weights float32
            (``set_dtype`` to bf16 would make the masters bf16 too).
        ema: keep an exponential moving average of the weights, ``avg = ema·avg +
            (1-ema)·weights`` after every update, inside the compiled step; saved in
            checkpoints; every evaluation also runs on it (columns ``ema_eval_<metric>``).
        keep_best: ``(metric, "min" | "max")``, an evaluation column such as ``"eval_loss"``
            or ``"ema_eval_loss"``: the checkpoint of the best evaluation so far is kept in
            ``run_dir/best/``, apart from the last ``keep_checkpoints``.
        restore_best: at the end of ``fit``, load the best evaluation's weights into the model
            (after the last checkpoint was saved with the last weights).
        grad_checkpoint: recompute each block's activations in the backward pass (less memory,
            about one more forward pass of compute); see :mod:`trainers.memory` for how a model
            names its blocks.
        memory_limit, cache_limit: bytes, passed to ``mx.set_memory_limit`` /
            ``mx.set_cache_limit`` when ``fit`` starts (process-wide MLX settings).
        tokens: ``fn(batch) -> scalar mx.array``, the real tokens of a batch (e.g.
            :func:`trainers.losses.tokens_in`): logged per step (column ``tokens``), reported
            as tokens/s, and used to weight evaluation batches by their tokens.
        callbacks: plain callables taking an event dict (see :mod:`trainers.callbacks`). A
            callback returning :data:`STOP` from a ``train`` event stops the run at the end
            of that block (rows are delivered per block of ``log_every`` updates); from an
            ``eval`` event, right after that evaluation. The run is then over (resuming it
            changes nothing); :data:`PAUSE` stops the same way but ``fit(resume=True)``
            continues the run.
        group: an ``mx.distributed`` group; default ``mx.distributed.init()`` (size 1 when not
            launched with ``mlx.launch``). With size > 1 every global batch is split by rank,
            gradients are averaged, and only rank 0 writes files and reports.
        config: extra JSON-serialisable settings recorded in ``config.json`` and checkpoints.
        stream: where the console report goes (default stdout).
        progress: ``True`` a progress bar redrawn in place, ``False`` one plain line per
            report (step, loss, rate, steps/s, tokens or samples/s, elapsed, ETA, memory;
            see :mod:`trainers.progress`); default: a bar when ``stream`` is a terminal.

    Ctrl-C (SIGINT, in the main thread of a single-process run) stops the run after the
    update in progress: the log rows and a checkpoint are written and ``fit`` raises
    :class:`trainers.errors.TrainingInterrupted`; ``fit(resume=True)`` continues exactly. A
    second Ctrl-C aborts at once (:mod:`trainers.interrupt`).

    Example:
        >>> import tempfile, numpy as np, mlx.nn as nn, mlx.optimizers as optim
        >>> from trainers.data import ArrayBatches
        >>> data = ArrayBatches({"x": np.ones((8, 2), np.float32),
        ...                      "y": np.zeros((8, 1), np.float32)}, 4)
        >>> mse = lambda model, x, y: nn.losses.mse_loss(model(x), y)
        >>> trainer = Trainer(nn.Linear(2, 1), mse, optim.SGD(learning_rate=0.1), data,
        ...                   run_dir=tempfile.mkdtemp(), max_steps=3, report_every=0)
        >>> trainer.fit()["step"]
        3
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[..., mx.array],
        optimizer: optim.Optimizer,
        train_data: Any,
        *,
        run_dir: str | os.PathLike | None,
        max_steps: int | None = None,
        epochs: int | None = None,
        eval_data: Iterable | None = None,
        metrics: Mapping[str, Callable[..., mx.array]] | None = None,
        eval_every: int | None = None,
        eval_at_start: bool = False,
        checkpoint_every: int | None = None,
        keep_checkpoints: int = 3,
        log_every: int = 50,
        report_every: int | None = None,
        log: bool = True,
        seed: int = 0,
        grad_accum: int = 1,
        clip_norm: float | None = None,
        grad_norm: bool = False,
        compile: bool = True,
        precision: str = "float32",
        ema: float | None = None,
        keep_best: tuple[str, str] | None = None,
        restore_best: bool = False,
        grad_checkpoint: bool = False,
        memory_limit: int | None = None,
        cache_limit: int | None = None,
        tokens: Callable[[Any], mx.array] | None = None,
        callbacks: Sequence[Callable[[dict], Any]] = (),
        group: Any = None,
        config: Mapping[str, Any] | None = None,
        stream: TextIO | None = None,
        progress: bool | None = None,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an mlx.nn.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
        if not isinstance(optimizer, optim.Optimizer):
            raise TypeError(
                f"optimizer must be an mlx.optimizers.Optimizer, got {type(optimizer).__name__}"
            )
        for cb in callbacks:
            if not callable(cb):
                raise TypeError(f"callbacks must be callables taking a dict, got {cb!r}")
        if metrics is not None and not isinstance(metrics, Mapping):
            raise TypeError(f"metrics must be a dict of name -> fn, got {type(metrics).__name__}")
        if progress is not None and not isinstance(progress, bool):
            raise TypeError(f"progress must be True, False or None, got {progress!r}")
        if eval_every and eval_data is None:
            raise ValueError("eval_every is set but eval_data is missing")
        if eval_at_start is True and eval_data is None:
            raise ValueError("eval_at_start=True but eval_data is missing")
        if run_dir is None and (log or checkpoint_every != 0):
            raise ValueError("run_dir=None needs log=False and checkpoint_every=0")

        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        self.source = as_source(train_data, name="train_data")
        self.eval_data = eval_data
        if eval_data is not None:
            as_source(eval_data, name="eval_data")  # fail early on a wrong type
        self.metrics = {"loss": loss_fn, **dict(metrics or {})}
        self.run_dir = None if run_dir is None else os.fspath(run_dir)
        self.callbacks = list(callbacks)
        self.group = group if group is not None else _default_group()
        self.rank = self.group.rank() if self.group is not None else 0
        self.world_size = self.group.size() if self.group is not None else 1
        self.stream, self.progress = stream, progress
        self.hparam_sources = hyperparameter_sources(optimizer)
        self.hparams = scheduled_hyperparameters(optimizer)
        # the rate the console shows: the first group's with parameter groups
        self._rate_column = next((c for c in self.hparams if c.startswith("learning_rate")),
                                 "learning_rate")
        track_norm = grad_norm is True or clip_norm is not None
        if tokens is not None and not callable(tokens):
            raise TypeError(f"tokens must be a function batch -> token count, got {tokens!r}")
        self.count_tokens = tokens
        self.step_columns = ["loss", *(["grad_norm"] if track_norm else []), *self.hparams,
                             *(["loss_scale", "skipped"] if precision == "float16" else []),
                             *(["tokens"] if tokens is not None else [])]
        eval_columns = [f"eval_{name}" for name in self.metrics] if eval_data is not None else []
        if ema is not None:
            eval_columns += [f"ema_{name}" for name in eval_columns]
        columns = ("kind", "step", "epoch", *self.step_columns, *eval_columns)
        if keep_best is not None and (not isinstance(keep_best, (tuple, list)) or
                                      keep_best[0] not in eval_columns):
            raise ValueError(f"keep_best must name an evaluation column {eval_columns} and "
                             f"'min' or 'max', got {keep_best!r}")
        for name, value in (("memory_limit", memory_limit), ("cache_limit", cache_limit)):
            if value is not None:
                check_int(name, value, minimum=0)
        self.memory_limits = {"memory": memory_limit, "cache": cache_limit}
        batch_size, data = describe_data(train_data)
        settings = TrainerSettings(
            max_steps=max_steps, epochs=epochs, seed=seed, grad_accum=grad_accum,
            clip_norm=clip_norm, grad_norm=grad_norm, compile=compile,
            world_size=self.world_size, columns=columns, log_every=log_every,
            report_every=log_every if report_every is None else report_every,
            eval_every=eval_every, eval_at_start=eval_at_start,
            checkpoint_every=checkpoint_every, keep_checkpoints=keep_checkpoints, log=log,
            precision=precision, ema=ema,
            keep_best=None if keep_best is None else tuple(keep_best),
            restore_best=restore_best, grad_checkpoint=grad_checkpoint,
            optimizer=describe_optimizer(optimizer),
            hyperparameters=describe_hyperparameters(optimizer),
            schedules=describe_schedules(optimizer), batch_size=batch_size, data=data,
            user=dict(config or {}),
        )
        total = max_steps
        if epochs is not None and self.source.length is not None:
            from_epochs = epochs * self.source.length // grad_accum
            if from_epochs < 1:
                raise ValueError(f"{epochs} epoch(s) give no full update of {grad_accum} batches")
            total = min(from_epochs, max_steps or from_epochs)
        self.settings = dataclasses.replace(settings, total_steps=total)
        self.total_steps = total
        self.last_checkpoint: str | None = None
        self.step = 0
        self.run_id: str | None = None

    # ------------------------------------------------------------------ the loop
    def fit(
        self,
        resume: bool | str | os.PathLike = False,
        overwrite: bool | str = False,
        *,
        allow_changes: Iterable[str] = (),
    ) -> dict:
        """Run training; return the last training row merged with the last eval results.

        Args:
            resume: ``True`` continues from the newest intact checkpoint in ``run_dir`` (or
                starts fresh when the run never saved one); a path resumes from that
                checkpoint directory. The checkpoint must be of this run (its run id), agree
                with the log, and hold only finite values. Resuming a run that ended (its
                length reached, or a callback's ``STOP``) changes nothing, unless
                ``allow_changes`` lets its length grow.
            overwrite: start fresh in a run directory that already holds a run, removing the
                files the trainer wrote there (recorded in ``.run.json``). A directory that
                also holds files the trainer did not write is refused, naming a few;
                ``overwrite="all"`` deletes everything in it instead.
            allow_changes: settings a resume may change on purpose, from
                ``trainers.settings.RESUME_KEYS``: e.g. ``("max_steps",)`` to train longer,
                ``("schedules",)`` to continue with a new schedule (a cooldown),
                ``("batch_size",)`` or ``("data",)`` for other training data. Without them,
                a resume whose settings, optimizer class, fixed hyperparameters, schedules,
                batch size or data fingerprint differ from the checkpoint's fails.

        Raises:
            NonFiniteError: a loss or gradient norm was NaN/inf; names the first such step.
            RunDirectoryBusy: another process owns ``run_dir``.
            ValueError: bad batches, a non-writable or occupied run directory, a mismatched
                checkpoint (:class:`CheckpointError`).
            FileNotFoundError: the checkpoint to resume from does not exist.
        """
        allowed = _check_allowed(allow_changes)
        run = self._open(resume, overwrite, allowed)
        # Ctrl-C stops at the next step boundary (ranks would stop at different steps: one
        # process only)
        interrupt = Interrupt.install(enabled=self.world_size == 1)
        succeeded = False
        try:
            train_step = self._start(run)
            update = None if train_step is None else self._updater(run, train_step)
            if (update is not None and self.settings.eval_at_start and run.step == 0
                    and run.evaluated_at != 0):
                self._evaluate_and_log(run)  # the untrained model (a resume has step > 0)
            # None: the run had finished; run.stop: a callback stopped it at that evaluation
            while update is not None and not self._done(run) and not run.stop:
                # updates until the next block boundary, with nothing else per update but
                # the Ctrl-C flag (an attribute read)
                for _ in range(self._updates_to_boundary(run)):
                    update()
                    if interrupt.requested:
                        break
                step, s = run.step, self.settings
                due_report = run.report is not None and step % s.report_every == 0
                due_eval = bool(s.eval_every and step % s.eval_every == 0)
                due_save = bool(s.checkpoint_every and step % s.checkpoint_every == 0)
                if step % s.log_every == 0 or due_report or due_eval or due_save:
                    self._write_rows(run)
                if due_report:
                    self._report(run)
                if due_eval:
                    self._evaluate_and_log(run)
                if due_save and not (run.stop or self._done(run)):  # the last one: _finish
                    self._save(run)
                if run.stop or interrupt.requested:
                    break
            interrupted = interrupt.requested and not self._done(run)
            if interrupted:
                self._stop_interrupted(run)
            else:
                self._finish(run)
                if self.settings.restore_best:
                    self._restore_best(run)
            succeeded = True
        except NonFiniteError:
            raise
        except BaseException:
            self._salvage_rows(run)
            raise
        finally:
            interrupt.restore()
            run.close(failed=not succeeded)
        if interrupted:
            saved = self.last_checkpoint if self.settings.checkpoint_every != 0 else None
            raise TrainingInterrupted(run.step, saved, run.saved_at if saved else None)
        return run.result()

    # ------------------------------------------------------------------ opening a run
    def _open(self, resume: bool | str | os.PathLike, overwrite: bool | str,
              allowed: frozenset[str]) -> _Run:
        """Own the run directory, find the checkpoint, load it, open the log."""
        if not (overwrite is False or overwrite is True or overwrite == "all"):
            raise ValueError(f"overwrite must be False, True or 'all', got {overwrite!r}")
        if resume not in (False, True):
            if not isinstance(resume, (str, os.PathLike)):
                raise TypeError(f"resume must be True, False or a checkpoint path, got {resume!r}")
            resume = os.fspath(resume)
            if not os.path.isdir(resume):
                raise FileNotFoundError(f"checkpoint to resume from not found: {resume}")
        if self.run_dir is None and resume:
            raise ValueError("resume needs a run_dir")
        directory = None if self.run_dir is None else RunDirectory(self.run_dir)
        names = self._file_names()

        def own() -> None:  # rank 0 owns and changes the directory; the others read it
            if directory is not None and self.rank == 0:
                directory.refuse_if_occupied(resume, overwrite, names)  # before any write
                directory.acquire()
                directory.claim(resume, overwrite, names, self._new_run_id)

        try:
            self._on_all_ranks(own)
            return self._on_all_ranks(lambda: self._restore_run(directory, resume, allowed))
        except BaseException:
            if directory is not None:
                directory.release(refused=True)
            raise

    def _file_names(self) -> list[str]:
        """The names this run writes at the top of its run directory."""
        s = self.settings
        return ["config.json", *(["log.jsonl", "log.csv", "system.jsonl"] if s.log else []),
                *(["checkpoints"] if s.checkpoint_every != 0 else []),
                *(["best"] if s.keep_best is not None else [])]

    def _new_run_id(self) -> str:
        """The id of a run starting now: its settings (data fingerprint included) and its
        initial weights (trainers.fingerprint.run_id_of)."""
        return run_id_of(self.settings.to_json(), weights_digest(self.model))

    def _restore_run(self, directory: RunDirectory | None, resume: bool | str,
                     allowed: frozenset[str]) -> _Run:
        """Load the checkpoint after every check, then open the files; a resume refused by
        a check has written and renamed nothing."""
        checkpoint: str | None = None
        broken: list[tuple[str, str]] = []
        if isinstance(resume, str):
            checkpoint = resume
        try:
            if not isinstance(resume, str) and resume and directory is not None:
                # what it reads is kept for the load below (one read of the files)
                checkpoint, broken = directory.checkpoint_to_resume()
            self.optimizer.init(self.model.trainable_parameters())
            for column, state, key in self.hparam_sources:
                if state[key].size != 1:
                    raise ValueError(f"hyperparameter {column!r} is not a scalar; cannot log it")
            self.train_state = init_train_state(self.model, precision=self.settings.precision,
                                                ema=self.settings.ema)
            meta = self._load(checkpoint, allowed, directory) if checkpoint else {}
        finally:
            drop_kept()  # a refused resume does not hold the checkpoint in memory
        position = meta.get("data_position", {"epoch": 0, "index": 0})
        run = _Run(step=meta.get("step", 0), resumed=bool(meta), directory=directory,
                   data=BatchStream(self.source, position["epoch"], position["index"]),
                   pending=PendingValues(self.step_columns))
        if meta:
            saved = meta.get("run", {})
            run.saved_at = run.step
            run.evaluated_at = saved.get("evaluated_at", -1)
            run.last_row, run.last_eval = saved.get("last_row", {}), saved.get("last_eval", {})
            run.best = saved.get("best")
        run.ended = meta.get("ended") if meta else (
            directory.ended() if resume is True and directory is not None else None)
        run.finished = self._has_finished(run, meta)
        self.run_id = meta.get("run_id") or (directory.run_id() if directory else None)
        run_dir = self.run_dir if self.rank == 0 else None  # only rank 0 writes files
        # settings.log needs a run_dir (checked in __init__)
        if run_dir is not None and self.settings.log and not run.finished:
            run.log = RunLog(run_dir, self.settings.columns)
            run.log.open(meta.get("log_position"), last_row=_last_row(meta))
        if run_dir is not None and meta and directory is not None:  # every check passed
            self.run_id = self.run_id or self._new_run_id()  # a run made before run ids
            directory.adopt(self.run_id, self._file_names())
            directory.set_aside(broken, checkpoint)
        if run_dir is not None and self.settings.log and not run.finished:
            run.system = SystemLog(run_dir, start_step=run.step)
        if run_dir is not None and not meta and not run.finished:
            write_json_atomic(os.path.join(run_dir, "config.json"),
                              {**self.settings.to_json(), "run_id": self.run_id})
        if self.rank == 0 and self.settings.report_every:
            run.report = ProgressDisplay(self.total_steps, stream=self.stream,
                                         progress=self.progress, start_step=run.step)
        return run

    def _load(self, path: str, allowed: frozenset[str], directory: RunDirectory | None
              ) -> dict:
        """Load a checkpoint after checking it continues this run; return its meta."""
        meta = read_meta(path, required=TRAINER_META_KEYS)
        changed = self.settings.differences(meta["config"], allowed)
        if changed:
            raise CheckpointError(
                f"checkpoint {path} was made with " + "; ".join(changed)
                + ". Pass fit(..., allow_changes=(...)) naming what you changed on purpose."
            )
        here = directory.run_id() if directory is not None else None
        if here and meta.get("run_id") and meta["run_id"] != here:
            raise CheckpointError(
                f"checkpoint {path} belongs to another run (run id {meta['run_id']}); "
                f"{directory.path if directory else ''} holds run {here}. Resume from a "
                "checkpoint of this run, or start the other run's directory instead")
        meta = load_checkpoint(path, self.model, self.optimizer, required=TRAINER_META_KEYS,
                               train_state=self.train_state)
        self._check_step(path, meta["step"])
        if self.settings.log and meta.get("log_position") is None:
            raise CheckpointError(f"checkpoint {path} was saved without a log")
        for i, cb in enumerate(self.callbacks):
            if hasattr(cb, "load_state_dict") and str(i) in meta.get("callbacks", {}):
                cb.load_state_dict(meta["callbacks"][str(i)])
        self.last_checkpoint = path
        self.step = meta["step"]
        return meta

    def _check_step(self, path: str, step: int) -> None:
        """The optimizer's step counter must be the checkpoint's step (float16: at most it,
        since a skipped update does not move the counter)."""
        for key, value in cast(list[tuple[str, mx.array]], tree_flatten(self.optimizer.state)):
            if key == "step" or key.endswith(".step"):
                counter = int(cast(int, value.item()))  # host waits, once per resume
                if counter > step or (counter != step and self.settings.precision != "float16"):
                    raise CheckpointError(
                        f"checkpoint {path}: meta.json says step {step} but the optimizer "
                        f"state ({key} in optimizer.safetensors) says {counter}; its files "
                        "disagree")

    def _has_finished(self, run: _Run, meta: dict) -> bool:
        """Whether the run had ended (recorded in its last checkpoint, or in the run directory
        when it saved none) and this call does not make it longer."""
        if run.ended is None:
            return False
        if not meta:  # ended without a checkpoint: nothing to continue from
            return True
        if run.ended["reason"] == "stopped":
            saved = meta["config"]
            return all(saved.get(k) == getattr(self.settings, k) for k in ("max_steps", "epochs"))
        return self._done(run)

    def _start(self, run: _Run) -> Callable | None:
        """Build the compiled step and send the ``start`` event (``None``: the run had
        finished). A fresh start that fails here removes the files it created."""
        try:
            train_step = None if run.finished else self._build_step()
            self._dispatch({"event": "start", "step": run.step, "resumed": run.resumed,
                            "run_dir": self.run_dir, "finished": run.finished})
        except BaseException:
            if not run.resumed:
                run.close(failed=True, refused=True)
            raise
        return train_step

    def _build_step(self) -> Callable:
        """Memory limits, gradient checkpointing, then the compiled step."""
        if self.memory_limits["memory"] is not None:
            mx.set_memory_limit(self.memory_limits["memory"])
        if self.memory_limits["cache"] is not None:
            mx.set_cache_limit(self.memory_limits["cache"])
        if self.settings.grad_checkpoint:
            checkpoint_blocks(self.model)
        s = self.settings
        return make_train_step(
            self.model, self.loss_fn, self.optimizer, grad_accum=s.grad_accum,
            clip_norm=s.clip_norm, grad_norm=s.track_norm,
            group=self.group if self.world_size > 1 else None, compile=s.compile,
            precision=s.precision, ema=s.ema, train_state=self.train_state,
        )

    # ------------------------------------------------------------------ one update
    def _done(self, run: _Run) -> bool:
        if self.total_steps is not None:
            return run.step >= self.total_steps
        if self.settings.max_steps is not None and run.step >= self.settings.max_steps:
            return True
        # No total: max_steps is None (a total would be derived from it), so TrainerSettings
        # holds the run length in epochs, each of unknown length.
        assert self.settings.epochs is not None, "a run without max_steps needs epochs"
        return run.data.peek_epoch() >= self.settings.epochs

    def _updates_to_boundary(self, run: _Run) -> int:
        """Updates before the next step at which rows, a report, an evaluation or a checkpoint
        are due, or the run ends (1 when the end is known only by peeking at the data)."""
        s = self.settings
        every = [s.log_every, s.eval_every or 0, s.checkpoint_every or 0,
                 s.report_every if run.report is not None else 0]
        if self.total_steps is None:
            return 1  # epochs of unknown length: _done peeks at the data after every update
        boundary = min((run.step // k + 1) * k for k in every if k > 0)
        return max(min(boundary, self.total_steps) - run.step, 1)

    def _updater(self, run: _Run, train_step: Callable) -> Callable[[], None]:
        """``update()``: one optimizer update; its values stay on the device.

        Everything that does not change during a run is looked up once here, so that an
        update costs little more host work than a hand-written loop's (the batch, the seed,
        the compiled call, the wait). On a GPU the host queues update k and then waits for
        update k-1, so that its Python work overlaps the device's; on the CPU backend the
        device is the same cores (BLAS threads included), so the host waits for each update
        as a hand-written loop does instead of competing with it for them.
        """
        data, pending, shapes = run.data, run.pending, run.shapes
        accum, rank, world = self.settings.grad_accum, self.rank, self.world_size
        seed = self.settings.seed
        state = [self.model.state, self.optimizer.state, self.train_state]
        hparams = [(state_dict, key) for _, state_dict, key in self.hparam_sources]
        scaled = "loss_scale" in self.train_state
        train_state, count_tokens = self.train_state, self.count_tokens
        evaluate = mx.async_eval if _pipelined() else mx.eval

        def update() -> None:
            whole = [to_device(data.next()) for _ in range(accum)]
            batches = whole if world == 1 else [shard(b, rank, world) for b in whole]
            step = run.step
            mx.random.seed(seed + step)  # exact resume of dropout etc.
            scale = train_state["loss_scale"] if scaled else None  # the scale this update uses
            try:
                loss, grad_norm = train_step(*batches)
            except (ValueError, TypeError, RuntimeError) as e:
                raise _batch_error(step, batches, e) from e
            values = [loss] if grad_norm is None else [loss, grad_norm]
            values += [state_dict[key] for state_dict, key in hparams]
            if scaled:
                values += [scale, train_state["skipped"]]
            if count_tokens is not None:  # the global batch's tokens
                values.append(sum((count_tokens(b) for b in whole[1:]),
                                  count_tokens(whole[0])).astype(mx.float32))
            shapes.add(_shapes(batches))
            evaluate(state, values)
            pending.add(step, data.epoch, values)
            run.step = self.step = step + 1

        return update

    # ------------------------------------------------------------------ block boundary
    def _write_rows(self, run: _Run) -> None:
        """Fetch the pending values, write them as rows, stop on the first non-finite one."""
        where, table = run.pending.take()  # host waits for the block
        if not where:
            return
        names = run.pending.names
        bad = _first_non_finite(table, names)
        if bad is not None:
            rows = run.pending.rows(where[:bad + 1], table[:bad + 1])
            self._emit(run, rows)
            if run.log is not None:
                run.log.flush(sync=True)
            row = rows[-1]
            raise NonFiniteError(row["step"], row["loss"], row.get("grad_norm", math.nan),
                                 self.last_checkpoint)
        run.last_row = run.pending.rows(where[-1:], table[-1:])[0]
        if "tokens" in names:
            run.tokens += float(table[:, names.index("tokens")].sum(dtype=np.float64))
        if run.log is not None:
            run.log.write_train(names, where, table)
        if self.callbacks:
            for row in run.pending.rows(where, table):
                run.stop = self._dispatch(_event(row)) or run.stop
        if run.system is not None:
            run.system.record(run.step, shapes=len(run.shapes),
                              tokens=run.tokens if self.count_tokens else None)

    def _salvage_rows(self, run: _Run) -> None:
        """After an error: keep every finished update's row (nothing done is lost)."""
        try:
            self._write_rows(run)
            if run.log is not None:
                run.log.flush(sync=True)
        except Exception:  # the original error is the one to report
            pass

    def _emit(self, run: _Run, rows: list[dict]) -> None:
        if run.log is not None:
            run.log.write(rows)
        if self.callbacks:
            for row in rows:
                run.stop = _stronger(run.stop, self._dispatch(_event(row)))

    def _dispatch(self, info: dict) -> str | None:
        """Call every callback (on every rank: their decisions must agree); return STOP when
        one asked for it, else PAUSE when one asked for that."""
        asked = None
        for cb in self.callbacks:
            asked = _stronger(asked, cb(dict(info)))
        return asked

    def _report(self, run: _Run) -> None:
        if run.report is None:  # no console report (report_every=0, or not rank 0)
            return
        run.report({
            "step": run.step, "loss": run.last_row.get("loss", math.nan),
            "learning_rate": run.last_row.get(self._rate_column, math.nan),
            "peak_memory": mx.get_peak_memory(), "compiled_shapes": len(run.shapes),
            "tokens": run.tokens if self.count_tokens else None,
            "samples": samples_per_update(run.shapes, self.world_size),
        })

    def _evaluate_and_log(self, run: _Run) -> None:
        answer = self._answer_weights()
        results = self.evaluate() if answer is None else self._with_weights(answer, self.evaluate)
        if self.settings.ema is not None:
            results.update({f"ema_{k}": v for k, v in
                            self._with_weights(ema_weights(self.train_state), self.evaluate)
                            .items()})
        row = {"kind": "eval", "step": run.step, "epoch": run.data.epoch, **results}
        if run.log is not None:
            run.log.write([row])
        if run.report is not None:
            run.report.message(f"eval @ step {run.step}: "
                               + ", ".join(f"{k} {v:.4f}" for k, v in results.items()))
        run.last_eval = _event(row)
        run.evaluated_at = run.step
        if self.settings.keep_best is not None:
            self._keep_if_best(run, results)
        run.stop = _stronger(run.stop, self._dispatch(run.last_eval))

    def _save(self, run: _Run, ended: dict | None = None) -> None:
        """Write a checkpoint (rank 0) after the log rows up to this step are on disk.
        ``ended``: the final checkpoint records how the run ended.

        The weights are checked first: a non-finite update (possible even with a finite loss
        and gradient, e.g. from a huge rate) must never replace the last good checkpoint.
        """
        if not _all_finite(self.model.trainable_parameters()):
            raise NonFiniteError(run.step - 1, math.nan, math.nan, self.last_checkpoint,
                                 detail="its update left non-finite weights")
        run.saved_at = run.step
        if self.rank != 0:
            return
        log_position = None
        if run.log is not None:
            run.log.flush(sync=True)
            log_position = run.log.position()
        meta = {
            "data_position": {"epoch": run.data.epoch, "index": run.data.index},
            "seed": self.settings.seed,
            "random": "the key is reseeded to seed + step before every update",
            "log_position": log_position,
            "callbacks": {str(i): cb.state_dict() for i, cb in enumerate(self.callbacks)
                          if hasattr(cb, "state_dict")},
            "run": {"evaluated_at": run.evaluated_at, "last_row": run.last_row,
                    "last_eval": run.last_eval, "best": run.best},
            "config": self.settings.to_json(),
            "run_id": self.run_id,
            "ended": ended,
            # mlx.core sets __version__ at import; its stubs do not declare it
            "mlx_version": mx.__version__,  # type: ignore[attr-defined]
        }
        # checkpoint_every != 0 needs a run_dir (checked in __init__), so rank 0 has one
        assert self.run_dir is not None, "a checkpoint needs the run directory"
        root = os.path.join(self.run_dir, "checkpoints")
        self.last_checkpoint = save_checkpoint(root, run.step, self.model, self.optimizer, meta,
                                               train_state=self.train_state)
        prune_checkpoints(root, self.settings.keep_checkpoints, intact=self.last_checkpoint)
        self._dispatch({"event": "checkpoint", "step": run.step, "path": self.last_checkpoint})

    def _answer_weights(self) -> Any:
        """The weights an optimizer answers with when they are not the model's own: a
        schedule-free optimizer trains at ``y`` but its result is the average ``x``
        (``optimizer.averaged_parameters``). ``None`` for every other optimizer."""
        averaged = getattr(self.optimizer, "averaged_parameters", None)
        return averaged(self.model.trainable_parameters()) if callable(averaged) else None

    def _with_weights(self, weights: Any, fn: Callable[[], Any]) -> Any:
        """Call ``fn`` with the model's trainable weights replaced by ``weights``."""
        own = self.model.trainable_parameters()
        self.model.update(weights)
        try:
            return fn()
        finally:
            self.model.update(own)

    def _keep_if_best(self, run: _Run, results: dict[str, float]) -> None:
        """Save this step's checkpoint under ``best/`` when its metric beats the best so far."""
        if self.settings.keep_best is None:  # no best evaluation is kept
            return
        metric, mode = self.settings.keep_best
        value = results[metric]
        best = run.best["value"] if run.best else None
        if not math.isfinite(value) or (
                best is not None and not (value < best if mode == "min" else value > best)):
            return
        run.best = {"value": value, "step": run.step}
        if self.rank != 0 or run.directory is None:
            return
        root = os.path.join(run.directory.path, "best")
        meta = {"best": {"metric": metric, "mode": mode, **run.best},
                "config": self.settings.to_json(), "run_id": self.run_id}
        save_checkpoint(root, run.step, self.model, self.optimizer, meta,
                        train_state=self.train_state)
        prune_checkpoints(root, 1)

    def _restore_best(self, run: _Run) -> None:
        """Load the best evaluation's weights into the model (the EMA ones for an ``ema_``
        metric), after the last checkpoint was saved."""
        # run.best is set only with keep_best (restore_best needs it: TrainerSettings)
        if run.best is None or self.settings.keep_best is None:
            return
        if run.directory is None:
            raise ValueError("restore_best needs a run_dir (the best weights are kept on disk)")
        path = os.path.join(run.directory.path, "best", f"step_{run.best['step']:08d}")
        files = read_checkpoint_arrays(path)  # read once, verified, checked finite
        if self.settings.keep_best[0].startswith("ema_"):
            arrays = files["train_state.safetensors"]
            weights = [(k[len("ema."):], v) for k, v in arrays.items() if k.startswith("ema.")]
        elif self._answer_weights() is not None:  # schedule-free: the averaged x
            arrays = files["optimizer.safetensors"]
            weights = [(k[:-len(".x")], v) for k, v in arrays.items() if k.endswith(".x")]
        else:
            weights = list(files["model.safetensors"].items())
        self.model.load_weights(weights, strict=False)
        mx.eval(self.model.parameters())

    def _finish(self, run: _Run) -> None:
        """The end: remaining rows, final evaluation and checkpoint (recording how the run
        ended), the ``end`` event, the ending in the run directory.

        A run that had finished only gets its ``end`` event: resuming it changes nothing.
        Otherwise each step is skipped when already done at this step."""
        if run.finished:
            assert run.ended is not None, "a finished run has ended"
            self._dispatch({"event": "end", "step": run.step,
                            "stopped_early": run.ended["reason"] == "stopped"})
            return
        self._write_rows(run)
        if run.report is not None and run.last_row and run.step % self.settings.report_every:
            self._report(run)
        if self.eval_data is not None and run.evaluated_at != run.step:
            self._evaluate_and_log(run)
        ended = None if run.stop == PAUSE else {  # a pause: resume=True continues the run
            "step": run.step, "reason": "stopped" if run.stop == STOP else (
                "max_steps" if self.settings.max_steps is not None
                and run.step >= self.settings.max_steps else "epochs")}
        if self.settings.checkpoint_every != 0 and run.saved_at != run.step:
            self._save(run, ended)
        if run.log is not None:
            run.log.flush(sync=True)
        self._dispatch({"event": "end", "step": run.step, "stopped_early": bool(run.stop)})
        if run.directory is not None and self.rank == 0 and ended is not None:
            run.directory.record_end(ended)

    def _stop_interrupted(self, run: _Run) -> None:
        """Ctrl-C: the rows so far and a checkpoint to resume from. No evaluation (the
        resumed run's log must be the uninterrupted run's) and no ``end`` event: the run is
        not finished; callbacks get ``{"event": "interrupted", "step"}``."""
        self._write_rows(run)
        if run.report is not None and run.last_row and run.step % self.settings.report_every:
            self._report(run)
        if run.report is not None:
            run.report.message(f"interrupted: stopping after step {run.step}"
                               + (", saving a checkpoint (Ctrl-C again aborts)"
                                  if self.settings.checkpoint_every != 0 else ""))
        if self.settings.checkpoint_every != 0 and run.saved_at != run.step:
            self._save(run)
        if run.log is not None:
            run.log.flush(sync=True)
        self._dispatch({"event": "interrupted", "step": run.step})

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, eval_data: Iterable | None = None) -> dict[str, float]:
        """Evaluate every metric over ``eval_data`` (default: the trainer's).

        Each batch's metrics (batch means) are weighted by its size: its rows, or its real
        tokens when the trainer was given ``tokens=`` (so padding and filler rows count for
        nothing, and every token weighs the same).

        Returns ``{"eval_loss": ..., "eval_<metric>": ...}``. In data parallel each rank
        evaluates every ``world_size``-th batch (rank ``r`` takes batches ``r, r+w, ...``) and
        the batch-weighted sums are combined with one ``all_sum``: every rank gets the same
        result, equal to one process evaluating the whole set.
        """
        data = self.eval_data if eval_data is None else eval_data
        if data is None:
            raise ValueError("no eval_data given")
        source = as_source(data, name="eval_data")
        if not hasattr(self, "_eval_step"):
            self._eval_step = make_eval_step(self.model, self.metrics)
        was_training = self.model.training
        self.model.train(False)
        totals = {name: mx.array(0.0) for name in self.metrics}
        count = mx.array(0.0)
        try:
            for i, batch in enumerate(source.epoch(0)):
                if i % self.world_size != self.rank:
                    continue  # another rank's share
                batch = to_device(batch)
                try:
                    values = self._eval_step(batch)
                except (ValueError, TypeError, RuntimeError) as e:
                    raise _batch_error(f"eval batch {i}", [batch], e) from e
                n = batch_size_of(batch) if self.count_tokens is None else \
                    self.count_tokens(batch).astype(mx.float32)
                totals = {k: totals[k] + values[k] * n for k in totals}
                count = count + n
        finally:
            self.model.train(was_training)
        sums = mx.stack([*totals.values(), count])
        if self.world_size > 1:
            sums = mx.distributed.all_sum(sums, group=self.group)
        host = np.array(sums, dtype=np.float64)  # host waits for the evaluation
        if host[-1] == 0:
            raise ValueError("eval_data gave no batch")
        means = host[:-1] / host[-1]
        return {f"eval_{k}": float(v) for k, v in zip(totals, means.tolist(), strict=True)}

    def _on_all_ranks(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn``; if it fails on any rank, fail on every rank (instead of hanging)."""
        error = None
        try:
            result = fn()
        except Exception as e:  # re-raised below, after the ranks agree
            error, result = e, None
        if self.world_size > 1:
            failed = mx.distributed.all_sum(mx.array(int(error is not None)), group=self.group)
            if failed.item() and error is None:  # host waits for the other ranks
                raise RuntimeError("another rank failed while preparing the run (see its error)")
        if error is not None:
            raise error
        return result


def _pipelined() -> bool:
    """Whether the host queues update k before waiting for update k-1 (see
    :meth:`Trainer._updater`): on a GPU, not on the CPU backend."""
    return mx.default_device().type == mx.DeviceType.gpu


def _first_non_finite(table: np.ndarray, names: Sequence[str]) -> int | None:
    """The first row of a block whose update went wrong, or ``None``: a non-finite loss or
    gradient norm, or (float16) a skipped update whose loss scale could not be lowered
    further. A skipped update at a higher scale is expected: the scale halves and training
    goes on."""
    bad = ~np.isfinite(table[:, names.index("loss")])
    if "grad_norm" in names:
        bad |= ~np.isfinite(table[:, names.index("grad_norm")])
    if "skipped" in names:
        skipped = table[:, names.index("skipped")] != 0
        lowered = skipped & (table[:, names.index("loss_scale")] > LossScale.minimum)
        bad = (bad | skipped) & ~lowered
    found = np.flatnonzero(bad)
    return int(found[0]) if found.size else None


def _event(row: dict) -> dict:
    """A log row as a callback event: ``kind`` becomes ``event``."""
    return {"event": row["kind"], **{k: v for k, v in row.items() if k != "kind"}}


def _stronger(asked: str | None, answer: Any) -> str | None:
    """STOP over PAUSE over nothing (any other answer of a callback counts for nothing)."""
    if STOP in (asked, answer):
        return STOP
    return PAUSE if PAUSE in (asked, answer) else None


def _last_row(meta: dict) -> dict | None:
    """The log row a checkpoint was saved after: the evaluation at its step, or else the
    training row of the step before (``None`` for a checkpoint that did not record it)."""
    saved = meta.get("run")
    if not isinstance(saved, dict):
        return None
    last_eval = saved.get("last_eval") or {}
    if saved.get("evaluated_at") == meta["step"] and last_eval:
        return {"kind": last_eval["event"],
                **{k: v for k, v in last_eval.items() if k != "event"}}
    return saved.get("last_row") or {}


def _check_allowed(allow_changes: Iterable[str]) -> frozenset[str]:
    if isinstance(allow_changes, str):
        allow_changes = (allow_changes,)
    allowed = frozenset(allow_changes)
    # the log's columns cannot change: the resumed rows continue the same files
    changeable = [k for k in RESUME_KEYS if k != "columns"]
    bad = sorted(allowed - set(changeable))
    if bad:
        raise ValueError(f"allow_changes: {bad} cannot be changed on resume; choose from "
                         f"{changeable}")
    return allowed


def _shapes(batches: list) -> tuple:
    """The shapes of an update's micro-batches: each new one compiles the step again."""
    return tuple([tuple([a.shape for a in (b.values() if isinstance(b, dict) else b)])
                  for b in batches])


def _default_group() -> Any:
    if not mx.distributed.is_available():
        return None
    return mx.distributed.init()


def _batch_error(step: int | str, batches: list, error: Exception) -> ValueError:
    def shapes(batch: Any) -> Any:
        items = batch.items() if isinstance(batch, dict) else enumerate(batch)
        return {k: tuple(v.shape) for k, v in items}

    where = f"step {step}" if isinstance(step, int) else step
    return ValueError(
        f"{where}: the model or loss failed on a batch with shapes "
        f"{[shapes(b) for b in batches]}: {error}"
    )
