"""Per-step values kept on the device until a block of log rows is due.

Fetching a value to the host makes Python wait for the device. The trainer therefore keeps
each update's loss, gradient norm and hyperparameters as ``mx.array`` and fetches a whole
block of them in one transfer (every ``log_every`` updates, and before a report, an
evaluation, a checkpoint or the end of the run).
"""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx
import numpy as np

__all__ = ["PendingValues"]


class PendingValues:
    """Scalars of the updates not yet written, fetched block by block as rows.

    Args:
        names: the column name of each value passed to :meth:`add`, in order.

    Example:
        >>> import mlx.core as mx
        >>> pending = PendingValues(["loss", "learning_rate"])
        >>> pending.add(0, 0, [mx.array(2.5), mx.array(0.1)])
        >>> pending.add(1, 0, [mx.array(2.0), mx.array(0.2)])
        >>> [(r["step"], r["loss"]) for r in pending.take_rows()]
        [(0, 2.5), (1, 2.0)]
        >>> len(pending)
        0
    """

    def __init__(self, names: Sequence[str]):
        self.names = list(names)
        self._where: list[tuple[int, int]] = []
        self._values: list[list[mx.array]] = []

    def __len__(self) -> int:
        return len(self._values)

    def add(self, step: int, epoch: int, values: list[mx.array]) -> None:
        """Keep one update's values (0-d arrays, still being computed)."""
        if self._values:
            # The host waits for the previous update only: the device stays one update
            # ahead, and the lazy graph cannot grow without bound.
            mx.eval(self._values[-1][0])
        self._where.append((step, epoch))
        self._values.append(values)

    def take(self) -> tuple[list[tuple[int, int]], np.ndarray]:
        """Fetch every pending value in one transfer: ``(where, table)``, oldest first.

        ``where[i]`` is update ``i``'s ``(step, epoch)``; ``table[i, j]`` its value of column
        ``names[j]`` (float32). Nothing is pending afterwards.

        Example:
            >>> import mlx.core as mx
            >>> pending = PendingValues(["loss"])
            >>> pending.add(4, 1, [mx.array(0.5)])
            >>> pending.take()
            ([(4, 1)], array([[0.5]], dtype=float32))
        """
        where = list(self._where)
        if not self._values:
            return where, np.zeros((0, len(self.names)), np.float32)
        # one stack of the block's arrays (update by update), one cast, one transfer
        flat = mx.stack([v for values in self._values for v in values])
        table = np.array(flat.astype(mx.float32)).reshape(len(where), len(self.names))
        self._where.clear()
        self._values.clear()
        return where, table

    def rows(self, where: list[tuple[int, int]], table: np.ndarray) -> list[dict]:
        """The training rows of :meth:`take`'s result, as dicts (``kind``, ``step``,
        ``epoch`` and one key per column)."""
        rows = []
        for (step, epoch), values in zip(where, table.tolist(), strict=True):
            row = {"kind": "train", "step": step, "epoch": epoch}
            row.update(zip(self.names, values, strict=True))
            rows.append(row)
        return rows

    def take_rows(self) -> list[dict]:
        """Fetch every pending value in one transfer; return the training rows, oldest first."""
        return self.rows(*self.take())
