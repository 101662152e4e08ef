"""The rate audit: were the logged rates the ones the run's saved config says?

A run directory holds what the run was configured to do (``config.json``: the trainer's
settings, with a description of every schedule; ``experiment.json`` for a ``mlx-schedules train``
run) and what it did (``log.jsonl``: the rate each update used, read from the optimizer's
state). :func:`audit_run` rebuilds every schedule from the saved config, evaluates it at every
logged step with :meth:`mlx_schedules.Schedule.values`, and compares it with the logged
column. This catches what plagues training libraries: a schedule sized for another run length,
a resume that restarted the schedule, a step counted in micro-batches, a script that built a
different schedule from the one its config names.

What is compared, per column (``learning_rate``, ``momentum``..., ``learning_rate/i`` for
parameter groups):

- a schedule described by its ``mlx_schedules`` config: rebuilt exactly
  (:func:`mlx_schedules.from_config`);
- a constant rate (``hyperparameters`` in ``config.json``): that number in float32;
- a schedule described only by probe values (a lambda, one of MLX's own schedules): it cannot
  be rebuilt, and the column is reported as not audited, with the reason;
- with ``experiment.json``, the script's own optimizer section is compared as well: a script
  that built something other than its config fails there.

Tolerance: a logged value matches when ``|logged - expected| <= ulps * spacing(peak)``, where
``peak`` is the column's largest expected magnitude and ``spacing`` the float32 gap there
(``ulps=2`` by default). On the runs of this project the values are equal bit for bit (the
report counts the exact rows); the margin admits the last-bit differences a compiled
evaluation of more than 2**17 steps at once may show, and nothing a wrong schedule gives.

Reduce-on-plateau: its rate is ``min(s(t), max(s(t)·f, min_lr))`` with a factor ``f`` that
changes only at evaluations. A learning-rate column whose ratio to the schedule is constant
between evaluation steps, never above 1 and never rising (rows at a constant floor allowed), is
reported as *scaled by a plateau callback* with its factors, checked against the ``lr_factor``
saved in the checkpoints' optimizer state where one exists, and is not an error.

Rows of skipped float16 updates (``skipped`` true) are left out: no update used their rate.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any, cast

import mlx.core as mx
import numpy as np

import mlx_schedules as ms

__all__ = ["AuditReport", "ColumnAudit", "Mismatch", "audit_run"]


@dataclasses.dataclass(frozen=True)
class Mismatch:
    """The first logged value that differs from its schedule."""

    step: int
    column: str
    expected: float
    logged: float
    source: str = "config.json"

    def __str__(self) -> str:
        return (f"step {self.step}, column {self.column!r}: expected {self.expected!r} "
                f"({self.source}), logged {self.logged!r}")


@dataclasses.dataclass
class ColumnAudit:
    """One logged column's result.

    ``status``: ``"ok"`` (every row matches), ``"plateau"`` (scaled by reduce-on-plateau;
    ``factors`` lists ``(first step, factor)``; where every row between two evaluations sits
    at the floor ``floor`` the factor there is the next one known, from a later segment or a
    checkpoint's ``lr_factor``), ``"mismatch"`` (``mismatch`` is its first
    bad row) or ``"not audited"`` (``reason`` says why).
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
    scaled by reduce-on-plateau)."""

    run_dir: str
    rows: int
    columns: list[ColumnAudit]
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def first_mismatch(self) -> Mismatch | None:
        """The mismatch at the smallest step; of two at one step, the column logged first."""
        found = [c.mismatch for c in self.columns if c.mismatch is not None]
        return min(found, key=lambda m: m.step) if found else None

    @property
    def ok(self) -> bool:
        """No mismatch, and every column audited (an unauditable rate is not confirmed)."""
        return self.first_mismatch is None and all(
            c.status != "not audited" for c in self.columns)

    def summary(self) -> str:
        """A few lines for people: the verdict, then one line per column."""
        first = self.first_mismatch
        lines = [f"audit of {self.run_dir}: {self.rows} training rows: "
                 + (f"MISMATCH at {first}" if first is not None
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
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def audit_run(run_dir: str | os.PathLike, *, ulps: float = 2.0) -> AuditReport:
    """Compare every logged rate of a run directory with the schedule its config saved.

    Args:
        run_dir: a :class:`trainers.Trainer` run directory (``config.json`` and
            ``log.jsonl``; ``experiment.json`` and ``checkpoints/`` are used when present).
        ulps: the tolerance, in float32 spacings of the column's peak value (module docs).

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
    run_dir = os.fspath(run_dir)
    config = _read_json(os.path.join(run_dir, "config.json"))
    rows = _train_rows(run_dir)
    eval_steps = _eval_steps(run_dir)
    steps = np.array([r["step"] for r in rows], np.int64)
    factors = _checkpoint_factors(run_dir)
    notes = _schedule_changes(run_dir, config)
    expected_sources = _sources(config)
    experiment = _experiment_sources(run_dir)
    columns = [c for c in config.get("columns", []) if c in expected_sources
               or c.split("/")[0] in ("learning_rate",)]
    audits = []
    for column in columns:
        logged = np.array([r.get(column, np.nan) for r in rows], np.float64)
        source, schedule = expected_sources.get(
            column, ("config.json", "config.json does not describe this column"))
        if isinstance(schedule, str):
            audits.append(ColumnAudit(column, "not audited", source, len(rows), reason=schedule))
            continue
        audit = _audit_column(column, schedule, source, steps, logged, ulps, eval_steps,
                              factors.get(column, {}))
        if audit.status in ("ok", "plateau") and column in experiment:
            exp_source, exp_schedule = experiment[column]
            check = _audit_column(column, exp_schedule, exp_source, steps, logged, ulps,
                                  eval_steps, factors.get(column, {}))
            if check.status == "mismatch":
                audit = check
        audits.append(audit)
    return AuditReport(run_dir, len(rows), audits, notes)


# ---------------------------------------------------------------- reading the run
def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"the rate audit needs {path} (a trainer run directory)") \
            from None
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {path}: {e}") from None


def _train_rows(run_dir: str) -> list[dict]:
    path = os.path.join(run_dir, "log.jsonl")
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                try:
                    row = json.loads(line)
                except ValueError:
                    raise ValueError(f"{path}, line {number}: not JSON") from None
                if row.get("kind") == "train" and not row.get("skipped"):
                    rows.append(row)
    except FileNotFoundError:
        raise FileNotFoundError(f"the rate audit needs {path} (the run's log)") from None
    return rows


def _eval_steps(run_dir: str) -> set[int]:
    with open(os.path.join(run_dir, "log.jsonl"), encoding="utf-8") as f:
        return {row["step"] for row in map(json.loads, f) if row.get("kind") == "eval"}


def _checkpoints(run_dir: str) -> list[tuple[int, str]]:
    root = os.path.join(run_dir, "checkpoints")
    if not os.path.isdir(root):
        return []
    found = []
    for name in os.listdir(root):
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
            if parts[-1] != "lr_factor":
                continue
            # ``lr_factor`` (one optimizer) or ``optimizers.i.lr_factor`` (parameter groups)
            column = "learning_rate" if len(parts) == 1 else f"learning_rate/{parts[-2]}"
            # lr_factor is a real scalar (item()'s stub includes complex)
            out.setdefault(column, {})[step] = float(cast(float, value.item()))
    return out


def _schedule_changes(run_dir: str, config: Mapping) -> list[str]:
    """Checkpoints saved by a resumed session whose schedules differ from ``config.json``."""
    notes = []
    for step, path in _checkpoints(run_dir):
        try:
            meta = _read_json(os.path.join(path, "meta.json"))
        except (FileNotFoundError, ValueError):
            continue
        saved = meta.get("config", {}).get("schedules") if isinstance(meta, dict) else None
        if saved is not None and saved != config.get("schedules"):
            notes.append(f"checkpoint step {step} was saved with other schedules than "
                         "config.json's (a resume with allow_changes=('schedules',)): rows "
                         "after that resume differ from config.json by design")
    return notes[:1]


def _rebuild(description: Any) -> Any:
    """A schedule from a ``config.json`` description, or the reason it cannot be rebuilt."""
    if not isinstance(description, Mapping):
        return f"unreadable description {description!r}"
    if "config" in description:
        try:
            return ms.from_config(description["config"])
        except (ValueError, TypeError) as e:
            return f"its config does not rebuild: {e}"
    return ("described only by probe values (not an mlx_schedules schedule: a lambda or one "
            "of MLX's own schedules); rebuild it with mlx_schedules to audit it")


def _sources(config: Mapping) -> dict[str, tuple[str, Any]]:
    """``{column: ("config.json", schedule or reason)}`` for every scheduled or constant rate."""
    out: dict[str, tuple[str, Any]] = {}
    for column, description in (config.get("schedules") or {}).items():
        out[column] = ("config.json", _rebuild(description))
    for name, value in (config.get("hyperparameters") or {}).items():
        if name.split("/")[0] == "learning_rate" and name not in out:
            out[name] = ("config.json", ms.constant(value))
    return out


def _experiment_sources(run_dir: str) -> dict[str, tuple[str, Any]]:
    """The schedules a ``mlx-schedules train`` run's ``experiment.json`` names."""
    path = os.path.join(run_dir, "experiment.json")
    if not os.path.isfile(path):
        return {}
    section = (_read_json(path) or {}).get("optimizer")
    out: dict[str, tuple[str, Any]] = {}
    for key, value in (section or {}).items():
        if key == "name":
            continue
        try:
            if isinstance(value, dict):
                out[key] = ("experiment.json", ms.from_config(value))
            elif key == "learning_rate":
                out[key] = ("experiment.json", ms.constant(value))
        except (ValueError, TypeError):
            continue  # validated when the run started; a hand-edited file is config.json's job
    return out


# ---------------------------------------------------------------- comparing
def _audit_column(column: str, schedule: Any, source: str, steps: np.ndarray,
                  logged: np.ndarray, ulps: float, eval_steps: set[int],
                  saved_factors: Mapping[int, float]) -> ColumnAudit:
    if steps.size == 0:
        return ColumnAudit(column, "ok", source)
    expected = schedule.values(steps).astype(np.float64)
    logged32 = logged.astype(np.float32).astype(np.float64)
    tolerance = ulps * float(np.spacing(np.float32(np.nanmax(np.abs(expected)))))
    close = np.abs(logged32 - expected) <= tolerance
    exact = int(np.sum(logged32 == expected))
    if close.all():
        return ColumnAudit(column, "ok", source, len(steps), exact)
    first = int(np.argmin(close))
    mismatch = Mismatch(int(steps[first]), column, float(np.float32(expected[first])),
                        float(np.float32(logged32[first])), source)
    if column.split("/")[0] == "learning_rate":
        plateau = _plateau(steps, expected, logged32, tolerance, eval_steps, saved_factors)
        if plateau is not None:
            factors, floor = plateau
            return ColumnAudit(column, "plateau", source, len(steps), exact, factors=factors,
                               floor=floor)
    return ColumnAudit(column, "mismatch", source, len(steps), exact, mismatch=mismatch)


def _plateau(steps: np.ndarray, expected: np.ndarray, logged: np.ndarray, tolerance: float,
             eval_steps: set[int], saved: Mapping[int, float]
             ) -> tuple[list[tuple[int, float | None]], float | None] | None:
    """The factors (and floor) of a reduce-on-plateau scaling, or ``None`` if the column is not
    one: ``logged == min(s, max(s·f, floor))`` with ``f`` constant between evaluations, at most
    1, never rising, equal to the checkpoints' ``lr_factor`` where they saved one.

    Tried without a floor first; then with the floor the most frequent scaled value suggests.
    A segment whose every row sits at the floor has an unknown factor (``None``)."""
    # segments: the factor may change only at an evaluation step (before that update)
    starts = [0] + [i for i in range(1, len(steps)) if int(steps[i]) in eval_steps]
    bounds = list(zip(starts, [*starts[1:], len(steps)], strict=True))
    found = _factors(steps, expected, logged, tolerance, bounds, saved, None)
    if found is not None:
        return found, None
    scaled = logged[logged < expected - tolerance]
    if scaled.size < 2:
        return None
    values, counts = np.unique(scaled, return_counts=True)
    if counts.max() < 2:
        return None
    floor = float(values[int(np.argmax(counts))])
    found = _factors(steps, expected, logged, tolerance, bounds, saved, floor)
    return None if found is None else (found, floor)


def _factors(steps: np.ndarray, expected: np.ndarray, logged: np.ndarray, tolerance: float,
             bounds: list[tuple[int, int]], saved: Mapping[int, float], floor: float | None
             ) -> list[tuple[int, float | None]] | None:
    """Each segment's factor under one floor hypothesis, or ``None`` if a row disagrees."""
    s32 = expected.astype(np.float32)
    held = np.zeros(len(steps), bool) if floor is None else (
        (logged == floor) & (s32 >= np.float32(floor)))
    factors: list[tuple[int, float | None]] = []
    previous = 1.0
    for begin, end in bounds:
        part = slice(begin, end)
        step = int(steps[begin])
        s, rows = s32[part], logged[part]
        free = ~held[part] & (expected[part] != 0)
        if floor is not None:  # rows where the schedule itself is below the floor
            free &= s > np.float32(floor)
        factor: float | None
        if step in saved:
            factor = saved[step]  # the checkpoint's own factor, when it was saved here
        elif free.any():
            factor = float(np.float32(np.median(rows[free] / s[free])))
        else:
            factor = None  # every row at the floor (or the schedule under it)
        if factor is not None:
            rate = s * np.float32(factor)
            if floor is not None:
                rate = np.minimum(s, np.maximum(rate, np.float32(floor)))
            if not (np.abs(rate - rows) <= tolerance).all():
                return None
            if factor > min(previous, 1.0) * (1 + 1e-6):
                return None  # a plateau only lowers the rate
            previous = factor
        elif not (np.abs(np.minimum(s, np.float32(floor)) - rows) <= tolerance).all():
            return None
        factors.append((step, factor))
    # a segment at the floor shows no factor: take the next one known (a later segment's or
    # checkpoint's), else the last one before it
    known = [f for _, f in factors]
    for i in range(len(known) - 1, -1, -1):
        if known[i] is None and i + 1 < len(known):
            known[i] = known[i + 1]
    for i, f in enumerate(known):
        if f is None:
            known[i] = known[i - 1] if i else None
    merged: list[tuple[int, float | None]] = []
    for (step, _), factor in zip(factors, known, strict=True):
        if not merged or factor != merged[-1][1]:
            merged.append((step, factor))
    if len(merged) == 1 and merged[0][1] == 1.0:
        return None  # nothing was scaled: not a plateau (the caller saw a mismatch)
    return merged
