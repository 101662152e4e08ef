"""The rate audit: were the logged rates the ones the run's saved config says?

A run directory holds what the run was configured to do (``config.json``: the trainer's
settings, with a description of every schedule; ``experiment.json`` for an ``mlx-schedules train``
run) and what it did (``log.jsonl`` and ``log.csv``: the rate each update used, read from the
optimizer's state). :func:`audit_run` checks the second against the first.

What it proves, when it passes:

- **Every logged rate equals its schedule, bit for bit.** For every training row and every
  rate column (``learning_rate``, every other scheduled hyperparameter such as ``momentum``,
  and ``learning_rate/i``... for parameter groups) it rebuilds the schedule from its saved
  config (:func:`mlx_schedules.from_config`; a constant rate from ``hyperparameters``),
  evaluates it in float32 at the optimizer step of that row, and compares: the logged number
  must be that float32 value exactly. The trainer logs the float32 value the optimizer used
  and writes it with every digit (``repr``), so an honest run matches exactly; a change of
  one float32 step (ulp) in any row fails. ``ulps=n`` admits ``n`` float32 steps (for a
  machine whose compiled kernels round a last bit differently; the tests run with 0).
- **The rows are the run's rows, once each, in order.** Training steps start at 0 and go up
  by one (a deleted, repeated or swapped row fails); each evaluation row sits after the
  training rows of the steps before it, once per step.
- **The two log files agree.** ``log.csv`` has the columns of ``config.json`` and the same
  rows as ``log.jsonl``, cell by cell (numbers compared as numbers, exactly).
- **The log reaches every checkpoint.** Each checkpoint's ``meta.json`` records how many
  bytes of both files it covers; the log must hold them, end a row there, and hold as many
  training rows before that point as the checkpoint has steps (rows cut from the end fail).
- With ``experiment.json``, the script's own optimizer section is compared as well: a script
  that built something other than its config fails there.

Float16 runs: an update whose gradients overflow is skipped without moving the optimizer's step
counter, so the row of step ``t`` shows the schedules at ``t`` minus the skips before it. The
audit evaluates each row at :func:`trainers.train_state.schedule_steps`, the trainer's own
definition of this. Their ``loss_scale`` column is checked against the loss-scaling rule
(:class:`trainers.train_state.LossScale`): 2^15 at step 0, halved (never below 1) after a
skipped update, doubled after ``growth_interval`` applied updates in a row, unchanged
otherwise, exactly.

Reduce-on-plateau: its rate is ``min(s(t), max(s(t)·f, min_lr))`` with a factor ``f`` that
changes only at evaluations. A learning-rate column is accepted as *scaled by a plateau
callback* only when a checkpoint's optimizer state holds that group's ``lr_factor`` (the mark
the callback leaves): then every row must equal that formula in float32 exactly, with ``f``
constant between evaluations, never above 1, never rising, and equal to the ``lr_factor``
of every checkpoint that saved one. Rates lowered without a plateau callback fail.

What it cannot prove:

- a schedule described only by probe values (a lambda, one of MLX's own schedules) cannot be
  rebuilt: its column is reported as not audited and the audit does not pass;
- rows cut after the last checkpoint look like a run stopped there;
- a plateau factor is inferred from the rows where no checkpoint saved it: any factor that
  reproduces every row exactly is accepted; a run that saved no checkpoint at all
  (``checkpoint_every=0``) leaves no mark of its plateau callback, and its lowered rates fail;
- the loss, gradient norm and evaluation values are not recomputed (only the rows' order).

Unusable input raises :class:`AuditInputError` (or ``FileNotFoundError`` for a missing file):
a missing or unreadable file, malformed JSON, a config that is not an object or lists no log
columns, a schedule config that does not rebuild (deeply nested, wrong types), a log without a
training row. The report (:class:`AuditReport`) names the first problem otherwise.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from collections.abc import Mapping
from typing import Any, cast

import mlx.core as mx
import numpy as np

import mlx_schedules as ms

from .callbacks import plateau_rate
from .train_state import LossScale, schedule_steps

__all__ = ["AuditInputError", "AuditReport", "ColumnAudit", "Mismatch", "audit_run"]

# Columns the trainer logs that are not hyperparameters (besides eval_* and ema_eval_*).
_NOT_RATES = frozenset({"kind", "step", "epoch", "loss", "grad_norm", "loss_scale", "skipped",
                        "tokens"})
# How many problems the summary prints (the report keeps all).
_SHOWN = 5
# Steps evaluated at once: below Schedule.values' compiled path (2**17), so every run length is
# evaluated the same way.
_EAGER_CHUNK = 1 << 16
_MAX_STEP = 1 << 62


class AuditInputError(ValueError):
    """The run directory cannot be audited: a file is unreadable or is not what a trainer
    writes (``mlx-schedules audit`` exits 2)."""


@dataclasses.dataclass(frozen=True)
class Mismatch:
    """One problem: where (``row``, the line of ``log.jsonl``; ``step``; ``column``), what was
    logged and what was expected, and where the expected value comes from (``source``).

    ``file`` is the file holding the logged value (``log.jsonl``, or ``log.csv`` for a
    difference between the two logs); ``detail`` says what kind of problem it is when it is
    not a value differing from its schedule.
    """

    step: int | None
    column: str
    expected: Any
    logged: Any
    source: str = "config.json"
    row: int | None = None
    file: str = "log.jsonl"
    detail: str = ""

    def __str__(self) -> str:
        where = f"{self.file} line {self.row}" if self.row is not None else self.file
        if self.step is not None:
            where += f", step {self.step}"
        text = (f"{where}, column {self.column!r}: logged {self.logged!r}, "
                f"expected {self.expected!r} ({self.source})")
        return text + (f": {self.detail}" if self.detail else "")


@dataclasses.dataclass
class ColumnAudit:
    """One logged column's result.

    ``status``: ``"ok"`` (every row matches), ``"plateau"`` (scaled by reduce-on-plateau;
    ``factors`` lists ``(first step, factor)``; where every row between two evaluations sits
    at the floor ``floor`` the factor there is the next one known, from a later segment or a
    checkpoint's ``lr_factor``), ``"mismatch"`` (``mismatch`` is its first
    bad row) or ``"not audited"`` (``reason`` says why). ``exact`` counts the rows equal to
    their schedule bit for bit.
    """

    column: str
    status: str
    source: str
    rows: int = 0
    exact: int = 0
    factors: list[tuple[int, float | None]] = dataclasses.field(default_factory=list)
    floor: float | None = None
    mismatch: Mismatch | None = None
    reason: str = ""


@dataclasses.dataclass
class AuditReport:
    """What :func:`audit_run` found: ``ok`` when every column was audited and matches (or is
    scaled by reduce-on-plateau) and the rows and files have no problem (``problems``: rows
    out of order, missing or repeated, ``log.csv`` differing from ``log.jsonl``, a log shorter
    than a checkpoint says)."""

    run_dir: str
    rows: int
    columns: list[ColumnAudit]
    notes: list[str] = dataclasses.field(default_factory=list)
    problems: list[Mismatch] = dataclasses.field(default_factory=list)

    @property
    def first_mismatch(self) -> Mismatch | None:
        """The first problem, ``None`` if there is none. First means at the earliest row of
        ``log.jsonl``; at one row, a row out of order comes first, then a value (in the order
        of the columns), then a difference between ``log.csv`` and ``log.jsonl``, then a
        checkpoint's record."""
        found = [*self.problems, *(c.mismatch for c in self.columns if c.mismatch is not None)]
        return min(found, key=_rank) if found else None

    @property
    def ok(self) -> bool:
        """No problem, and every column audited (an unauditable rate is not confirmed)."""
        return self.first_mismatch is None and all(
            c.status != "not audited" for c in self.columns)

    def summary(self) -> str:
        """A few lines for people: the verdict, then one line per column and the problems."""
        first = self.first_mismatch
        lines = [f"audit of {self.run_dir}: {self.rows} training rows: "
                 + (f"FIRST PROBLEM at {first}" if first is not None
                    else "some rates could not be audited" if not self.ok
                    else "every rate equals its schedule" + (
                        " (scaled by reduce-on-plateau where said)"
                        if any(c.status == "plateau" for c in self.columns) else ""))]
        for c in self.columns:
            if c.status == "ok":
                text = f"ok, {c.rows} rows ({c.exact} bit-exact)"
            elif c.status == "plateau":
                steps = ", ".join(f"x{f:.6g} from step {s}" if f is not None
                                  else f"at the floor from step {s}" for s, f in c.factors)
                floor = f", floor {c.floor:.6g}" if c.floor is not None else ""
                text = f"scaled by reduce-on-plateau ({steps}{floor}); {c.rows} rows"
            elif c.status == "mismatch":
                text = f"mismatch: {c.mismatch}"
            else:
                text = f"not audited: {c.reason}"
            lines.append(f"  {c.column} [{c.source}]: {text}")
        lines += [f"  problem: {p}" for p in self.problems[:_SHOWN]]
        if len(self.problems) > _SHOWN:
            lines.append(f"  ... and {len(self.problems) - _SHOWN} more problems")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _rank(problem: Mismatch) -> tuple[float, int]:
    """Where a problem comes in the report's order (:attr:`AuditReport.first_mismatch`)."""
    kind = (0 if problem.source in ("row order", "the trainer's rows")
            else 3 if problem.source.endswith("meta.json")
            else 2 if problem.file == "log.csv" or problem.column == "header"
            else 1)
    return (math.inf if problem.row is None else problem.row, kind)


def audit_run(run_dir: str | os.PathLike, *, ulps: float = 0) -> AuditReport:
    """Check every logged rate of a run directory against the schedule its config saved, and
    the log's rows against each other, ``log.csv`` and the checkpoints (module docs).

    Args:
        run_dir: a :class:`trainers.Trainer` run directory (``config.json``, ``log.jsonl`` and
            ``log.csv``; ``experiment.json`` and ``checkpoints/`` are used when present).
        ulps: how many float32 steps a logged rate may be from its schedule (default 0: equal
            bit for bit, ``0.0`` and ``-0.0`` counting as equal).

    Raises:
        FileNotFoundError: ``config.json``, ``log.jsonl`` or ``log.csv`` is missing.
        ValueError: a file cannot be read or is not what a trainer writes (an
            ``AuditInputError``, listed in the module docs); ``ulps`` below 0.

    Example:
        >>> import tempfile, numpy as np, mlx.nn as nn, mlx.optimizers as optim
        >>> import mlx_schedules as ms
        >>> from trainers import ArrayBatches, Trainer
        >>> run = tempfile.mkdtemp()
        >>> data = ArrayBatches((np.ones((8, 2), np.float32), np.zeros((8, 1), np.float32)), 4)
        >>> mse = lambda m, x, y: nn.losses.mse_loss(m(x), y)
        >>> opt = optim.SGD(learning_rate=ms.cosine_decay(0.1, 20))
        >>> _ = Trainer(nn.Linear(2, 1), mse, opt, data, run_dir=run, max_steps=20,
        ...             report_every=0).fit()
        >>> report = audit_run(run)
        >>> report.ok, report.columns[0].status, report.columns[0].exact
        (True, 'ok', 20)
    """
    if not (isinstance(ulps, (int, float)) and ulps >= 0):
        raise ValueError(f"ulps must be a number >= 0, got {ulps!r}")
    try:
        return _audit(os.fspath(run_dir), float(ulps))
    except RecursionError:  # a structure nested beyond what Python can walk
        raise AuditInputError(f"{os.fspath(run_dir)}: a file nests too deeply to audit") \
            from None


def _audit(run_dir: str, ulps: float) -> AuditReport:
    config = _read_config(run_dir)
    log = _read_log(os.path.join(run_dir, "log.jsonl"))
    train = [(i, row) for i, row in enumerate(log.rows) if row.get("kind") == "train"]
    if not train:
        raise AuditInputError(f"{log.path} holds no training rows: there is nothing to audit")
    columns = config["columns"]
    sources = _sources(config)
    rates = [c for c in columns if c in sources or c.split("/")[0] == "learning_rate"]
    if not rates:
        raise AuditInputError(f"{run_dir}/config.json lists no rate column to audit "
                              f"(columns {columns})")
    problems = [p for p in (_check_order(log, columns),) if p is not None]
    if "loss_scale" in columns:
        problems += [p for p in (_check_loss_scale(log),) if p is not None]
    problems += _check_checkpoints(run_dir, log)
    problems += _check_csv(os.path.join(run_dir, "log.csv"), columns, log)

    rows = [row for _, row in train]
    lines = [i + 1 for i, _ in train]
    valid = np.array([_is_step(r.get("step")) for r in rows])
    steps = np.array([r["step"] if ok else 0 for r, ok in zip(rows, valid, strict=True)],
                     np.int64)
    skipped = np.array([r.get("skipped") in (1, True) for r in rows])
    at = schedule_steps(steps, skipped)
    # a new segment of constant plateau factor starts at a row an evaluation row precedes
    starts = np.array([i > 0 and log.rows[i - 1].get("kind") == "eval" for i, _ in train])
    factors = _checkpoint_factors(run_dir)
    experiment = _experiment_sources(run_dir)
    rows_info = _Rows(steps, at, valid, skipped, starts, lines,
                      _factor_rows(steps, factors))
    audits = []
    for column in rates:
        logged = [r.get(column) for r in rows]
        source, schedule = sources.get(
            column, ("config.json", "config.json does not describe this column"))
        if isinstance(schedule, str):
            audits.append(ColumnAudit(column, "not audited", source, len(rows), reason=schedule))
            continue
        audit = _audit_column(column, schedule, source, rows_info, logged, ulps,
                              column in factors)
        if audit.status in ("ok", "plateau") and column in experiment:
            exp_source, exp_schedule = experiment[column]
            check = _audit_column(column, exp_schedule, exp_source, rows_info, logged, ulps,
                                  column in factors)
            if check.status == "mismatch":
                audit = check
        audits.append(audit)
    notes = _schedule_changes(run_dir, config)
    unknown = [c for c in columns if c not in rates and c not in _NOT_RATES
               and not c.startswith(("eval_", "ema_eval_"))]
    if unknown:
        notes.append(f"columns {unknown} are not rates the audit knows; they were not checked")
    return AuditReport(run_dir, len(rows), audits, notes, problems)


# ---------------------------------------------------------------- reading the run
def _read_json(path: str, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"the rate audit needs {path} ({what})") from None
    except RecursionError:
        raise AuditInputError(f"{path} nests too deeply to read") from None
    except UnicodeDecodeError as e:
        raise AuditInputError(f"{path} is not UTF-8 text: {e}") from None
    except ValueError as e:
        raise AuditInputError(f"{path} is not valid JSON: {e}") from None
    except OSError as e:
        raise AuditInputError(f"cannot read {path}: {e.strerror or e}") from None


def _read_config(run_dir: str) -> dict:
    """``config.json``, checked to be what the trainer writes in the parts the audit reads."""
    path = os.path.join(run_dir, "config.json")
    config = _read_json(path, "the run's settings, written by the trainer")
    if not isinstance(config, dict):
        raise AuditInputError(f"{path} holds a JSON {type(config).__name__}, not an object: "
                              "it is not a trainer's config")
    columns = config.get("columns")
    if not (isinstance(columns, list) and all(isinstance(c, str) for c in columns)
            and "kind" in columns and "step" in columns):
        raise AuditInputError(f"{path} lists no log columns ('columns' is {columns!r}): it is "
                              "not a trainer's config")
    for key in ("schedules", "hyperparameters"):
        if not isinstance(config.get(key) or {}, dict):
            raise AuditInputError(f"{path}: {key!r} must be an object, got "
                                  f"{type(config[key]).__name__}")
    for column, description in (config.get("schedules") or {}).items():
        if not isinstance(description, dict):
            raise AuditInputError(f"{path}: the schedule of {column!r} must be an object, "
                                  f"got {type(description).__name__}")
    return config


@dataclasses.dataclass
class _Log:
    path: str
    rows: list[dict]
    ends: list[int]  # the byte offset after each row's line


def _read_log(path: str) -> _Log:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"the rate audit needs {path} (the run's log)") from None
    except OSError as e:
        raise AuditInputError(f"cannot read {path}: {e.strerror or e}") from None
    rows, ends, offset = [], [], 0
    for number, line in enumerate(data.splitlines(keepends=True), 1):
        offset += len(line)
        try:
            row = json.loads(line.decode("utf-8"))
        except RecursionError:
            raise AuditInputError(f"{path}, line {number}: nests too deeply to read") from None
        except ValueError:  # UnicodeDecodeError and JSONDecodeError
            raise AuditInputError(f"{path}, line {number}: not a JSON row "
                                  f"(cut short or edited?)") from None
        if not isinstance(row, dict):
            raise AuditInputError(f"{path}, line {number}: a JSON {type(row).__name__}, "
                                  "not a row (an object)")
        rows.append(row)
        ends.append(offset)
    return _Log(path, rows, ends)


def _is_step(value: Any) -> bool:
    """A step number as the trainer writes it (schedules take steps up to 2**62)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_STEP


def _checkpoints(run_dir: str) -> list[tuple[int, str]]:
    root = os.path.join(run_dir, "checkpoints")
    try:
        names = os.listdir(root)
    except OSError:  # no checkpoints (or none readable): nothing to compare with
        return []
    found = []
    for name in names:
        if name.startswith("step_") and name[5:].isdigit():
            found.append((int(name[5:]), os.path.join(root, name)))
    return sorted(found)


def _checkpoint_factors(run_dir: str) -> dict[str, dict[int, float]]:
    """``{column: {checkpoint step: lr_factor}}`` from the checkpoints' optimizer state."""
    out: dict[str, dict[int, float]] = {}
    for step, path in _checkpoints(run_dir):
        try:
            # a .safetensors file loads as a dict (mx.load's stub is the union over formats)
            state = cast(dict[str, mx.array],
                         mx.load(os.path.join(path, "optimizer.safetensors")))
        except (OSError, ValueError, RuntimeError):
            continue  # an unreadable checkpoint says nothing; the log is still audited
        for key, value in state.items():
            parts = key.split(".")
            if parts[-1] != "lr_factor" or value.size != 1:
                continue
            # ``lr_factor`` (one optimizer) or ``optimizers.i.lr_factor`` (parameter groups)
            column = "learning_rate" if len(parts) == 1 else f"learning_rate/{parts[-2]}"
            # lr_factor is a real scalar (item()'s stub includes complex)
            out.setdefault(column, {})[step] = float(cast(float, value.item()))
    return out


def _factor_rows(steps: np.ndarray, factors: Mapping[str, Mapping[int, float]]
                 ) -> dict[str, dict[int, float]]:
    """``{column: {row index: lr_factor}}``: a checkpoint saved at step ``c`` holds the factor
    the update of step ``c`` used (an evaluation at ``c`` runs before the save). A checkpoint
    after the last row says nothing about the rows."""
    index = {int(s): i for i, s in enumerate(steps)}
    return {column: {index[c]: f for c, f in saved.items() if c in index}
            for column, saved in factors.items()}


def _schedule_changes(run_dir: str, config: Mapping) -> list[str]:
    """Checkpoints saved by a resumed session whose schedules differ from ``config.json``."""
    notes = []
    for step, path in _checkpoints(run_dir):
        try:
            meta = _read_json(os.path.join(path, "meta.json"), "a checkpoint's record")
        except (FileNotFoundError, ValueError):
            continue
        saved = meta.get("config", {}).get("schedules") if isinstance(meta, dict) and \
            isinstance(meta.get("config", {}), dict) else None
        if saved is not None and saved != config.get("schedules"):
            notes.append(f"checkpoint step {step} was saved with other schedules than "
                         "config.json's (a resume with allow_changes=('schedules',)): rows "
                         "after that resume differ from config.json by design")
    return notes[:1]


def _rebuild(column: str, description: Mapping, where: str) -> Any:
    """A schedule from a ``config.json`` description, or the reason it cannot be audited."""
    if "config" in description:
        try:
            return ms.from_config(description["config"])
        except (ValueError, TypeError, KeyError, RecursionError) as e:
            raise AuditInputError(f"{where}: the schedule of {column!r} does not rebuild: "
                                  f"{str(e)[:300]}") from None
    return ("described only by probe values (not an mlx_schedules schedule: a lambda or one "
            "of MLX's own schedules); rebuild it with mlx_schedules to audit it")


def _sources(config: Mapping) -> dict[str, tuple[str, Any]]:
    """``{column: ("config.json", schedule or reason)}`` for every scheduled or constant rate."""
    out: dict[str, tuple[str, Any]] = {}
    for column, description in (config.get("schedules") or {}).items():
        out[column] = ("config.json", _rebuild(column, description, "config.json"))
    for name, value in (config.get("hyperparameters") or {}).items():
        if name.split("/")[0] == "learning_rate" and name not in out:
            try:
                out[name] = ("config.json", ms.constant(value))
            except (ValueError, TypeError) as e:
                raise AuditInputError(f"config.json: the constant {name!r} is not a rate: "
                                      f"{e}") from None
    return out


def _experiment_sources(run_dir: str) -> dict[str, tuple[str, Any]]:
    """The schedules an ``mlx-schedules train`` run's ``experiment.json`` names."""
    path = os.path.join(run_dir, "experiment.json")
    if not os.path.isfile(path):
        return {}
    experiment = _read_json(path, "the script's experiment")
    if not isinstance(experiment, dict):
        raise AuditInputError(f"{path} holds a JSON {type(experiment).__name__}, not an object")
    section = experiment.get("optimizer")
    if section is None:
        return {}  # a script (train_lm.py) whose experiment names no optimizer section
    if not isinstance(section, dict):
        raise AuditInputError(f"{path}: 'optimizer' must be an object, got "
                              f"{type(section).__name__}")
    out: dict[str, tuple[str, Any]] = {}
    for key, value in section.items():
        if isinstance(value, dict):
            out[key] = ("experiment.json", _rebuild(key, {"config": value}, "experiment.json"))
        elif key == "learning_rate":
            try:
                out[key] = ("experiment.json", ms.constant(value))
            except (ValueError, TypeError) as e:
                raise AuditInputError(f"{path}: learning_rate is not a rate: {e}") from None
    return out


# ---------------------------------------------------------------- rows and files
def _check_order(log: _Log, columns: list[str]) -> Mismatch | None:
    """The first row out of place: training steps 0, 1, 2... once each; an evaluation row
    right after the training rows of the steps before it, once per step."""
    expected, evaluated = 0, set()
    float16 = "skipped" in columns
    for i, row in enumerate(log.rows):
        kind, line = row.get("kind"), i + 1
        if kind not in ("train", "eval"):
            return Mismatch(None, "kind", "train or eval", kind, "the trainer's rows", line,
                            detail="not a row the trainer writes")
        if not _is_step(row.get("step")):
            return Mismatch(None, "step", expected, row.get("step"), "row order", line,
                            detail="not a step number")
        step: int = row["step"]
        if kind == "train":
            if step != expected:
                what = ("a row is missing or out of order" if step > expected
                        else "a row is repeated or out of order")
                return Mismatch(step, "step", expected, step, "row order", line, detail=what)
            if float16 and row.get("skipped") not in (0, 1):
                return Mismatch(step, "skipped", "0.0 or 1.0", row.get("skipped"),
                                "the trainer's rows", line, detail="not a skip flag")
            expected += 1
        else:
            if step != expected:
                return Mismatch(step, "step", expected, step, "row order", line,
                                detail="an evaluation row belongs after the training rows "
                                       "of the steps before it")
            if step in evaluated:
                return Mismatch(step, "step", None, step, "row order", line,
                                detail="a second evaluation row at this step")
            evaluated.add(step)
    return None


def _check_loss_scale(log: _Log) -> Mismatch | None:
    """The first training row whose ``loss_scale`` is not the one the float16 loss-scaling
    rule gives it, replayed from step 0 over the rows' ``skipped`` flags."""
    scale, good = LossScale.initial, 0
    for i, row in enumerate(log.rows):
        if row.get("kind") != "train":
            continue
        logged = row.get("loss_scale")
        if isinstance(logged, bool) or not isinstance(logged, (int, float)) or logged != scale:
            return Mismatch(row.get("step"), "loss_scale", scale, logged,
                            "the float16 loss-scaling rule (trainers.train_state.LossScale)",
                            i + 1, detail="not the scale the skips before this row give")
        if row.get("skipped") in (1, True):
            scale, good = max(scale * 0.5, LossScale.minimum), 0
        elif good + 1 >= LossScale.growth_interval:
            scale, good = scale * 2.0, 0
        else:
            good += 1
    return None


def _check_checkpoints(run_dir: str, log: _Log) -> list[Mismatch]:
    """Each checkpoint's record of the log (bytes of each file, steps) against the log."""
    problems = []
    try:
        csv_size = os.path.getsize(os.path.join(run_dir, "log.csv"))
    except OSError:
        csv_size = None  # reported by the CSV check
    jsonl_size = log.ends[-1] if log.ends else 0
    for _, path in _checkpoints(run_dir):
        name = os.path.relpath(os.path.join(path, "meta.json"), run_dir)
        try:
            meta = _read_json(os.path.join(path, "meta.json"), "a checkpoint's record")
        except (FileNotFoundError, ValueError):
            continue  # a broken checkpoint is the trainer's to report; the log is still audited
        position = meta.get("log_position") if isinstance(meta, dict) else None
        saved_step = meta.get("step") if isinstance(meta, dict) else None
        if not (isinstance(position, dict) and _is_step(position.get("jsonl"))
                and _is_step(saved_step)):
            continue  # a checkpoint that records no log position (log=False)
        offset = position["jsonl"]
        if offset > jsonl_size:
            problems.append(Mismatch(
                saved_step, "log_position", f"at least {offset} bytes", f"{jsonl_size} bytes",
                name, len(log.rows) + 1,
                detail="log.jsonl is shorter than this checkpoint records: rows were removed"))
            continue
        if offset and offset not in log.ends:
            row = int(np.searchsorted(log.ends, offset)) + 1
            problems.append(Mismatch(saved_step, "log_position", f"a row ending at byte "
                                     f"{offset}", "a row crossing it", name, row,
                                     detail="log.jsonl was edited before this checkpoint"))
            continue
        covered = log.rows[:log.ends.index(offset) + 1] if offset else []
        trained = sum(1 for r in covered if r.get("kind") == "train")
        if trained != saved_step:
            problems.append(Mismatch(saved_step, "step", f"{saved_step} training rows",
                                     f"{trained} training rows", name, len(covered),
                                     detail="log.jsonl does not hold this checkpoint's rows"))
        csv_offset = position.get("csv")
        if csv_size is not None and isinstance(csv_offset, int) and csv_offset > csv_size:
            problems.append(Mismatch(
                saved_step, "log_position", f"at least {csv_offset} bytes", f"{csv_size} bytes",
                name, len(covered), file="log.csv",
                detail="log.csv is shorter than this checkpoint records: rows were removed"))
    return problems


def _check_csv(path: str, columns: list[str], log: _Log) -> list[Mismatch]:
    """``log.csv`` against ``log.jsonl``, row by row and cell by cell; the first difference."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            table = list(csv.reader(f))
    except FileNotFoundError:
        raise FileNotFoundError(f"the rate audit needs {path} (the run's log as CSV)") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise AuditInputError(f"cannot read {path}: {e}") from None
    if not table or table[0] != columns:
        return [Mismatch(None, "header", ",".join(columns), ",".join(table[0]) if table else "",
                         "config.json", 1, file="log.csv",
                         detail="log.csv's columns differ from config.json's")]
    for i, row in enumerate(log.rows):
        line = i + 2  # the header is line 1
        if i + 1 >= len(table):
            return [Mismatch(row.get("step"), "row", "a row", "no row", "log.jsonl", i + 1,
                             file="log.csv", detail=f"log.csv ends before line {line}")]
        cells = table[i + 1]
        extra = [k for k in row if k not in columns]
        if extra:
            return [Mismatch(row.get("step"), extra[0], None, row[extra[0]], "config.json",
                             i + 1, detail="a column config.json does not list")]
        if len(cells) != len(columns):
            return [Mismatch(row.get("step"), "row", f"{len(columns)} cells",
                             f"{len(cells)} cells", "log.jsonl", i + 1, file="log.csv",
                             detail=f"log.csv line {line} differs from log.jsonl")]
        for column, cell in zip(columns, cells, strict=True):
            if not _same_cell(row.get(column), cell):
                return [Mismatch(row.get("step"), column, row.get(column), cell, "log.jsonl",
                                 i + 1, file="log.csv",
                                 detail=f"log.csv line {line} differs from log.jsonl")]
    if len(table) > len(log.rows) + 1:
        return [Mismatch(None, "row", "no row", ",".join(table[len(log.rows) + 1]),
                         "log.jsonl", len(log.rows) + 1, file="log.csv",
                         detail=f"log.csv line {len(log.rows) + 2} has no row in log.jsonl")]
    return []


def _same_cell(value: Any, cell: str) -> bool:
    """Whether a CSV cell holds a JSON row's value as the trainer writes it (numbers compared
    as numbers, exactly)."""
    if value is None:
        return cell == ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        text = json.dumps(value) if isinstance(value, list) else str(value)
        return cell == text
    try:
        number = float(cell) if isinstance(value, float) else int(cell)
    except ValueError:
        return False
    return number == value or (math.isnan(number) and math.isnan(value))


# ---------------------------------------------------------------- comparing
@dataclasses.dataclass
class _Rows:
    steps: np.ndarray  # the log's step of each training row
    at: np.ndarray  # the optimizer step its hyperparameters were evaluated at
    valid: np.ndarray  # rows with a step number (the others are an order problem)
    skipped: np.ndarray  # float16 updates skipped
    starts: np.ndarray  # rows an evaluation precedes: a plateau factor may change there
    lines: list[int]  # each row's line in log.jsonl
    factors: dict[str, dict[int, float]]  # checkpoint factors by row index, per column


def _as_float32(values: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Logged values as float32, and which of them are float32 numbers (anything else, a
    string or a float64 that no float32 equals, never matches)."""
    out = np.zeros(len(values), np.float32)
    ok = np.zeros(len(values), bool)
    for i, v in enumerate(values):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            try:
                with np.errstate(over="ignore"):
                    f = np.float32(v)
            except OverflowError:  # an int beyond any float
                continue
            out[i], ok[i] = f, float(f) == v or (math.isnan(v) and math.isnan(f))
    return out, ok


def _ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How many float32 values lie between ``a`` and ``b`` (0: equal, ``0.0 == -0.0``; NaN is
    infinitely far from everything)."""
    def ordinal(x: np.ndarray) -> np.ndarray:
        bits = x.astype(np.float32).view(np.int32).astype(np.int64)
        return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)

    far = np.isnan(a) | np.isnan(b)
    return np.where(far, np.inf, np.abs(ordinal(a) - ordinal(b)).astype(np.float64))


def _evaluate(schedule: Any, steps: np.ndarray) -> np.ndarray:
    """The schedule at every step, float32, always by the same eager evaluation: ``values``
    compiles from 2**17 steps on, and a compiled kernel may round a last bit differently from
    the eager one the tests compare with the trainer's rates."""
    chunks = [schedule.values(steps[i:i + _EAGER_CHUNK])
              for i in range(0, len(steps), _EAGER_CHUNK)]
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def _audit_column(column: str, schedule: Any, source: str, rows: _Rows, logged: list[Any],
                  ulps: float, plateau_marked: bool) -> ColumnAudit:
    expected = _evaluate(schedule, rows.at)
    values, numbers = _as_float32(logged)
    distance = np.where(numbers, _ulp_distance(values, expected), np.inf)
    close = (distance <= ulps) | ~rows.valid  # rows without a step: an order problem
    exact = int(np.sum(distance == 0))
    if close.all():
        return ColumnAudit(column, "ok", source, len(logged), exact)
    first = int(np.argmin(close))
    mismatch = Mismatch(int(rows.steps[first]), column, float(expected[first]),
                        logged[first], source, rows.lines[first])
    if column.split("/")[0] == "learning_rate" and numbers.all() and rows.valid.all():
        if not plateau_marked and values[first] < expected[first]:
            mismatch = dataclasses.replace(mismatch, detail=(
                "no checkpoint holds a reduce-on-plateau factor (lr_factor) for this column, "
                "so a lowered rate is not explained by one"))
        else:
            found = _plateau(expected, values, rows, rows.factors.get(column, {}), ulps)
            if found is not None:
                factors, floor = found
                return ColumnAudit(column, "plateau", source, len(logged), exact,
                                   factors=factors, floor=floor)
    return ColumnAudit(column, "mismatch", source, len(logged), exact, mismatch=mismatch)


def _plateau(base: np.ndarray, logged: np.ndarray, rows: _Rows, saved: Mapping[int, float],
             ulps: float) -> tuple[list[tuple[int, float | None]], float | None] | None:
    """The factors (and floor) of a reduce-on-plateau scaling, or ``None`` if the column is not
    one: ``logged == min(s, max(s·f, floor))`` in float32 with ``f`` constant between
    evaluations, at most 1, never rising, equal to the checkpoints' ``lr_factor`` where they
    saved one. Skipped float16 rows repeat the last applied row's rate.

    Tried without a floor first; then with the floor the most frequent scaled value suggests.
    A segment whose every row sits at the floor has an unknown factor (``None``)."""
    applied = ~rows.skipped
    starts = [0] + [i for i in range(1, len(logged)) if rows.starts[i]]
    bounds = list(zip(starts, [*starts[1:], len(logged)], strict=True))
    # a skipped row shows what the optimizer held: the last applied row's rate
    previous = np.maximum.accumulate(np.where(applied, np.arange(len(logged)), -1))
    held = np.concatenate([[-1], previous[:-1]])
    repeat = np.where(held >= 0, logged[np.maximum(held, 0)], base[0])
    if (_ulp_distance(logged[~applied], repeat[~applied]) > ulps).any():
        return None
    found = _factors(base, logged, applied, bounds, saved, None, ulps)
    merged = None if found is None else _merge(rows, found)
    if merged is not None:
        return merged, None
    scaled = logged[applied & (logged < base)]
    if scaled.size < 2:
        return None
    values, counts = np.unique(scaled, return_counts=True)
    if counts.max() < 2:
        return None
    floor = float(values[int(np.argmax(counts))])
    found = _factors(base, logged, applied, bounds, saved, floor, ulps)
    merged = None if found is None else _merge(rows, found)
    return None if merged is None else (merged, floor)


def _candidates(ratio: float) -> list[float]:
    """Float32 factors near ``ratio``, largest first: the factor that produced ``s·f`` in
    float32 is one of the few float32 numbers next to ``logged / s``."""
    center = np.float32(ratio)
    found = {float(center)}
    up = down = center
    for _ in range(4):
        up, down = np.nextafter(up, np.float32(np.inf)), np.nextafter(down, np.float32(0))
        found |= {float(up), float(down)}
    return sorted(found, reverse=True)


def _factors(base: np.ndarray, logged: np.ndarray, applied: np.ndarray,
             bounds: list[tuple[int, int]], saved: Mapping[int, float], floor: float | None,
             ulps: float) -> list[float | None] | None:
    """Each segment's factor under one floor hypothesis, or ``None`` if a row disagrees."""
    at_floor = np.zeros(len(base), bool) if floor is None else (
        (logged == np.float32(floor)) & (base >= np.float32(floor)))
    factors: list[float | None] = []
    previous = 1.0
    for begin, end in bounds:
        rows = [i for i in range(begin, end) if applied[i]]
        s, got = base[rows], logged[rows]
        pinned = {saved[i] for i in range(begin, end) if i in saved}
        if len(pinned) > 1:
            return None  # two checkpoints of one segment saved different factors
        free = ~at_floor[rows] & (s != 0)
        if floor is not None:  # rows where the schedule itself is below the floor
            free &= s > np.float32(floor)
        if pinned:
            tries = sorted(pinned)
        elif begin == 0:
            tries = [1.0]  # the log starts at step 0, where every factor is 1
        elif free.any():
            first = int(np.argmax(free))
            tries = _candidates(float(got[first]) / float(s[first]))
        else:
            tries = []
        factor = None
        for f in tries:
            rate = plateau_rate(s, f, floor or 0.0)
            if f <= previous and (_ulp_distance(rate, got) <= ulps).all():
                factor = f
                break
        if factor is None:
            if tries:
                return None  # no factor reproduces the rows, or it would have to rise
            # every row at the floor (or the schedule under it, or zero)
            rest = np.minimum(s, np.float32(floor)) if floor is not None else s * 0
            if (_ulp_distance(rest, got) > ulps).any():
                return None
        else:
            previous = factor
        factors.append(factor)
    return factors


def _merge(rows: _Rows, factors: list[float | None]) -> list[tuple[int, float | None]] | None:
    """``(first step, factor)`` per run of equal factors; a segment at the floor shows no
    factor: it takes the next one known (a later segment's or checkpoint's), else the last
    one before it."""
    starts = [0] + [i for i in range(1, len(rows.steps)) if rows.starts[i]]
    known = list(factors)
    for i in range(len(known) - 1, -1, -1):
        if known[i] is None and i + 1 < len(known):
            known[i] = known[i + 1]
    for i, f in enumerate(known):
        if f is None:
            known[i] = known[i - 1] if i else None
    merged: list[tuple[int, float | None]] = []
    for begin, factor in zip(starts, known, strict=True):
        if not merged or factor != merged[-1][1]:
            merged.append((int(rows.steps[begin]), factor))
    if len(merged) == 1 and merged[0][1] == 1.0:
        return None  # nothing was scaled: not a plateau (the caller saw a mismatch)
    return merged
