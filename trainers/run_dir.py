"""The run directory: one owner at a time, a clean replacement, and the checkpoint to resume.

A run directory belongs to one process for the whole of :meth:`trainers.Trainer.fit`:

- **Ownership.** :meth:`RunDirectory.acquire` takes an exclusive ``flock`` on ``.lock``
  inside the directory and writes the owner's process id there. A second process, starting
  fresh or resuming, fails at once with :class:`RunDirectoryBusy`, naming the directory and
  the owner. The operating system drops the lock when its holder dies, so a lock left by a
  killed run never blocks the next one; the file is emptied on a clean release.
- **Replacement** (``overwrite=True``). Everything in the directory but the lock is removed
  before the new run writes anything. The names to remove are first recorded in
  ``.replacing.json`` (written atomically); a run killed half-way through leaves that list
  behind, and the next run finishes the removal before it looks at the directory. So a
  directory never holds a mixture of the old run and the new one.
- **Resume point.** The newest checkpoint that verifies (see
  :func:`trainers.checkpoint.find_resumable`); newer ones that do not are reported and moved
  aside as ``*.corrupt``, never deleted.

Only rank 0 of a distributed run owns and changes the directory; the other ranks read it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import warnings

from .checkpoint import TRAINER_META_KEYS, find_resumable, quarantine
from .errors import CheckpointError
from .files import describe_os_error, remove_tree, write_json_atomic

__all__ = ["RUN_FILES", "RunDirectory", "RunDirectoryBusy"]

LOCK_NAME = ".lock"
REPLACING_NAME = ".replacing.json"
# Entries whose presence means the directory already holds a run.
RUN_FILES = ("config.json", "log.jsonl", "log.csv", "checkpoints")


class RunDirectoryBusy(RuntimeError):
    """Another process owns the run directory (it holds the lock)."""


class RunDirectory:
    """A run directory owned by this process while :meth:`acquire` holds its lock.

    Example:
        >>> import tempfile
        >>> run = RunDirectory(tempfile.mkdtemp())
        >>> run.acquire()
        >>> RunDirectory(run.path).acquire()  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        trainers.run_dir.RunDirectoryBusy: run directory ... is in use by process ...
        >>> run.release()
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self.checkpoints = os.path.join(self.path, "checkpoints")
        self._lock_fd: int | None = None
        self._created = False

    # ------------------------------------------------------------------ ownership
    def acquire(self) -> None:
        """Create the directory if needed and take its lock.

        Raises:
            RunDirectoryBusy: another live process holds the lock.
            ValueError: the directory cannot be created or written (names the cause).
        """
        lock_path = os.path.join(self.path, LOCK_NAME)
        try:
            self._created = not os.path.lexists(self.path)
            os.makedirs(self.path, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as e:
            raise ValueError(
                f"run directory {self.path!r} is not writable: {describe_os_error(e, lock_path)}"
            ) from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            busy = self._busy(fd, lock_path)
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise busy from None
            raise ValueError(
                f"cannot lock run directory {self.path!r}: {describe_os_error(e, lock_path)}"
            ) from e
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as e:
            os.close(fd)
            raise ValueError(
                f"run directory {self.path!r} is not writable: {describe_os_error(e, lock_path)}"
            ) from e
        self._lock_fd = fd

    def release(self, *, refused: bool = False) -> None:
        """Empty the lock file and drop the lock (a no-op when not held).

        ``refused=True`` (the run never started): a directory that :meth:`acquire` created
        is removed again, so that a refused run leaves nothing behind.
        """
        if self._lock_fd is None:
            return
        try:
            os.ftruncate(self._lock_fd, 0)
            if refused and self._created:
                os.unlink(os.path.join(self.path, LOCK_NAME))
                os.rmdir(self.path)  # only if empty: anything else written stays
        except OSError:
            pass  # a failed clean-up must not hide the error that ended the run
        finally:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None

    def refuse_if_occupied(self, resume: bool | str, overwrite: bool) -> None:
        """Raise :class:`RunDirectoryBusy` when another process owns the directory, and
        ``ValueError`` for a fresh start in a directory that holds a run.

        Called before :meth:`acquire` as well (a refused run then writes nothing at all) and
        again in :meth:`claim`, under the lock.
        """
        if self._lock_fd is None:
            self._refuse_if_busy()
        if resume is False and not overwrite and self.holds_run():
            raise ValueError(
                f"run directory {self.path!r} already holds a run; pass resume=True to "
                "continue it or overwrite=True to replace it"
            )

    def _refuse_if_busy(self) -> None:
        """Test the lock of an existing lock file without creating anything."""
        lock_path = os.path.join(self.path, LOCK_NAME)
        try:
            fd = os.open(lock_path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return  # no lock file (or not a plain file): acquire() reports what is wrong
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise self._busy(fd, lock_path) from None
        finally:
            os.close(fd)  # also drops the test lock, if it was taken

    def _busy(self, fd: int, lock_path: str) -> RunDirectoryBusy:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        return RunDirectoryBusy(
            f"run directory {self.path!r} is in use by process {holder} "
            f"(it holds {lock_path}); wait for it to finish or stop it first"
        )

    # ------------------------------------------------------------------ contents
    def holds_run(self) -> bool:
        """Whether the directory already holds (part of) a run. A symbolic link where a run
        file belongs is not a run: the trainer's writes refuse it (``UnsafePathError``)."""
        return any(os.path.exists(p) and not os.path.islink(p)
                   for p in (os.path.join(self.path, name) for name in RUN_FILES))

    def replace_run(self) -> None:
        """Remove everything but the lock, so that a new run starts in an empty directory.

        Interruptible: the names are recorded first and :meth:`finish_replacement` completes
        the removal after a crash.
        """
        names = sorted(n for n in os.listdir(self.path) if n not in (LOCK_NAME, REPLACING_NAME))
        write_json_atomic(os.path.join(self.path, REPLACING_NAME), {"remove": names})
        self.finish_replacement()

    def finish_replacement(self) -> None:
        """Complete a replacement a previous run started (a no-op when there is none)."""
        marker = os.path.join(self.path, REPLACING_NAME)
        if not os.path.lexists(marker):
            return
        with open(marker, encoding="utf-8") as f:
            names = json.load(f)["remove"]
        for name in names:
            remove_tree(os.path.join(self.path, os.path.basename(name)))
        os.unlink(marker)

    def claim(self, resume: bool | str, overwrite: bool) -> None:
        """Make the directory ready for this run (the owner calls it, after :meth:`acquire`).

        Finishes an interrupted replacement; then, for a fresh start, refuses a directory
        holding a run unless ``overwrite`` (which replaces it); for ``resume=True`` in a
        directory whose run never saved a checkpoint, clears its remains so the run starts
        cleanly.

        Raises:
            ValueError: a fresh start in a directory that holds a run, without ``overwrite``.
        """
        self.finish_replacement()
        self.refuse_if_occupied(resume, overwrite)
        if resume is True:
            if self.holds_run() and not _saved_checkpoints(self.checkpoints):
                self.replace_run()
        elif resume is False and self.holds_run():
            self.replace_run()

    def checkpoint_to_resume(self, *, owner: bool) -> str | None:
        """The newest intact checkpoint, or ``None`` when there is no checkpoint at all.

        The owner moves newer, broken checkpoints aside (``*.corrupt``) with a warning saying
        which one the run resumes from instead.

        Raises:
            trainers.CheckpointError: checkpoints exist but none verifies (nothing is removed).
        """
        path, broken = find_resumable(self.checkpoints, required=TRAINER_META_KEYS)
        if path is None and broken:
            reasons = "; ".join(f"{bad}: {reason}" for bad, reason in broken)
            raise CheckpointError(
                f"no intact checkpoint in {self.checkpoints} to resume from ({reasons}); "
                "pass overwrite=True to start over"
            )
        for bad, reason in broken if owner else ():
            moved = quarantine(bad)
            warnings.warn(
                f"checkpoint {bad} is unusable ({reason}); moved aside to {moved}; "
                f"resuming from {path}",
                stacklevel=3,
            )
        return path


def _saved_checkpoints(root: str) -> list[str]:
    """Names under ``checkpoints/`` other than unfinished ``.tmp`` saves."""
    names = os.listdir(root) if os.path.isdir(root) else []
    return [n for n in names if not n.endswith(".tmp")]
