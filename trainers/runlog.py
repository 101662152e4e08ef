"""Per-step log files (JSON Lines and CSV), the console report and a small progress bar.

Run directory files written here:

``log.jsonl``
    one JSON object per row. Training rows: ``{"kind": "train", "step", "epoch", "loss",
    "grad_norm", "learning_rate", <every other scheduled hyperparameter>}``. Evaluation rows:
    ``{"kind": "eval", "step", "epoch", "eval_<metric>"...}``.
``log.csv``
    the same rows; one header naming every column; cells that do not apply to a row's kind are
    empty.

``step`` counts the updates before this one (the argument the schedules got), so the training
row of step ``t`` holds the loss of update ``t`` and the rates that update used. A float16 run
is the exception: a skipped update does not move the optimizer's step counter, so its schedules
lag ``step`` by the skips so far (:func:`trainers.train_state.schedule_steps`). An evaluation
row of step ``t`` was computed after ``t`` updates.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from .files import open_append, storage_error, truncate, write_text_atomic

__all__ = ["ConsoleReport", "ProgressBar", "RunLog", "format_value"]


def format_value(value: Any) -> Any:
    """Make a float JSON/CSV friendly while keeping every digit (``repr`` round-trips).

    Example:
        >>> format_value(0.5), format_value(float("nan"))
        (0.5, nan)
    """
    if isinstance(value, float):
        return value
    if hasattr(value, "item"):
        return value.item()
    return value


class RunLog:
    """The two log files of a run, written by whole rows, truncatable to a saved position.

    Args:
        run_dir: the run directory.
        columns: every column, in CSV order (``kind`` and ``step`` first).

    Example:
        >>> import tempfile
        >>> log = RunLog(tempfile.mkdtemp(), ["kind", "step", "loss"])
        >>> log.open()
        >>> log.write([{"kind": "train", "step": 0, "loss": 1.5}])
        >>> log.close()
        >>> open(log.csv_path).read().splitlines()
        ['kind,step,loss', 'train,0,1.5']
    """

    def __init__(self, run_dir: str, columns: Sequence[str]):
        self.columns = list(columns)
        self.jsonl_path = os.path.join(run_dir, "log.jsonl")
        self.csv_path = os.path.join(run_dir, "log.csv")
        self._jsonl: TextIO | None = None
        self._csv: TextIO | None = None
        self._formats: dict[tuple[str, ...], tuple[str, str] | None] = {}

    def _header(self) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(self.columns)
        return buf.getvalue()

    def open(self, position: dict | None = None, last_row: dict | None = None) -> None:
        """Open for appending. ``position=None`` starts new files (header only); a position
        from :meth:`position` truncates both files there, dropping rows written after it.
        ``last_row``: the row the checkpoint says was written last, checked against the log.

        Raises:
            ValueError: if the files are shorter than the position, a position does not fall
                at the end of a row, the row there is not ``last_row``, or the CSV header
                differs (the log does not belong to this checkpoint or run). Nothing is
                changed then.
        """
        if position is None:
            write_text_atomic(self.jsonl_path, "")
            write_text_atomic(self.csv_path, self._header())
        else:
            for path, key in ((self.jsonl_path, "jsonl"), (self.csv_path, "csv")):
                size = os.path.getsize(path) if os.path.exists(path) else -1
                if size < position[key]:
                    raise ValueError(
                        f"log file {path} has {max(size, 0)} bytes but the checkpoint expects at "
                        f"least {position[key]}; the log does not belong to this checkpoint"
                    )
            with open(self.csv_path, encoding="utf-8") as f:
                header = f.readline()
            if header != self._header():
                raise ValueError(
                    f"log file {self.csv_path} has columns {header.strip()!r}, this run writes "
                    f"{self._header().strip()!r}"
                )
            self._check_last_row(position, last_row, len(header.encode("utf-8")))
            for path, key in ((self.jsonl_path, "jsonl"), (self.csv_path, "csv")):
                truncate(path, position[key])
        self._jsonl = open_append(self.jsonl_path)
        self._csv = open_append(self.csv_path)

    def _check_last_row(self, position: dict, expected: dict | None, header: int) -> None:
        """The row ending at ``position`` in both files must be whole and be ``expected``."""
        jsonl = _line_before(self.jsonl_path, position["jsonl"], 0)
        csv_line = _line_before(self.csv_path, position["csv"], header)
        where = (f"log files {self.jsonl_path} (byte {position['jsonl']}) and "
                 f"{self.csv_path} (byte {position['csv']})")
        if jsonl is None or csv_line is None:
            raise ValueError(f"{where}: the checkpoint's log position is not at the end of a "
                             "row; the log does not belong to this checkpoint")
        try:
            row = json.loads(jsonl) if jsonl else None
        except ValueError:
            row = None
        if jsonl and not isinstance(row, dict):
            raise ValueError(f"{where}: the row before the checkpoint's position is not a "
                             "JSON object; the log does not belong to this checkpoint")
        cells = next(csv.reader([csv_line])) if csv_line else []
        if (row is None) != (not cells) or (row is not None and cells[:2] != [
                str(row.get("kind")), str(row.get("step"))]):
            raise ValueError(f"{where}: log.jsonl and log.csv disagree on the last row before "
                             "the checkpoint")
        if expected is not None and _canonical(row or {}) != _canonical(expected):
            what = (f"{_brief(row)} holds other values than the checkpoint recorded"
                    if _brief(row) == _brief(expected) else
                    f"the last row before the checkpoint is {_brief(row)}, the checkpoint "
                    f"recorded {_brief(expected)}")
            raise ValueError(f"{where}: {what}; the log does not belong to this checkpoint")

    def write(self, rows: Sequence[dict]) -> None:
        """Append rows to both files (buffered; :meth:`flush` pushes them to the OS)."""
        jsonl_file, csv_file = self._jsonl, self._csv
        if jsonl_file is None or csv_file is None:
            raise RuntimeError("RunLog.write before open")
        rows = [{k: format_value(v) for k, v in row.items()} for row in rows]
        jsonl = "".join(json.dumps(row) + "\n" for row in rows)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        for row in rows:
            writer.writerow([_csv_cell(row.get(c)) for c in self.columns])
        self._guarded(self.jsonl_path, lambda: jsonl_file.write(jsonl))
        self._guarded(self.csv_path, lambda: csv_file.write(buffer.getvalue()))

    def write_train(self, names: Sequence[str], where: Sequence[tuple[int, int]],
                    table: Any) -> None:
        """Append a block of training rows given as a table: the same bytes as :meth:`write`
        of the rows ``{"kind": "train", "step", "epoch", names[0]: table[i, 0], ...}``,
        formatted without building a dict per row (what the trainer writes every block).

        Args:
            names: the column of each of ``table``'s columns.
            where: ``(step, epoch)`` of each row.
            table: a 2-d NumPy array of floats, one row per update.

        Example:
            >>> import tempfile, numpy as np
            >>> log = RunLog(tempfile.mkdtemp(), ["kind", "step", "epoch", "loss", "eval_loss"])
            >>> log.open()
            >>> log.write_train(["loss"], [(0, 0), (1, 0)], np.array([[0.5], [np.nan]]))
            >>> log.close()
            >>> print(open(log.jsonl_path).read(), end="")
            {"kind": "train", "step": 0, "epoch": 0, "loss": 0.5}
            {"kind": "train", "step": 1, "epoch": 0, "loss": NaN}
            >>> print(open(log.csv_path).read(), end="")
            kind,step,epoch,loss,eval_loss
            train,0,0,0.5,
            train,1,0,nan,
        """
        import numpy as np

        if self._jsonl is None or self._csv is None:
            raise RuntimeError("RunLog.write_train before open")
        if not np.isfinite(table).all():  # JSON writes NaN and inf as NaN and Infinity
            self.write(self._train_dicts(names, where, table))
            return
        formats = self._train_formats(tuple(names))
        if formats is None:
            self.write(self._train_dicts(names, where, table))
            return
        jsonl_line, csv_line = formats
        # %r of a finite Python float is float.__repr__, which is what json.dumps and
        # _csv_cell write; %d of an int is its str.
        cells = [(s, e, *v) for (s, e), v in zip(where, table.tolist(), strict=True)]
        jsonl = "".join([jsonl_line % c for c in cells])
        csv_text = "".join([csv_line % c for c in cells])
        jsonl_file, csv_file = self._jsonl, self._csv
        self._guarded(self.jsonl_path, lambda: jsonl_file.write(jsonl))
        self._guarded(self.csv_path, lambda: csv_file.write(csv_text))

    @staticmethod
    def _train_dicts(names: Sequence[str], where: Sequence[tuple[int, int]],
                     table: Any) -> list[dict]:
        return [{"kind": "train", "step": s, "epoch": e, **dict(zip(names, v, strict=True))}
                for (s, e), v in zip(where, table.tolist(), strict=True)]

    def _train_formats(self, names: tuple[str, ...]) -> tuple[str, str] | None:
        """The %-formats of a training row's JSON line and CSV line (built once per names);
        ``None`` when the log's columns do not hold ``kind, step, epoch, *names`` in that
        order (the caller then writes dicts)."""
        if names in self._formats:
            return self._formats[names]
        order = ["kind", "step", "epoch", *names]
        formats = None
        if [c for c in self.columns if c in order] == order and len(set(order)) == len(order):
            # json.dumps of each key (escaped as the JSON writer does); '%' doubled
            keys = [json.dumps(n).replace("%", "%%") for n in names]
            jsonl_line = ('{"kind": "train", "step": %d, "epoch": %d'
                          + "".join(f", {k}: %r" for k in keys) + "}\n")
            fields = {"kind": "train", "step": "%d", "epoch": "%d", **{n: "%r" for n in names}}
            buffer = io.StringIO()
            # a template row through the csv writer: the separators and the empty cells
            csv.writer(buffer, lineterminator="\n").writerow(
                [fields.get(c, "") for c in self.columns])
            formats = (jsonl_line, buffer.getvalue())
        self._formats[names] = formats
        return formats

    @staticmethod
    def _guarded(path: str, write: Any) -> None:
        """Run a write; a filesystem error (disk full...) names the file and the cause."""
        try:
            write()
        except OSError as e:
            raise storage_error(e, path) from e

    def flush(self, sync: bool = False) -> None:
        """Flush to the OS; ``sync=True`` also fsyncs (before a checkpoint records offsets)."""
        for f, path in ((self._jsonl, self.jsonl_path), (self._csv, self.csv_path)):
            if f is not None:
                self._guarded(path, f.flush)
                if sync:
                    self._guarded(path, lambda f=f: os.fsync(f.fileno()))

    def position(self) -> dict:
        """Byte offsets of both files after everything written so far (flushes first)."""
        if self._jsonl is None or self._csv is None:
            raise RuntimeError("RunLog.position before open")
        self.flush()
        return {"jsonl": self._jsonl.tell(), "csv": self._csv.tell()}

    def close(self) -> None:
        """Close both files; a failing final flush (disk full) is reported after both close."""
        files, self._jsonl, self._csv = (self._jsonl, self._csv), None, None
        error = None
        for f in files:
            if f is not None:
                try:
                    f.close()
                except OSError as e:
                    error = error or e
        if error is not None:
            raise storage_error(error, error.filename or self.jsonl_path) from error


def _line_before(path: str, end: int, start: int) -> str | None:
    """The line that ends at byte ``end`` ('' when ``end == start``: no row yet), or ``None``
    when ``end`` is not at the end of a line."""
    if end == start:
        return ""
    if end < start:
        return None
    with open(path, "rb") as f:
        lo = max(start, end - (1 << 20))  # a row is far shorter than 1 MiB
        f.seek(lo)
        tail = f.read(end - lo)
    if not tail.endswith(b"\n"):
        return None
    cut = tail.rfind(b"\n", 0, len(tail) - 1)
    line = tail[cut + 1:-1] if cut >= 0 else (tail[:-1] if lo == start else None)
    return None if line is None else line.decode("utf-8", errors="replace")


def _canonical(row: dict) -> str:
    """A row compared as JSON (so that NaN equals NaN)."""
    return json.dumps({k: format_value(v) for k, v in row.items()}, sort_keys=True)


def _brief(row: dict | None) -> str:
    return "no row" if not row else f"the {row.get('kind')} row of step {row.get('step')}"


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value))
    return value


class ProgressBar:
    """A one-line progress bar redrawn in place with ``\\r``.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> ProgressBar(10, width=10, stream=out).update(5, "loss 1.0")
        >>> out.getvalue()
        '\\r[#####.....]  5/10 loss 1.0'
    """

    def __init__(self, total: int | None, *, width: int = 30, stream: TextIO | None = None):
        self.total = total
        self.width = width
        self.stream = stream if stream is not None else sys.stdout

    def update(self, done: int, text: str = "") -> None:
        if self.total:
            filled = min(self.width, self.width * done // self.total)
            count = f"{done:>{len(str(self.total))}}/{self.total}"
            bar = f"[{'#' * filled}{'.' * (self.width - filled)}] {count}"
        else:
            bar = f"[{done} steps]"
        self.stream.write(f"\r{bar} {text}".rstrip())
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


class ConsoleReport:
    """The console report: loss, learning rate, steps/s and peak memory every few steps.

    Called with a dict holding ``step`` (updates done), ``loss``, ``learning_rate`` and
    ``peak_memory`` (bytes), and optionally ``tokens`` (real tokens so far) and
    ``compiled_shapes``; it measures steps/s (and tokens/s) itself between calls.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> report = ConsoleReport(total_steps=100, stream=out, progress=False)
        >>> report({"step": 10, "loss": 0.25, "learning_rate": 0.01, "peak_memory": 2**20})
        >>> out.getvalue().split("|")[:3]
        ['step 10/100 ', ' loss 0.2500 ', ' lr 1.000e-02 ']
    """

    def __init__(
        self,
        total_steps: int | None,
        *,
        stream: TextIO | None = None,
        progress: bool | None = None,
        start_step: int = 0,
    ):
        self.total = total_steps
        self.stream = stream if stream is not None else sys.stdout
        if progress is None:  # a bar only on a terminal and a long run
            progress = bool(getattr(self.stream, "isatty", lambda: False)()) and (
                total_steps is None or total_steps >= 1000
            )
        self.bar = ProgressBar(total_steps, stream=self.stream) if progress else None
        self._last = (start_step, time.perf_counter(), 0.0)

    def __call__(self, values: dict) -> None:
        step, now = values["step"], time.perf_counter()
        last_step, last_time, last_tokens = self._last
        elapsed = now - last_time
        rate = (step - last_step) / elapsed if elapsed > 0 else math.inf
        tokens = values.get("tokens")
        self._last = (step, now, tokens or 0.0)
        total = f"/{self.total}" if self.total else ""
        text = (
            f"step {step}{total} | loss {values['loss']:.4f} | lr {values['learning_rate']:.3e}"
            f" | {rate:.1f} steps/s"
        )
        if tokens is not None and elapsed > 0:
            text += f" | {(tokens - last_tokens) / elapsed:.0f} tok/s"
        text += f" | peak mem {values['peak_memory'] / 2**20:.1f} MB"
        if values.get("compiled_shapes"):
            text += f" | {values['compiled_shapes']} shapes"
        if self.bar is not None:
            self.bar.update(step, text)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def message(self, text: str) -> None:
        """Print a line (an evaluation result) without breaking the progress bar."""
        if self.bar is not None:
            self.stream.write("\n")
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
