"""The run directory: one owner at a time, a record of what the trainer wrote, and the
checkpoint to resume.

A run directory belongs to one process for the whole of :meth:`trainers.Trainer.fit`:

- **Lock.** :meth:`RunDirectory.acquire` takes an exclusive ``flock`` on ``.lock`` inside the
  directory and writes the owner's process id there. A second process, starting fresh or
  resuming, fails at once with :class:`RunDirectoryBusy`, naming the directory and the owner.
  The operating system drops the lock when its holder dies, so a lock left by a killed run
  never blocks the next one; the file is emptied on a clean release.
- **Record** (``.run.json``). The names the trainer writes at the top of the directory
  (``config.json``, the logs, ``system.jsonl``, ``checkpoints/``, ``best/``, a tracker's
  ``tensorboard/``...) are recorded *before* they are created, with the run's id and, once
  the run has ended, how it ended. Only recorded names are the trainer's: ``overwrite=True``
  and a restart remove those and nothing else, and a directory holding anything else (a
  user's notes, data, scripts, or a file inside ``checkpoints/`` that is not a checkpoint)
  is refused with a message naming a few of the files, unless ``overwrite="all"``.
  A directory made before the record existed is recognised by its trainer ``config.json`` or
  its checkpoints.
- **Replacement.** The names to remove are first written to ``.replacing.json`` (atomically);
  a run killed half-way leaves that list behind, and the next run finishes the removal before
  it looks at the directory, so a directory never holds a mixture of two runs. The list is
  checked before anything is removed: plain names inside the directory only, never the lock.
- **Resume point.** The newest checkpoint that verifies (see
  :func:`trainers.checkpoint.find_resumable`); newer ones that do not are reported and moved
  aside as ``*.corrupt`` (never deleted) once the resume has passed every check.

Only rank 0 of a distributed run owns and changes the directory; the other ranks read it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import time
import warnings
from collections.abc import Callable, Iterable
from typing import Any

from .checkpoint import TRAINER_META_KEYS, find_resumable, quarantine
from .errors import CheckpointError
from .files import describe_os_error, remove_tree, write_json_atomic

__all__ = ["RUN_FILES", "TRAINER_NAMES", "RunDirectory", "RunDirectoryBusy", "record_owned"]

LOCK_NAME = ".lock"
REPLACING_NAME = ".replacing.json"
RECORD_NAME = ".run.json"
# Entries whose presence means the directory already holds a run.
RUN_FILES = ("config.json", "log.jsonl", "log.csv", "checkpoints")
# Every top-level name the trainer (and its trackers) may write.
TRAINER_NAMES = ("config.json", "log.jsonl", "log.csv", "system.jsonl", "checkpoints", "best",
                 "tensorboard")
_BOOKKEEPING = (LOCK_NAME, RECORD_NAME, REPLACING_NAME)
# What the trainer puts inside the directories it owns; anything else there is not its own.
_CHECKPOINT_ENTRY = re.compile(r"^step_\d{8,}(\.tmp|\.old\.tmp|\.corrupt(-\d+)?)?$")
_INSIDE = {"checkpoints": _CHECKPOINT_ENTRY, "best": _CHECKPOINT_ENTRY,
           "tensorboard": re.compile(r"^events\.out\.tfevents\..+")}
_SAVED = re.compile(r"^step_\d{8,}$")
_LEFTOVER = re.compile(r"^step_\d{8,}(\.old)?\.tmp$")
_LISTED = 5  # foreign files named in a refusal


class RunDirectoryBusy(RuntimeError):
    """Another process owns the run directory (it holds the lock)."""


def _valid_name(name: Any) -> bool:
    """A plain entry of the directory: not empty, not '.' or '..', no separator, no NUL."""
    return (isinstance(name, str) and name not in ("", ".", "..")
            and "/" not in name and os.sep not in name and "\0" not in name)


def record_owned(run_dir: str | os.PathLike, *names: str) -> None:
    """Record ``names`` (entries at the top of ``run_dir``) as written by this run, so that
    ``overwrite=True`` and a restart remove them with the run instead of refusing the
    directory. For programs that write their own files beside the trainer's (a summary, plots,
    adapters): call it before writing them, in a run directory the trainer has started.

    Example:
        >>> import os, tempfile
        >>> run = tempfile.mkdtemp()
        >>> record_owned(run, "summary.json")
        >>> "summary.json" in RunDirectory(run).owned()
        True
    """
    RunDirectory(run_dir).record(*names)


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
        self._made: list[str] = []  # names this process created (removed if the start fails)

    # ------------------------------------------------------------------ the lock
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

        ``refused=True`` (the run never started): the files this process created and a
        directory that :meth:`acquire` created are removed again, so that a refused run
        leaves nothing behind.
        """
        if self._lock_fd is None:
            return
        if refused:
            self.discard_created()
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
        # The owner writes its pid just after it takes the lock: a process arriving in
        # between reads an empty file, so it waits a moment for the pid.
        holder = ""
        deadline = time.monotonic() + 0.5
        while True:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            if holder or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        who = f"process {holder}" if holder else "another process (starting up)"
        return RunDirectoryBusy(
            f"run directory {self.path!r} is in use by {who} "
            f"(it holds {lock_path}); wait for it to finish or stop it first"
        )

    # ------------------------------------------------------------------ the record
    def read_record(self) -> dict[str, Any] | None:
        """The run record (``.run.json``), or ``None`` when there is none.

        Raises:
            ValueError: the record is not what the trainer writes (names the file).
        """
        path = os.path.join(self.path, RECORD_NAME)
        if not os.path.lexists(path):
            return None
        try:
            with open(path, encoding="utf-8") as f:
                record = json.load(f)
        except (OSError, ValueError) as e:
            raise ValueError(f"run record {path} is unreadable ({e}); it lists the files the "
                             "trainer wrote in this directory") from None
        owned = record.get("owned") if isinstance(record, dict) else None
        if not isinstance(owned, list) or not all(map(_valid_name, owned)):
            raise ValueError(f"run record {path} is malformed: 'owned' must be a list of plain "
                             "file names inside the run directory")
        return record

    def run_id(self) -> str | None:
        """The id of the run this directory holds (``None``: no run, or one made before ids)."""
        record = self.read_record()
        if record is not None:
            return record.get("run_id")
        config = _read_json(os.path.join(self.path, "config.json"))
        return config.get("run_id") if isinstance(config, dict) else None

    def ended(self) -> dict | None:
        """How the run ended (``{"step", "reason"}``), or ``None`` while it has not."""
        record = self.read_record()
        return None if record is None else record.get("ended")

    def owned(self) -> set[str]:
        """The top-level names the trainer wrote here (its bookkeeping files included)."""
        record = self.read_record()
        if record is not None:
            names = set(record["owned"])
        elif self._made_before_records():
            names = {n for n in TRAINER_NAMES if os.path.lexists(os.path.join(self.path, n))}
        else:
            names = set()
        names |= set(_BOOKKEEPING) | set(self._being_removed())
        return names | {f".{n}.tmp" for n in names}  # an atomic write's leftover

    def _being_removed(self) -> list[str]:
        """The names an interrupted removal listed (still the trainer's: it was removing
        them); empty when there is no marker or it is malformed (:meth:`finish_replacement`
        reports that)."""
        try:
            return self._marker_names()
        except ValueError:
            return []

    def _made_before_records(self) -> bool:
        """A run directory written before records existed: a trainer ``config.json`` or a
        checkpoint with its ``meta.json``."""
        config = _read_json(os.path.join(self.path, "config.json"))
        if isinstance(config, dict) and {"columns", "optimizer", "schedules"} <= set(config):
            return True
        names = os.listdir(self.checkpoints) if os.path.isdir(self.checkpoints) else []
        return any(_CHECKPOINT_ENTRY.match(n) and os.path.isfile(
            os.path.join(self.checkpoints, n, "meta.json")) for n in names)

    def foreign(self, owned: set[str] | None = None) -> list[str]:
        """Entries the trainer did not write, as paths relative to the directory, sorted."""
        owned = self.owned() if owned is None else owned
        found = []
        for name in sorted(_listdir(self.path)):
            if name not in owned:
                found.append(name)
                continue
            pattern = _INSIDE.get(name)
            inside = os.path.join(self.path, name)
            if pattern is not None and os.path.isdir(inside) and not os.path.islink(inside):
                found += [f"{name}/{n}" for n in sorted(_listdir(inside))
                          if not pattern.match(n)]
        return found

    def record(self, *names: str) -> None:
        """Add ``names`` to the record (before they are created). Writes only when new."""
        for name in names:
            if not _valid_name(name) or name in _BOOKKEEPING:
                raise ValueError(f"record_owned: {name!r} is not a plain file name of the run "
                                 "directory")
        record = self.read_record() or {"format_version": 1, "run_id": self.run_id(),
                                        "owned": [], "ended": None}
        if set(names) <= set(record["owned"]) and os.path.lexists(self._record_path()):
            return
        record["owned"] = sorted(set(record["owned"]) | set(names))
        self._write_record(record)

    def record_end(self, ended: dict) -> None:
        """Record how the run ended (a resume of it then changes nothing)."""
        record = self.read_record()
        if record is not None and record.get("ended") != ended:
            self._write_record({**record, "ended": ended})

    def _record_path(self) -> str:
        return os.path.join(self.path, RECORD_NAME)

    def _write_record(self, record: dict) -> None:
        if not os.path.lexists(self._record_path()):
            self._made.append(RECORD_NAME)
        write_json_atomic(self._record_path(), record)

    def _new_record(self, run_id: str, names: Iterable[str]) -> None:
        self._write_record({"format_version": 1, "run_id": run_id, "owned": sorted(names),
                            "ended": None})

    # ------------------------------------------------------------------ starting a run
    def refuse_if_occupied(self, resume: bool | str, overwrite: bool | str,
                           names: Iterable[str] = TRAINER_NAMES) -> None:
        """Raise when this run may not start here; changes nothing.

        :class:`RunDirectoryBusy` when another process owns the directory; ``ValueError`` for
        a fresh start in a directory that holds a run or files named like the run's
        (``names``), for ``overwrite=True`` in a directory holding files the trainer did not
        write, and for ``resume=True`` in a directory holding files named like a run's that no
        run of the trainer wrote. Called before :meth:`acquire` (a refused run then writes
        nothing at all) and again in :meth:`claim`, under the lock.
        """
        if self._lock_fd is None:
            self._refuse_if_busy()
        if not os.path.isdir(self.path):
            return
        owned = self.owned()
        if resume is False and overwrite is True:
            foreign = self.foreign(owned)
            if foreign:
                raise ValueError(
                    f"run directory {self.path!r} holds files the trainer did not write "
                    f"({_few(foreign)}); overwrite=True removes only the trainer's own files. "
                    "Move them away, or pass overwrite='all' to delete everything in it")
        elif resume is False and not overwrite:
            # a link where a run file belongs is refused by the writes, naming the link
            present = [n for n in names if os.path.exists(os.path.join(self.path, n))
                       and not os.path.islink(os.path.join(self.path, n))]
            if any(n in owned for n in present):
                raise ValueError(
                    f"run directory {self.path!r} already holds a run; pass resume=True to "
                    "continue it or overwrite=True to replace it")
            if present:
                raise ValueError(
                    f"run directory {self.path!r} holds files the trainer did not write with "
                    f"the names of its own ({_few(present)}); move them away, or pass "
                    "overwrite='all' to delete everything in it")
        elif resume is True and not self.saved_checkpoints() and self.ended() is None:
            foreign = [n for n in self.foreign(owned)
                       if n.split("/")[0] in TRAINER_NAMES]
            if foreign:
                raise ValueError(
                    f"run directory {self.path!r} holds no checkpoint to resume from, and "
                    f"files the trainer did not write ({_few(foreign)}); it is not a run of "
                    "this trainer. Move them away, or pass overwrite='all' to delete "
                    "everything in it")

    def claim(self, resume: bool | str, overwrite: bool | str, names: Iterable[str],
              new_id: Callable[[], str]) -> None:
        """Make the directory ready for this run (the owner calls it, after :meth:`acquire`).

        Finishes an interrupted replacement, checks again (:meth:`refuse_if_occupied`), then:
        ``overwrite`` removes the old run (only the trainer's files, or everything with
        ``"all"``); a fresh start records ``names`` under a new run id; ``resume=True`` in a
        directory whose run never saved a checkpoint (and did not end) removes that run's
        files and starts it again. A resume from a checkpoint changes nothing here.
        """
        names = list(names)
        self.finish_replacement()
        self.refuse_if_occupied(resume, overwrite, names)
        if resume is False and overwrite:
            every = overwrite == "all"
            self._remove(self._present(None if every else self.owned()))
        elif resume is True:
            if self.saved_checkpoints() or self.ended() is not None:
                return
            self._remove(self._present(self.owned()))
        elif resume is not False:
            return  # a checkpoint path: recorded once the resume passed its checks
        # what this start will create (removed again if it fails before its first update)
        self._made += [n for n in names if not os.path.lexists(os.path.join(self.path, n))]
        self._new_record(new_id(), names)

    def adopt(self, run_id: str | None, names: Iterable[str]) -> None:
        """After a resume passed its checks: record the run's names (a directory made before
        records, or a run continued from a checkpoint path) and remove leftover temporary
        checkpoint directories of a killed save."""
        record = self.read_record()
        if record is None:
            self._new_record(run_id or "", [n for n in names])
        elif not set(names) <= set(record["owned"]):
            self.record(*names)
        for root in (self.checkpoints, os.path.join(self.path, "best")):
            for name in _listdir(root):
                if _LEFTOVER.match(name):
                    remove_tree(os.path.join(root, name))

    def discard_created(self) -> None:
        """Remove what this process created for a start that failed before its first update,
        so that the same command can run again."""
        for name in reversed(self._made):
            try:
                remove_tree(os.path.join(self.path, name))
            except OSError:
                pass  # the error that stopped the start is the one to report
        self._made.clear()

    def _present(self, names: set[str] | None) -> list[str]:
        """Entries to remove: ``names`` that exist (every entry for ``None``), never the
        lock or the replacement marker."""
        keep = (LOCK_NAME, REPLACING_NAME)
        return sorted(n for n in _listdir(self.path)
                      if n not in keep and (names is None or n in names))

    def _remove(self, names: list[str]) -> None:
        """Remove ``names``; interruptible: the list is recorded first and
        :meth:`finish_replacement` completes the removal after a crash."""
        if not names:
            return
        # the record last: a removal killed half-way still knows what was the trainer's
        names = sorted(names, key=lambda n: n == RECORD_NAME)
        write_json_atomic(os.path.join(self.path, REPLACING_NAME), {"remove": names})
        self.finish_replacement()

    def finish_replacement(self) -> None:
        """Complete a removal a previous run started (a no-op when there is none).

        Raises:
            ValueError: the marker is malformed or names something outside the directory, or
                the lock (nothing is removed; the message names the marker).
        """
        marker = os.path.join(self.path, REPLACING_NAME)
        if not os.path.lexists(marker):
            return
        for name in self._marker_names():
            remove_tree(os.path.join(self.path, name))
        os.unlink(marker)

    def _marker_names(self) -> list[str]:
        """The names in ``.replacing.json`` (none without one), checked.

        Raises:
            ValueError: the marker is malformed or names something it may not.
        """
        marker = os.path.join(self.path, REPLACING_NAME)
        if not os.path.lexists(marker):
            return []
        try:
            with open(marker, encoding="utf-8") as f:
                names = json.load(f).get("remove")
        except (OSError, ValueError, AttributeError) as e:
            raise ValueError(_bad_marker(marker, f"it is not a JSON object ({e})")) from None
        if not isinstance(names, list):
            raise ValueError(_bad_marker(marker, "'remove' is not a list of names"))
        bad = [n for n in names if not _valid_name(n) or n in (LOCK_NAME, REPLACING_NAME)]
        if bad:
            raise ValueError(_bad_marker(marker, f"it names {bad[:_LISTED]!r}, which are not "
                                                 "files of the run the trainer may remove"))
        return names

    # ------------------------------------------------------------------ resuming
    def saved_checkpoints(self) -> list[str]:
        """The ``step_<n>`` entries under ``checkpoints/`` (not unfinished ``.tmp`` saves, not
        ones set aside as ``.corrupt``, not files of anyone else)."""
        return [n for n in _listdir(self.checkpoints) if _SAVED.match(n)]

    def checkpoint_to_resume(self) -> tuple[str | None, list[tuple[str, str]]]:
        """The newest intact checkpoint (``None`` when there is no checkpoint at all), and the
        newer broken ones with the reasons; nothing is renamed here (:meth:`set_aside`).

        Raises:
            trainers.CheckpointError: checkpoints exist but none verifies (nothing is changed).
        """
        # keep_loaded: the load that follows uses what was read here (one read per resume)
        path, broken = find_resumable(self.checkpoints, required=TRAINER_META_KEYS,
                                      keep_loaded=True)
        if path is None and broken:
            reasons = "; ".join(f"{bad}: {reason}" for bad, reason in broken)
            raise CheckpointError(
                f"no intact checkpoint in {self.checkpoints} to resume from ({reasons}); "
                "pass overwrite=True to start over"
            )
        return path, broken

    @staticmethod
    def set_aside(broken: list[tuple[str, str]], resumed_from: str | None) -> None:
        """Move the broken newer checkpoints aside (``*.corrupt``) with a warning each."""
        for bad, reason in broken:
            moved = quarantine(bad)
            warnings.warn(
                f"checkpoint {bad} is unusable ({reason}); moved aside to {moved}; "
                f"resuming from {resumed_from}",
                stacklevel=3,
            )


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _few(names: list[str]) -> str:
    more = f" and {len(names) - _LISTED} more" if len(names) > _LISTED else ""
    return ", ".join(names[:_LISTED]) + more


def _bad_marker(marker: str, why: str) -> str:
    return (f"run directory marker {marker} is malformed: {why}. It lists the files an "
            "interrupted overwrite was removing; nothing was removed. Check the directory, "
            "then delete the marker to continue")
