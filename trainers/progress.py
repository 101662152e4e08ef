"""The console display of a run: step, rate, loss, tokens or samples per second, elapsed, ETA.

:class:`ProgressDisplay` is told about the run only when the trainer writes a block of log rows
(every ``report_every`` updates, by default ``log_every``), so it adds nothing to a step. On a
terminal it is a progress bar redrawn in place (`tqdm <https://tqdm.github.io>`_); anywhere
else (a file, a pipe, a notebook's captured output) it prints one plain line per block::

    step 10/20 | loss 0.4123 | lr 3.000e-01 | 512.0 steps/s | 32768 samples/s | elapsed 0:01 \
| ETA 0:01 | peak mem 3.2 MB

The rate is measured over the last block; the ETA divides the remaining updates by a
smoothed rate (an exponential average of the blocks' rates, so one slow block, such as the
first one, which compiles the step, does not swing it). The bar shows the same numbers::

     42%|████████▍           | 8400/20000 [0:07<0:10, 1150.2 steps/s, 73613 samples/s, \
loss 0.0611, lr 2.664e-01, mem 0.5 MB]
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable
from typing import Any, TextIO

__all__ = ["ProgressDisplay", "format_duration", "samples_per_update"]

# Weight of the newest block's rate in the smoothed rate behind the ETA (as tqdm's default).
_SMOOTHING = 0.3


def format_duration(seconds: float) -> str:
    """``M:SS`` below an hour, ``H:MM:SS`` above (whole seconds); ``?`` when unknown.

    Example:
        >>> format_duration(7.4), format_duration(125), format_duration(3725), \
format_duration(math.inf)
        ('0:07', '2:05', '1:02:05', '?')
    """
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def samples_per_update(shapes: Iterable[tuple], world_size: int = 1) -> int | None:
    """Samples in one update, from the batch shapes the step was built for (the trainer's
    record: per update, the shapes of each micro-batch's arrays, on one rank); ``None`` when
    updates differ in size (then only tokens, if counted, are shown per second).

    Example:
        >>> samples_per_update({(((64, 8), (64,)), ((64, 8), (64,)))}, world_size=2)
        256
        >>> samples_per_update({(((64, 8), (64,)),), (((32, 8), (32,)),)}) is None
        True
    """
    shapes = list(shapes)
    if len(shapes) != 1:
        return None
    try:
        return sum(micro[0][0] for micro in shapes[0]) * world_size
    except (IndexError, TypeError):  # a batch of scalars: no sample axis
        return None


class ProgressDisplay:
    """The console report of a run, updated once per block of log rows.

    Args:
        total_steps: the run's updates (``None`` when unknown: no ETA, no bar length).
        stream: where to write (default ``sys.stdout``).
        progress: ``True`` a bar redrawn in place, ``False`` plain lines, ``None`` (default)
            a bar when ``stream`` is a terminal.
        start_step: the step the run starts from (a resumed run's checkpoint).

    Called with a dict holding ``step`` (updates done), ``loss``, ``learning_rate``,
    ``peak_memory`` (bytes) and optionally ``tokens`` (real tokens so far in this session),
    ``samples`` (samples per update) and ``compiled_shapes``.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> display = ProgressDisplay(100, stream=out, progress=False)
        >>> display({"step": 10, "loss": 0.25, "learning_rate": 0.01, "peak_memory": 2**20})
        >>> out.getvalue().split(" | ")[:3]
        ['step 10/100', 'loss 0.2500', 'lr 1.000e-02']
    """

    def __init__(self, total_steps: int | None, *, stream: TextIO | None = None,
                 progress: bool | None = None, start_step: int = 0):
        self.total = total_steps
        self.stream = stream if stream is not None else sys.stdout
        if progress is None:
            progress = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self._last = (start_step, self.start, 0.0)  # step, time, tokens at the last update
        self._rate: float | None = None  # smoothed steps/s
        self.progress = progress
        # drawn from the first report on, so that lines printed before it (a banner at the
        # trainer's start event) do not land on the bar's line
        self.bar: Any = None

    def __call__(self, values: dict[str, Any]) -> None:
        step, now = values["step"], time.perf_counter()
        last_step, last_time, last_tokens = self._last
        seconds = now - last_time
        rate = (step - last_step) / seconds if seconds > 0 else math.inf
        if step > last_step and math.isfinite(rate):
            self._rate = rate if self._rate is None else \
                _SMOOTHING * rate + (1 - _SMOOTHING) * self._rate
        tokens = values.get("tokens")
        self._last = (step, now, last_tokens if tokens is None else tokens)
        speed = ""
        if tokens is not None and seconds > 0:
            speed = f"{(tokens - last_tokens) / seconds:.0f} tok/s"
        elif values.get("samples") and math.isfinite(rate):
            speed = f"{rate * values['samples']:.0f} samples/s"
        elapsed = format_duration(now - self.start)
        eta = None
        if self.total:
            left = (self.total - step) / self._rate if self._rate else math.inf
            eta = format_duration(left if step < self.total else 0.0)
        memory = f"{values['peak_memory'] / 2**20:.1f} MB"
        shapes = f"{values['compiled_shapes']} shapes" if values.get("compiled_shapes", 0) > 1 \
            else ""
        loss, lr = f"loss {values['loss']:.4f}", f"lr {values['learning_rate']:.3e}"
        if self.progress:  # the bar: tqdm draws it, the numbers are the plain lines' own
            if self.bar is None:
                self.bar = _bar(self.total, last_step, self.stream)
            timing = f"{elapsed}<{eta}" if eta is not None else elapsed
            fields = [f"[{timing}, {rate:.1f} steps/s", speed, loss, lr, f"mem {memory}]",
                      shapes]
            self.bar.info = ", ".join(f for f in fields if f)
            self.bar.update(step - self.bar.n)
            return
        total = f"/{self.total}" if self.total else ""
        fields = [f"step {step}{total}", loss, lr, f"{rate:.1f} steps/s", speed,
                  f"elapsed {elapsed}", f"ETA {eta}" if eta is not None else "",
                  f"peak mem {memory}", shapes]
        self.stream.write(" | ".join(f for f in fields if f) + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """Print a line (an evaluation result, a notice) above the bar."""
        if self.bar is not None:
            self.bar.clear()
        self.stream.write(text + "\n")
        self.stream.flush()
        if self.bar is not None:
            self.bar.refresh()

    def close(self) -> None:
        """Leave the bar's last state on screen (a no-op for plain lines)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _bar(total: int | None, start_step: int, stream: TextIO) -> Any:
    """A tqdm bar drawn only when told (no monitor thread, no redraws of its own, no timing
    of its own: the display's numbers come in its postfix)."""
    from tqdm import tqdm

    class Bar(tqdm):
        monitor_interval = 0  # tqdm's monitor thread only tunes miniters, fixed here
        info = ""  # the display's numbers, drawn after the count

        @property
        def format_dict(self) -> dict:  # tqdm passes extra keys on to bar_format
            return {**super().format_dict, "info": self.info}

    # miniters=1: draw at every block, at most every mininterval (a fast run with
    # log_every=1 redraws 10 times a second, not at every update)
    layout = "{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} {info}" if total else \
        "{n_fmt} steps {info}"
    return Bar(total=total, initial=start_step, file=stream, dynamic_ncols=True, miniters=1,
               mininterval=0.1, bar_format=layout, leave=True)
