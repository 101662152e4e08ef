"""Charts drawn with characters, for a terminal without matplotlib.

Example:
    >>> print(text_chart({"up": [0.0, 1.0, 2.0, 3.0]}, width=8, height=4, title="line"))
    line
      3 |      **
        |    **
        |  **
      0 |**
        +--------
         0      3
         * up
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

__all__ = ["MARKS", "text_chart"]

MARKS = "*o+x#@%&"


def _label(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e4 or abs(value) < 1e-2:
        return f"{value:.1e}"
    return f"{value:.3g}"


def text_chart(series: Mapping[str, Sequence[float]], *, width: int = 60, height: int = 12,
               title: str = "", log_y: bool = False) -> str:
    """Plot one or more series of y values (x = their index) as lines of characters.

    Each series gets a mark from :data:`MARKS`; the y axis shows the range, the x axis the
    first and last index. ``log_y`` uses a logarithmic y axis (non-positive values skipped).
    """
    if width < 2 or height < 2:
        raise ValueError(f"width and height must be >= 2, got {width}x{height}")
    cleaned = {}
    for name, values in series.items():
        ys = [float(v) for v in values]
        cleaned[name] = [math.log10(v) if log_y and v > 0 else (math.nan if log_y else v)
                         for v in ys]
    finite = [v for ys in cleaned.values() for v in ys if math.isfinite(v)]
    if not finite:
        raise ValueError("text_chart: no finite value to plot")
    low, high = min(finite), max(finite)
    if high == low:
        high = low + 1.0
    length = max(len(ys) for ys in cleaned.values())
    grid = [[" "] * width for _ in range(height)]
    for mark, ys in zip(MARKS * (1 + len(cleaned) // len(MARKS)), cleaned.values()):
        for col in range(width):  # one sample per column: the nearest step
            i = round(col * (length - 1) / (width - 1))
            v = ys[i] if i < len(ys) else math.nan
            if not math.isfinite(v):
                continue
            row = round((v - low) * (height - 1) / (high - low))
            grid[height - 1 - row][col] = mark
    top = 10 ** high if log_y else high
    bottom = 10 ** low if log_y else low
    labels = [_label(top), _label(bottom)]
    pad = max(len(s) for s in labels) + 2
    lines = [title] if title else []
    for r, cells in enumerate(grid):
        label = labels[0] if r == 0 else labels[1] if r == height - 1 else ""
        lines.append(f"{label:>{pad}} |{''.join(cells).rstrip()}")
    lines.append(" " * pad + " +" + "-" * width)
    last = str(length - 1)
    lines.append(" " * pad + "  0" + " " * max(1, width - 1 - len(last)) + last)
    for mark, name in zip(MARKS * (1 + len(cleaned) // len(MARKS)), cleaned):
        lines.append(f"{' ' * pad}  {mark} {name}")
    return "\n".join(lines)
