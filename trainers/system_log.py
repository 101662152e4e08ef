"""Measurements of the machine, one record per block of rows: ``system.jsonl``.

``log.jsonl`` and ``log.csv`` hold only what the run computed, so that a resumed run's logs are
byte-identical to an uninterrupted run's. What the machine did — wall time, updates and
tokens per second, MLX's peak, active and cache memory, the number of distinct batch shapes
the step was compiled for — differs between runs and goes here instead, appended (never cut
back on resume: each process adds its own records).

Record: ``{"step", "time", "steps_per_s", "tokens_per_s"?, "peak_memory_mb",
"active_memory_mb", "cache_memory_mb", "compiled_shapes"}``.
"""

from __future__ import annotations

import json
import os
import time
from typing import TextIO

import mlx.core as mx

from .files import open_append, storage_error

__all__ = ["SystemLog"]

_MB = 2**20


class SystemLog:
    """Append one measurement per block to ``run_dir/system.jsonl``.

    Example:
        >>> import tempfile, os
        >>> log = SystemLog(tempfile.mkdtemp(), start_step=0)
        >>> record = log.record(10, tokens=None, shapes=1)
        >>> sorted(record)[:3], record["step"]
        (['active_memory_mb', 'cache_memory_mb', 'compiled_shapes'], 10)
        >>> log.close()
    """

    def __init__(self, run_dir: str, *, start_step: int):
        self.path = os.path.join(run_dir, "system.jsonl")
        self._file: TextIO | None = open_append(self.path)
        self._start = time.perf_counter()
        self._last = (start_step, self._start, 0.0)

    def record(self, step: int, *, tokens: float | None, shapes: int) -> dict:
        """Measure now (``step`` updates done, ``tokens`` real tokens so far) and append."""
        now = time.perf_counter()
        last_step, last_time, last_tokens = self._last
        elapsed = max(now - last_time, 1e-9)
        record = {
            "step": step,
            "time": round(now - self._start, 6),
            "steps_per_s": round((step - last_step) / elapsed, 3),
            "peak_memory_mb": round(mx.get_peak_memory() / _MB, 3),
            "active_memory_mb": round(mx.get_active_memory() / _MB, 3),
            "cache_memory_mb": round(mx.get_cache_memory() / _MB, 3),
            "compiled_shapes": shapes,
        }
        if tokens is not None:
            record["tokens_per_s"] = round((tokens - last_tokens) / elapsed, 1)
        self._last = (step, now, tokens or 0.0)
        if self._file is not None:
            try:
                self._file.write(json.dumps(record) + "\n")
            except OSError as e:
                raise storage_error(e, self.path) from e
        return record

    def close(self) -> None:
        """Close the file; a failing final flush (disk full) names ``system.jsonl``."""
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError as e:
                raise storage_error(e, self.path) from e
