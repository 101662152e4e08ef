"""The training loop.

Reading order of :meth:`Trainer.fit`: prepare the run directory; initialise the optimizer; load
a checkpoint (before compiling); compile the step; then, per optimizer update: take
``grad_accum`` batches, shard them by rank, reseed the random key from ``seed + step``, call the
compiled step, keep its loss / gradient norm / hyperparameters as device arrays. Every
``log_every`` updates (and before a report, an evaluation, a checkpoint or the end) the pending
values are stacked and fetched in one transfer, checked for NaN/inf, and written as rows.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TextIO

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np

from .callbacks import STOP
from .checkpoint import list_checkpoints, load_checkpoint, prune_checkpoints, save_checkpoint
from .data import BatchStream, as_source, batch_size_of, shard, to_device
from .errors import CheckpointError, NonFiniteError
from .logging import ConsoleReport, RunLog
from .metrics import accuracy
from .step import make_eval_step, make_train_step

__all__ = ["Trainer", "accuracy", "scheduled_hyperparameters"]

# Settings that must agree between a checkpoint and the run resuming from it.
_RESUME_KEYS = (
    "max_steps", "epochs", "seed", "grad_accum", "clip_norm", "world_size", "columns",
)


def _all_finite(tree: Any) -> bool:
    """Whether every array of a tree is finite (one reduction, one host wait)."""
    from mlx.utils import tree_flatten

    arrays = [mx.all(mx.isfinite(a)) for _, a in tree_flatten(tree)]
    return bool(mx.all(mx.stack(arrays)).item()) if arrays else True  # host waits


def scheduled_hyperparameters(optimizer: optim.Optimizer) -> list[str]:
    """Names logged per step: ``learning_rate`` and every other key of ``optimizer._schedulers``.

    Example:
        >>> import mlx.optimizers as optim
        >>> scheduled_hyperparameters(optim.SGD(learning_rate=optim.cosine_decay(0.1, 10)))
        ['learning_rate']
    """
    names = ["learning_rate"] if "learning_rate" in optimizer.state else []
    return names + [k for k in getattr(optimizer, "_schedulers", {}) if k not in names]


class Trainer:
    """Train an ``mlx.nn.Module`` with one compiled step, logging every step to a run directory.

    Args:
        model: the module to train.
        loss_fn: ``loss_fn(model, *batch)`` for tuple batches, ``loss_fn(model, **batch)`` for
            dict batches; returns the scalar mean loss.
        optimizer: any ``mlx.optimizers`` optimizer; its learning rate and any hyperparameter
            registered in ``optimizer._schedulers`` may be schedules.
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
        checkpoint_every: save a checkpoint every this many updates (and at the end);
            ``None`` saves only at the end, ``0`` never.
        keep_checkpoints: how many recent checkpoints to keep.
        log_every: updates per block: the per-step values stay on the device for this many
            updates and are then fetched in one transfer and written.
        report_every: console report interval in updates (``0`` turns the report off).
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
        callbacks: plain callables taking an event dict (see :mod:`trainers.callbacks`). A
            callback returning :data:`STOP` from a ``train`` event stops the run at the end
            of that block (rows are delivered per block of ``log_every`` updates); from an
            ``eval`` event, right after that evaluation.
        group: an ``mx.distributed`` group; default ``mx.distributed.init()`` (size 1 when not
            launched with ``mlx.launch``). With size > 1 every global batch is split by rank,
            gradients are averaged, and only rank 0 writes files and reports.
        config: extra JSON-serialisable settings recorded in ``config.json`` and checkpoints.
        stream: where the console report goes (default stdout).
        progress: show a progress bar (default: on a terminal for runs of 1000+ updates).

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
        checkpoint_every: int | None = None,
        keep_checkpoints: int = 3,
        log_every: int = 50,
        report_every: int = 100,
        log: bool = True,
        seed: int = 0,
        grad_accum: int = 1,
        clip_norm: float | None = None,
        grad_norm: bool = False,
        compile: bool = True,
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
        if max_steps is None and epochs is None:
            raise ValueError("give the run length: max_steps or epochs")
        for name, value in (("max_steps", max_steps), ("epochs", epochs)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name, value in (
            ("log_every", log_every), ("keep_checkpoints", keep_checkpoints),
            ("grad_accum", grad_accum),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name, value in (
            ("eval_every", eval_every), ("checkpoint_every", checkpoint_every),
            ("report_every", report_every),
        ):
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be a non-negative int or None, got {value!r}")
        if clip_norm is not None and not clip_norm > 0:
            raise ValueError(f"clip_norm must be positive or None, got {clip_norm!r}")
        if eval_every and eval_data is None:
            raise ValueError("eval_every is set but eval_data is missing")
        for cb in callbacks:
            if not callable(cb):
                raise TypeError(f"callbacks must be callables taking a dict, got {cb!r}")

        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        self.source = as_source(train_data, name="train_data")
        self.eval_data = eval_data
        if eval_data is not None:
            as_source(eval_data, name="eval_data")  # fail early on a wrong type
        self.metrics = {"loss": loss_fn, **dict(metrics or {})}
        if run_dir is None and (log or checkpoint_every != 0):
            raise ValueError("run_dir=None needs log=False and checkpoint_every=0")
        self.run_dir = None if run_dir is None else os.fspath(run_dir)
        self.callbacks = list(callbacks)
        self.group = group if group is not None else _default_group()
        self.rank = self.group.rank() if self.group is not None else 0
        self.world_size = self.group.size() if self.group is not None else 1
        self.stream = stream
        self.progress = progress
        self.compile = compile
        self.hparams = scheduled_hyperparameters(optimizer)
        eval_columns = [f"eval_{name}" for name in self.metrics] if eval_data is not None else []
        self.track_norm = bool(grad_norm or clip_norm is not None)
        norm_column = ["grad_norm"] if self.track_norm else []
        columns = ["kind", "step", "epoch", "loss", *norm_column, *self.hparams, *eval_columns]
        self.total_steps = max_steps
        if epochs is not None and self.source.length is not None:
            from_epochs = epochs * self.source.length // grad_accum
            if from_epochs < 1:
                raise ValueError(f"{epochs} epoch(s) give no full update of {grad_accum} batches")
            self.total_steps = min(from_epochs, max_steps or from_epochs)
        self.epochs = epochs
        self.settings = {
            "max_steps": max_steps, "epochs": epochs, "total_steps": self.total_steps,
            "seed": seed, "grad_accum": grad_accum, "clip_norm": clip_norm,
            "world_size": self.world_size, "columns": columns, "log_every": log_every,
            "report_every": report_every, "eval_every": eval_every,
            "checkpoint_every": checkpoint_every, "keep_checkpoints": keep_checkpoints,
            "log": log, "optimizer": type(optimizer).__name__, "user": dict(config or {}),
        }
        try:
            json.dumps(self.settings)
        except TypeError as e:
            raise TypeError(f"config must be JSON-serialisable: {e}") from None
        self.checkpoint_root = os.path.join(self.run_dir or "", "checkpoints")
        self.last_checkpoint: str | None = None
        self.step = 0

    # ------------------------------------------------------------------ the loop
    def fit(self, resume: bool | str | os.PathLike = False, overwrite: bool = False) -> dict:
        """Run training; return the last training row merged with the last eval results.

        Args:
            resume: ``True`` continues from the newest checkpoint in ``run_dir`` (or starts
                fresh when there is none); a path resumes from that checkpoint directory.
            overwrite: allow starting fresh in a run directory that already holds a log or
                checkpoints (they are replaced). Without it that is an error.

        Raises:
            NonFiniteError: a loss or gradient norm was NaN/inf; names the first such step.
            ValueError: bad batches, a non-writable or occupied run directory, a mismatched
                checkpoint (:class:`CheckpointError`).
            FileNotFoundError: the checkpoint to resume from does not exist.
        """
        s = self.settings
        seed, accum, total = s["seed"], s["grad_accum"], self.total_steps
        is_main = self.rank == 0

        # 1. Run directory, optimizer state, checkpoint (loaded before compiling).
        def prepare() -> dict | None:
            checkpoint = self._prepare_run_dir(resume, overwrite)
            self.optimizer.init(self.model.trainable_parameters())
            for name in self.hparams:
                if self.optimizer.state[name].size != 1:
                    raise ValueError(f"hyperparameter {name!r} is not a scalar; cannot log it")
            return self._restore(checkpoint) if checkpoint else None

        meta = self._on_all_ranks(prepare)
        step = meta["step"] if meta else 0
        position = meta["data_position"] if meta else {"epoch": 0, "index": 0}
        log = RunLog(self.run_dir, s["columns"]) if s["log"] and is_main else None
        if log is not None:
            log.open(meta["log_position"] if meta else None)
        if is_main and not meta and self.run_dir is not None:
            self._write_json("config.json", s)

        # 2. Data, compiled steps, report.
        data = BatchStream(self.source, position["epoch"], position["index"])
        train_step = make_train_step(
            self.model, self.loss_fn, self.optimizer, grad_accum=accum,
            clip_norm=s["clip_norm"], group=self.group if self.world_size > 1 else None,
            grad_norm=self.track_norm, compile=self.compile,
        )
        state = [self.model.state, self.optimizer.state, mx.random.state]
        report = None
        if is_main and s["report_every"]:
            report = ConsoleReport(
                total, stream=self.stream, progress=self.progress, start_step=step
            )
        pending: list[tuple[int, int, mx.array, mx.array | None, list[mx.array]]] = []
        last_row: dict = {}
        last_eval: dict = {}
        evaluated_at = saved_at = -1
        stop = False

        def flush() -> bool:
            """Fetch the pending per-step values in one transfer and write them as rows;
            True when a callback asked to stop."""
            nonlocal last_row
            if not pending:
                return False
            columns = [mx.stack([p[2] for p in pending])]
            if self.track_norm:
                columns.append(mx.stack([p[3] for p in pending]))
            columns += [mx.stack([p[4][i] for p in pending]) for i in range(len(self.hparams))]
            table = np.array(mx.stack(columns, axis=1))  # host waits for the block
            names = ["loss", *(["grad_norm"] if self.track_norm else []), *self.hparams]
            rows = []
            for (t, epoch, *_), values in zip(pending, table.tolist(), strict=True):
                row = {"kind": "train", "step": t, "epoch": epoch}
                row.update(zip(names, values, strict=True))
                rows.append(row)
                norm = row.get("grad_norm", 0.0)
                if not (math.isfinite(row["loss"]) and math.isfinite(norm)):
                    pending.clear()
                    self._emit(log, rows)
                    if log is not None:
                        log.flush(sync=True)
                    raise NonFiniteError(t, row["loss"], row.get("grad_norm", math.nan),
                                         self.last_checkpoint)
            pending.clear()
            last_row = rows[-1]
            return self._emit(log, rows)

        # The run directory is ours and the checkpoint loaded: callbacks may now write files.
        self._dispatch({"event": "start", "step": step, "resumed": meta is not None,
                        "run_dir": self.run_dir})
        try:
            # 3. One optimizer update per iteration.
            while not self._done(step, data):
                batches = [shard(to_device(data.next()), self.rank, self.world_size)
                           for _ in range(accum)]
                epoch = data.epoch
                mx.random.seed(seed + step)
                try:
                    loss, grad_norm = train_step(*batches)
                except (ValueError, TypeError, RuntimeError) as e:
                    raise _batch_error(step, batches, e) from e
                hparams = [self.optimizer.state[name] for name in self.hparams]
                mx.async_eval(state, loss, *([] if grad_norm is None else [grad_norm]))
                if pending:
                    mx.eval(pending[-1][2])  # host waits for the previous update only
                pending.append((step, epoch, loss, grad_norm, hparams))
                step += 1
                self.step = step

                # 4. Block boundary: write rows, report, evaluate, checkpoint.
                due_report = report is not None and step % s["report_every"] == 0
                due_eval = bool(s["eval_every"]) and step % s["eval_every"] == 0
                due_ckpt = bool(s["checkpoint_every"]) and step % s["checkpoint_every"] == 0
                if step % s["log_every"] == 0 or due_report or due_eval or due_ckpt:
                    stop = flush() or stop
                if due_report:
                    self._report(report, last_row, step)
                if due_eval:
                    last_eval = self._evaluate(step, epoch, log, report)
                    evaluated_at = step
                    stop = self._dispatch(last_eval) or stop
                if due_ckpt:
                    self._save(step, data, log)
                    saved_at = step
                if stop:
                    break

            # 5. The end: remaining rows, final evaluation and checkpoint.
            flush()
            if report is not None and last_row and step % s["report_every"]:
                self._report(report, last_row, step)
            if self.eval_data is not None and evaluated_at != step:
                last_eval = self._evaluate(step, data.epoch, log, report)
                self._dispatch(last_eval)
            if s["checkpoint_every"] != 0 and saved_at != step:
                self._save(step, data, log)
            self._dispatch({"event": "end", "step": step, "stopped_early": stop})
        except NonFiniteError:
            raise
        except BaseException:
            try:  # keep every finished update's row: nothing done before the error is lost
                flush()
            except NonFiniteError:
                pass
            raise
        finally:
            if log is not None:
                log.flush()
                log.close()
            if report is not None:
                report.close()
        result = {k: v for k, v in last_row.items() if k != "kind"}
        result.update({k: v for k, v in last_eval.items() if k != "event"})
        result["step"] = step
        return result

    # ------------------------------------------------------------------ pieces
    def _done(self, step: int, data: BatchStream) -> bool:
        if self.total_steps is not None:
            return step >= self.total_steps
        if self.settings["max_steps"] is not None and step >= self.settings["max_steps"]:
            return True
        return data.peek_epoch() >= self.epochs  # epochs of unknown length

    def _emit(self, log: RunLog | None, rows: list[dict]) -> bool:
        if log is not None:
            log.write(rows)
        stop = False
        for row in rows:
            info = {"event": row["kind"], **{k: v for k, v in row.items() if k != "kind"}}
            stop = self._dispatch(info) or stop
        return stop

    def _dispatch(self, info: dict) -> bool:
        """Call every callback (on every rank: their decisions must agree); True on STOP."""
        stop = False
        for cb in self.callbacks:
            if cb(dict(info)) == STOP:
                stop = True
        return stop

    def _report(self, report: ConsoleReport, row: dict, step: int) -> None:
        report({
            "step": step, "loss": row.get("loss", math.nan),
            "learning_rate": row.get("learning_rate", math.nan),
            "peak_memory": mx.get_peak_memory(),
        })

    def evaluate(self, eval_data: Iterable | None = None) -> dict[str, float]:
        """Evaluate every metric over ``eval_data`` (default: the trainer's); batch-size weighted.

        Returns ``{"eval_loss": ..., "eval_<metric>": ...}``. Runs on every rank over the whole
        set (no collectives), so all ranks agree.
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
        count = 0
        try:
            for i, batch in enumerate(source.epoch(0)):
                batch = to_device(batch)
                try:
                    values = self._eval_step(batch)
                except (ValueError, TypeError, RuntimeError) as e:
                    raise _batch_error(f"eval batch {i}", [batch], e) from e
                n = batch_size_of(batch)
                totals = {k: totals[k] + values[k] * n for k in totals}
                count += n
        finally:
            self.model.train(was_training)
        if count == 0:
            raise ValueError("eval_data gave no batch")
        means = np.array(mx.stack(list(totals.values()))) / count  # host waits for the eval
        return {f"eval_{k}": float(v) for k, v in zip(totals, means.tolist(), strict=True)}

    def _evaluate(self, step: int, epoch: int, log: RunLog | None, report) -> dict:
        results = self.evaluate()
        row = {"kind": "eval", "step": step, "epoch": epoch, **results}
        if log is not None:
            log.write([row])
        if report is not None:
            report.message(
                f"eval @ step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in results.items())
            )
        return {"event": "eval", "step": step, "epoch": epoch, **results}

    def _save(self, step: int, data: BatchStream, log: RunLog | None) -> None:
        """Write a checkpoint (rank 0) after the log rows up to ``step`` are on disk."""
        if not self.track_norm and not _all_finite(self.model.trainable_parameters()):
            # Without the per-step gradient norm, a non-finite gradient in the last update
            # shows only in the weights; never let it replace the last good checkpoint.
            raise NonFiniteError(step - 1, math.nan, math.nan, self.last_checkpoint,
                                 detail="its update left non-finite weights (pass "
                                        "grad_norm=True to check every gradient)")
        if self.rank != 0:
            return
        log_position = None
        if log is not None:
            log.flush(sync=True)
            log_position = log.position()
        callback_state = {
            str(i): cb.state_dict() for i, cb in enumerate(self.callbacks)
            if hasattr(cb, "state_dict")
        }
        meta = {
            "data_position": {"epoch": data.epoch, "index": data.index},
            "seed": self.settings["seed"],
            "random": "the key is reseeded to seed + step before every update",
            "log_position": log_position,
            "callbacks": callback_state,
            "config": self.settings,
            "mlx_version": mx.__version__,
        }
        self.last_checkpoint = save_checkpoint(
            self.checkpoint_root, step, self.model, self.optimizer, meta
        )
        prune_checkpoints(self.checkpoint_root, self.settings["keep_checkpoints"])
        self._dispatch({"event": "checkpoint", "step": step, "path": self.last_checkpoint})

    def _restore(self, path: str) -> dict:
        meta = load_checkpoint(path, self.model, self.optimizer)
        try:
            saved = meta["config"]
            for key in _RESUME_KEYS:
                if saved.get(key) != self.settings[key]:
                    raise CheckpointError(
                        f"checkpoint {path} was made with {key}={saved.get(key)!r}, "
                        f"this run has {key}={self.settings[key]!r}"
                    )
            if self.settings["log"] and meta["log_position"] is None:
                raise CheckpointError(f"checkpoint {path} was saved without a log")
            for i, cb in enumerate(self.callbacks):
                if hasattr(cb, "load_state_dict") and str(i) in meta["callbacks"]:
                    cb.load_state_dict(meta["callbacks"][str(i)])
            meta["data_position"]["epoch"], meta["data_position"]["index"]  # noqa: B018
        except KeyError as e:
            raise CheckpointError(f"checkpoint {path}: meta.json lacks {e}") from None
        self.last_checkpoint = path
        self.step = meta["step"]
        return meta

    def _prepare_run_dir(self, resume: bool | str | os.PathLike, overwrite: bool) -> str | None:
        """Check the run directory is writable; return the checkpoint to resume from."""
        if self.run_dir is None:
            if resume:
                raise ValueError("resume needs a run_dir")
            return None
        try:
            os.makedirs(self.run_dir, exist_ok=True)
            probe = os.path.join(self.run_dir, f".write_probe.{self.rank}")
            with open(probe, "w") as f:
                f.write("ok")
            os.remove(probe)
        except OSError as e:
            raise ValueError(f"run directory {self.run_dir!r} is not writable: {e}") from e
        if resume not in (False, True):
            path = os.fspath(resume)
            if not os.path.isdir(path):
                raise FileNotFoundError(f"checkpoint to resume from not found: {path}")
            return path
        found = list_checkpoints(self.checkpoint_root)
        if resume and found:
            return found[-1][1]
        has_log = os.path.exists(os.path.join(self.run_dir, "log.jsonl"))
        if (found or has_log) and not overwrite and not resume:
            raise ValueError(
                f"run directory {self.run_dir!r} already holds a run; pass resume=True to "
                "continue it or overwrite=True to replace it"
            )
        if self.rank == 0 and (overwrite or resume):
            prune_checkpoints(self.checkpoint_root, 0)
        return None

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

    def _write_json(self, name: str, value: dict) -> None:
        path = os.path.join(self.run_dir, name)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(value, f, indent=1, sort_keys=True)
        os.replace(path + ".tmp", path)


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
