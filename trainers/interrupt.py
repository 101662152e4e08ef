"""Ctrl-C during training: the first stops the run at the next step boundary, the second aborts.

While :meth:`trainers.Trainer.fit` runs its updates it holds SIGINT (Ctrl-C): the handler only
sets ``Interrupt.requested``, and the loop, after the update in progress, writes the log
rows, saves a checkpoint and raises :class:`trainers.errors.TrainingInterrupted`. The run is
not finished: ``fit(resume=True)`` continues it as if it had never stopped. A second Ctrl-C
before the run has stopped restores the previous handler and raises ``KeyboardInterrupt`` at
once (whatever was being written is left as a checkpoint's atomic save leaves it: the last
complete checkpoint stays the resume point).

Signals reach only the main thread, so a ``fit`` running in another thread leaves SIGINT
alone, as does one whose SIGINT is ignored or not handled from Python.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

__all__ = ["Interrupt"]


class Interrupt:
    """Holds SIGINT between :meth:`install` and :meth:`restore`.

    Example:
        >>> import os, signal
        >>> interrupt = Interrupt.install()
        >>> os.kill(os.getpid(), signal.SIGINT)  # the first Ctrl-C: noted, nothing raised
        >>> interrupt.requested
        True
        >>> interrupt.restore()
        >>> signal.getsignal(signal.SIGINT) is signal.default_int_handler
        True
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._held = False

    @classmethod
    def install(cls, enabled: bool = True) -> Interrupt:
        """Take SIGINT (when ``enabled``, in the main thread, and SIGINT is handled from
        Python); otherwise an :class:`Interrupt` that is never requested."""
        interrupt = cls()
        if not enabled or threading.current_thread() is not threading.main_thread():
            return interrupt
        previous = signal.getsignal(signal.SIGINT)
        if previous in (signal.SIG_IGN, None):  # ignored (nohup, a background job) or not ours
            return interrupt
        signal.signal(signal.SIGINT, interrupt._handle)
        interrupt._previous, interrupt._held = previous, True
        return interrupt

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # the second Ctrl-C: abort now
            self.restore()
            raise KeyboardInterrupt
        self.requested = True

    def restore(self) -> None:
        """Give SIGINT back to the handler it had before :meth:`install` (idempotent)."""
        if self._held:
            self._held = False
            signal.signal(signal.SIGINT, self._previous)
