"""Every file the trainer writes inside a run directory goes through this module.

Two rules:

**Never through a symbolic link.** A symbolic link inside a run directory (``log.csv``,
``config.json``, ``checkpoints/``...) could point anywhere; writing through it would overwrite
a file outside the run. Every function here refuses one with :class:`UnsafePathError` naming
the path. The run directory itself may be a symbolic link (a user's choice, e.g. to put runs
on another disk), and so may any directory above it: :func:`ensure_dir` takes the run
directory as ``root`` and checks only the components below it. A file's parent directory is
trusted: create it with :func:`ensure_dir`.

**Whole files are replaced atomically.** :func:`write_bytes_atomic` (and the text and JSON
forms) writes ``.<name>.tmp`` in the same directory, fsyncs it, renames it over ``<name>`` and
fsyncs the directory, so a crash leaves either the old or the new file, never a mixture. A
leftover ``.<name>.tmp`` of a killed process is replaced by the next write. Files inside a
directory that is itself a temporary (a checkpoint's ``step_<n>.tmp/``) are written once with
:class:`NewFile` or :func:`save_safetensors`; the directory's rename makes them visible.
Log files are appended to (:func:`open_append`) and cut back to a saved size
(:func:`truncate`).

Errors from the file system become :class:`StorageError` (an ``OSError``) whose message names
the path and the cause in words ("disk full", "permission denied", "read-only file system",
...). MLX reports a failed write of a safetensors file as ``RuntimeError("... Unable to write
...")`` without a path when it writes by file name; :func:`save_safetensors` therefore
streams through a Python file object, and turns any ``RuntimeError`` of MLX into a
:class:`StorageError` naming the file and the likely cause.

Example:
    >>> import os, tempfile
    >>> run = tempfile.mkdtemp()
    >>> write_json_atomic(os.path.join(run, "config.json"), {"b": 1, "a": [1, 2]})
    >>> open(os.path.join(run, "config.json")).read()
    '{\\n "a": [\\n  1,\\n  2\\n ],\\n "b": 1\\n}'
    >>> os.symlink("/etc/hostname", os.path.join(run, "log.csv"))
    >>> open_append(os.path.join(run, "log.csv"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    trainers.errors.UnsafePathError: refusing to write .../log.csv: it is a symbolic link...
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, TextIO, cast

from . import digests
from .errors import StorageError, UnsafePathError

__all__ = [
    "StorageError",
    "atomic_path",
    "UnsafePathError",
    "describe_os_error",
    "ensure_dir",
    "fsync_dir",
    "BackgroundSync",
    "NewFile",
    "open_append",
    "remove_tree",
    "save_safetensors",
    "storage_error",
    "truncate",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_text_atomic",
]

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = os.O_NOFOLLOW
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
# os.replace uses the same renameat() as os.rename, which is what supports_dir_fd lists.
_HAS_DIR_FD = all(f in os.supports_dir_fd for f in (os.open, os.stat, os.unlink, os.rename))

_CAUSES = {
    errno.ENOSPC: "disk full (no space left on device)",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied (operation not permitted)",
    errno.EROFS: "read-only file system",
    errno.ENOENT: "no such file or directory",
    errno.ENOTDIR: "a component of the path is not a directory",
    errno.EISDIR: "it is a directory",
    errno.EEXIST: "it already exists",
    errno.ELOOP: "it is a symbolic link (files inside a run directory are never written "
                 "through one)",
    errno.EIO: "input/output error (a failing disk or a lost network mount)",
    errno.EFBIG: "file too large for the file system",
    errno.ENAMETOOLONG: "file name too long",
    errno.EMFILE: "too many open files",
    errno.ENFILE: "too many open files in the system",
}
if hasattr(errno, "EDQUOT"):
    _CAUSES[errno.EDQUOT] = "disk quota exceeded"


def describe_os_error(error: BaseException, path: str | os.PathLike, action: str = "write") -> str:
    """A message naming ``path`` and the cause of ``error`` in words.

    Example:
        >>> describe_os_error(OSError(errno.ENOSPC, "No space left on device"), "run/log.csv")
        'cannot write run/log.csv: disk full (no space left on device)'
        >>> describe_os_error(PermissionError(errno.EACCES, "x"), "run", action="create")
        'cannot create run: permission denied'
    """
    number = getattr(error, "errno", None)
    if number in _CAUSES:
        cause = _CAUSES[number]
    elif isinstance(error, OSError) and error.strerror:
        cause = error.strerror
    else:
        cause = str(error) or type(error).__name__
    return f"cannot {action} {os.fspath(path)}: {cause}"


def storage_error(error: BaseException, path: str | os.PathLike,
                  action: str = "write") -> StorageError:
    """``error`` as a :class:`StorageError` naming ``path`` and the cause (returned, not raised).

    A :class:`StorageError` is returned unchanged, so that the innermost, most precise path
    is kept when errors pass through several layers.

    Example:
        >>> e = storage_error(OSError(errno.EROFS, "Read-only file system"), "/r/x.json")
        >>> e.errno == errno.EROFS, e.filename, str(e)
        (True, '/r/x.json', 'cannot write /r/x.json: read-only file system')
    """
    if isinstance(error, StorageError):
        return error
    number = getattr(error, "errno", None)
    cls = UnsafePathError if number == errno.ELOOP else StorageError
    return cls(number, describe_os_error(error, path, action), os.fspath(path))


def _unsafe(path: str, what: str = "it is a symbolic link") -> UnsafePathError:
    return UnsafePathError(
        errno.ELOOP,
        f"refusing to write {path}: {what}; files inside a run directory are never written "
        "through a symbolic link (remove it, or point the run directory elsewhere)",
        path,
    )


def _check_target(path: str, dir_fd: int | None, name: str) -> None:
    """Refuse a symbolic link or a non-regular file at ``name`` (missing is fine)."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise _unsafe(path)
    if not stat.S_ISREG(st.st_mode):
        raise _unsafe(path, "it is not a regular file")


def _write_all(fd: int, data: Any) -> None:
    view = memoryview(data).cast("B")
    while view:
        written = os.write(fd, view)
        view = view[written:]


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a directory, so that renames and new entries in it survive a power loss."""
    fd = os.open(path, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BackgroundSync:
    """Fsyncs files in a second thread while the caller writes the next ones.

    A checkpoint's files are each made durable before its manifest is written; syncing one
    while the next is written overlaps the disk's flush with the copy into the page cache.
    :meth:`wait` returns once every file handed over is on disk, or raises the first error
    as a :class:`StorageError` naming the file. Leaving the ``with`` block waits too (and
    closes every descriptor), so no flush outlives a failed save.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "a.bin")
        >>> with BackgroundSync() as syncer:
        ...     with NewFile(path, algorithm="sha256", syncer=syncer) as f:
        ...         _ = f.write(b"abc")
        ...     syncer.wait()  # a.bin is on disk here
        >>> os.path.getsize(path)
        3
    """

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fsync")
        self._pending: list[tuple[str, Any]] = []

    def add(self, fd: int, path: str) -> None:
        """Fsync and close ``fd`` (owned from now on) in the background."""
        def sync() -> None:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self._pending.append((path, self._pool.submit(sync)))

    def wait(self) -> None:
        """Block until every file handed over is fsynced; raise the first failure."""
        pending, self._pending = self._pending, []
        errors = []
        for path, future in pending:
            error = future.exception()
            if error is not None:
                errors.append((path, error))
        if errors:
            path, error = errors[0]
            raise storage_error(error, path) from error

    def __enter__(self) -> BackgroundSync:
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if exc[0] is None:
                self.wait()
        finally:
            self._pool.shutdown(wait=True)  # every descriptor closed


class NewFile(io.RawIOBase):
    """A new regular file opened for writing: created exclusively, never through a link.

    For files in a directory that is itself temporary (a checkpoint's ``step_<n>.tmp/``).
    Counts and hashes what is written (``algorithm``: see :mod:`trainers.digests`; default
    BLAKE3 when installed, else SHA-256), a large write hashed in a second thread while it
    is written; :meth:`close` fsyncs. On an error inside a ``with`` block the file is
    removed. Errors name the path and the cause. With ``syncer`` (a :class:`BackgroundSync`)
    the fsync at :meth:`close` happens in its thread instead; call ``syncer.wait()`` before
    relying on the file being on disk.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "a.bin")
        >>> with NewFile(path, algorithm="sha256") as f:
        ...     _ = f.write(b"abc")
        >>> f.size, f.algorithm, f.digest[:16]
        (3, 'sha256', 'ba7816bf8f01cfea')
    """

    def __init__(self, path: str | os.PathLike, *, algorithm: str | None = None,
                 syncer: BackgroundSync | None = None):
        super().__init__()
        self.path = os.fspath(path)
        self._syncer = syncer
        self.size = 0
        self.algorithm = algorithm or digests.default_algorithm()
        self._hash = digests.Digest(self.algorithm)
        self._fd: int | None = None
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
        try:
            self._fd = os.open(self.path, flags, 0o666)
        except FileExistsError:
            if os.path.islink(self.path):
                raise _unsafe(self.path) from None
            raise storage_error(FileExistsError(errno.EEXIST, "exists"), self.path,
                                "create") from None
        except OSError as e:
            raise storage_error(e, self.path, "create") from e

    @property
    def digest(self) -> str:
        """The hex digest of everything written so far."""
        return self._hash.hexdigest()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self._fd is None:
            raise ValueError(f"{self.path}: write to a closed file")
        view = memoryview(data).cast("B")
        fd = self._fd
        try:
            digests.update_while(self._hash, view, lambda: _write_all(fd, view))
        except OSError as e:
            raise storage_error(e, self.path) from e
        self.size += len(view)
        return len(view)

    def tell(self) -> int:
        return self.size

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            if self._syncer is not None:
                self._syncer.add(fd, self.path)
                super().close()
                return
            try:
                os.fsync(fd)
            except OSError as e:
                raise storage_error(e, self.path) from e
            finally:
                os.close(fd)
        super().close()

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
            return
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        try:
            os.unlink(self.path)
        except OSError:
            pass  # the original error matters more


def save_safetensors(path: str | os.PathLike, arrays: dict, metadata: dict | None = None,
                     *, algorithm: str | None = None, syncer: BackgroundSync | None = None
                     ) -> tuple[int, str]:
    """Write ``arrays`` with ``mx.save_safetensors`` into a new file; return (bytes, digest).

    The file is created exclusively and never through a symbolic link; MLX writes through a
    Python file object, so the digest (``algorithm``, as :class:`NewFile`) is computed as the
    bytes go out (no second read). ``syncer``: fsync in the background (:class:`NewFile`).

    Raises:
        StorageError: naming the path and the cause; the partial file is removed.

    Example:
        >>> import os, tempfile, mlx.core as mx
        >>> path = os.path.join(tempfile.mkdtemp(), "w.safetensors")
        >>> size, digest = save_safetensors(path, {"w": mx.zeros((2,))}, algorithm="sha256")
        >>> size == os.path.getsize(path), len(digest)
        (True, 64)
    """
    import mlx.core as mx

    path = os.fspath(path)
    with NewFile(path, algorithm=algorithm, syncer=syncer) as new_file:
        # MLX writes to any object with write(); its stubs accept only typing.BinaryIO,
        # which a RawIOBase subclass is not nominally.
        f = cast(BinaryIO, new_file)
        try:
            if metadata:
                mx.save_safetensors(f, arrays, metadata)
            else:
                mx.save_safetensors(f, arrays)
        except StorageError:
            raise
        except OSError as e:
            raise storage_error(e, path) from e
        except RuntimeError as e:  # MLX's own write errors carry no path and no errno
            raise _mlx_write_error(e, path) from e
    return new_file.size, new_file.digest


def _mlx_write_error(error: RuntimeError, path: str) -> StorageError:
    message = f"cannot write {path}: MLX failed with {str(error)!r}"
    if "write" in str(error).lower():  # MLX's "Unable to write N bytes": no errno, no path
        free = ""
        try:
            st = os.statvfs(os.path.dirname(path) or ".")
            free = f"; {st.f_bavail * st.f_frsize} bytes free there now"
        except OSError:
            pass
        message += f"; the likely cause is a full disk (disk full) or an exceeded quota{free}"
    return StorageError(None, message, path)


def _open_dir(parent: str) -> int | None:
    if not _HAS_DIR_FD:
        return None
    return os.open(parent, os.O_RDONLY | _DIRECTORY | _CLOEXEC)


def _at(dir_fd: int | None, parent: str, name: str) -> str:
    return name if dir_fd is not None else os.path.join(parent, name)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically: a temporary file, fsync, rename, fsync dir.

    Raises:
        UnsafePathError: ``path`` is a symbolic link or not a regular file.
        StorageError: the write failed (the message names the path and the cause, e.g. "disk
            full"); the old file, if any, is unchanged and the temporary file removed.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "x.bin")
        >>> write_bytes_atomic(path, b"one"); write_bytes_atomic(path, b"two")
        >>> open(path, "rb").read(), sorted(os.listdir(os.path.dirname(path)))
        (b'two', ['x.bin'])
    """
    path = os.fspath(path)
    parent, name = os.path.split(path)
    parent = parent or "."
    if not name:
        raise ValueError(f"path must name a file, got {path!r}")
    tmp_name = f".{name}.tmp"
    try:
        dir_fd = _open_dir(parent)
    except OSError as e:
        raise storage_error(e, path) from e
    try:
        _check_target(path, dir_fd, _at(dir_fd, parent, name))
        tmp = _at(dir_fd, parent, tmp_name)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
        try:
            try:
                fd = os.open(tmp, flags, 0o666, dir_fd=dir_fd)
            except FileExistsError:  # left by a killed process: unlink never follows a link
                os.unlink(tmp, dir_fd=dir_fd)
                fd = os.open(tmp, flags, 0o666, dir_fd=dir_fd)
            try:
                _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, _at(dir_fd, parent, name), src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except OSError as e:
            try:
                os.unlink(tmp, dir_fd=dir_fd)
            except OSError:
                pass
            raise storage_error(e, path) from e
        try:
            if dir_fd is not None:
                os.fsync(dir_fd)
            else:
                fsync_dir(parent)
        except OSError as e:
            raise storage_error(e, path) from e
    finally:
        if dir_fd is not None:
            os.close(dir_fd)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """:func:`write_bytes_atomic` of ``text`` encoded as UTF-8 (no newline translation)."""
    write_bytes_atomic(path, text.encode("utf-8"))


def json_bytes(obj: Any, *, indent: int | None = 1) -> bytes:
    """The deterministic JSON encoding used for every JSON file of a run (sorted keys).

    Example:
        >>> json_bytes({"b": 1, "a": 2}, indent=None)
        b'{"a": 2, "b": 1}'
    """
    return json.dumps(obj, indent=indent, sort_keys=True).encode("utf-8")


def write_json_atomic(path: str | os.PathLike, obj: Any, *, indent: int | None = 1) -> None:
    """:func:`write_bytes_atomic` of ``obj`` as JSON with sorted keys (same bytes every time).

    Raises ``TypeError`` (before touching the file) when ``obj`` is not JSON-serialisable.
    """
    write_bytes_atomic(path, json_bytes(obj, indent=indent))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """A temporary path beside ``path`` for a writer that needs a file name (matplotlib,
    ``mx.save_safetensors``); renamed over ``path`` when the block ends without an error,
    removed otherwise. It keeps ``path``'s extension (both choose the format from it), is
    created with the user's umask like any other file, and a symbolic link at ``path`` is
    refused (:class:`UnsafePathError`), as :func:`write_bytes_atomic` does.

    Example:
        >>> import os, tempfile
        >>> folder = tempfile.mkdtemp()
        >>> with atomic_path(os.path.join(folder, "a.txt")) as tmp:
        ...     _ = open(tmp, "w").write("done")
        >>> os.listdir(folder), open(os.path.join(folder, "a.txt")).read()
        (['a.txt'], 'done')
    """
    path = os.fspath(path)
    parent, name = os.path.split(path)
    parent = parent or "."
    if not name:
        raise ValueError(f"path must name a file, got {path!r}")
    if os.path.islink(path):
        raise _unsafe(path)
    stem, ext = os.path.splitext(name)
    tmp = os.path.join(parent, f".{stem}.tmp{ext}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
    try:
        try:
            os.close(os.open(tmp, flags, 0o666))
        except FileExistsError:  # left by a killed process: unlink never follows a link
            os.unlink(tmp)
            os.close(os.open(tmp, flags, 0o666))
    except OSError as e:
        raise storage_error(e, path) from e
    try:
        yield tmp
        if os.path.islink(tmp):
            raise _unsafe(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def ensure_dir(path: str | os.PathLike, *, root: str | os.PathLike | None = None) -> None:
    """``mkdir -p path`` that refuses a symbolic link below ``root``.

    ``root`` is the run directory (default: ``path`` itself). It and the directories above it
    are created like ``os.makedirs`` and may be symbolic links (the user's choice); every
    component of ``path`` below ``root`` must be a real directory or is created as one.

    Raises:
        UnsafePathError: a component below ``root`` is a symbolic link or not a directory.
        StorageError: a directory could not be created (names it and the cause).
        ValueError: ``path`` is not inside ``root``.

    Example:
        >>> import os, tempfile
        >>> run = tempfile.mkdtemp()
        >>> ensure_dir(os.path.join(run, "checkpoints"), root=run)
        >>> os.symlink("/tmp", os.path.join(run, "plots"))
        >>> ensure_dir(os.path.join(run, "plots"), root=run)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        trainers.errors.UnsafePathError: refusing to write .../plots: it is a symbolic link...
    """
    path = os.fspath(path)
    root = path if root is None else os.fspath(root)
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as e:
        raise storage_error(e, root, "create") from e
    if not os.path.isdir(root):
        raise StorageError(errno.ENOTDIR, f"cannot create {root}: it is not a directory", root)
    rel = os.path.relpath(path, root)
    if rel == ".":
        return
    if rel == ".." or rel.startswith(".." + os.sep) or os.path.isabs(rel):
        raise ValueError(f"ensure_dir: {path!r} is not inside root {root!r}")
    current = root
    for part in rel.split(os.sep):
        current = os.path.join(current, part)
        try:
            os.mkdir(current)
        except FileExistsError:
            pass
        except OSError as e:
            raise storage_error(e, current, "create") from e
        st = os.lstat(current)
        if stat.S_ISLNK(st.st_mode):
            raise _unsafe(current)
        if not stat.S_ISDIR(st.st_mode):
            raise _unsafe(current, "it is not a directory")


def _open_regular(path: str, flags: int) -> int:
    """Open without following a link; refuse anything but a regular file."""
    try:
        # O_NONBLOCK: opening a FIFO planted in the run directory must not hang.
        fd = os.open(path, flags | _NOFOLLOW | _CLOEXEC | os.O_NONBLOCK, 0o666)
    except OSError as e:
        if e.errno == errno.ELOOP or os.path.islink(path):
            raise _unsafe(path) from None
        if e.errno == errno.ENXIO:  # a FIFO (or socket) with no reader
            raise _unsafe(path, "it is not a regular file") from None
        raise storage_error(e, path, "open") from e
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _unsafe(path, "it is not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_append(path: str | os.PathLike) -> TextIO:
    """Open a log file for appending UTF-8 text (created if missing, never through a link).

    ``newline=""``: what is written is what lands in the file (no translation), so byte
    offsets recorded in a checkpoint are the same on every platform.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "log.jsonl")
        >>> with open_append(path) as f:
        ...     _ = f.write("a\\n")
        >>> with open_append(path) as f:
        ...     _ = f.write("b\\n")
        >>> open(path).read()
        'a\\nb\\n'
    """
    path = os.fspath(path)
    fd = _open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    return open(fd, "a", encoding="utf-8", newline="")


def truncate(path: str | os.PathLike, size: int) -> None:
    """Cut an existing file to ``size`` bytes without following a symbolic link.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "log.csv")
        >>> write_text_atomic(path, "header\\nrow\\n")
        >>> truncate(path, 7)
        >>> open(path).read()
        'header\\n'
    """
    path = os.fspath(path)
    fd = _open_regular(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
    except OSError as e:
        raise storage_error(e, path) from e
    finally:
        os.close(fd)


def remove_tree(path: str | os.PathLike) -> None:
    """Remove a directory tree, a file or a symbolic link; a link is removed, never followed.

    Missing paths are fine. Errors name the path and the cause.
    """
    path = os.fspath(path)
    try:
        if os.path.islink(path) or not os.path.isdir(path):
            os.unlink(path)
        else:
            shutil.rmtree(path)  # does not follow links inside the tree
    except FileNotFoundError:
        pass
    except OSError as e:
        raise storage_error(e, path, "remove") from e


def call_storage(action: str, path: str | os.PathLike, fn: Callable[[], Any]) -> Any:
    """Run ``fn()``; an ``OSError`` becomes a :class:`StorageError` naming ``path``."""
    try:
        return fn()
    except OSError as e:
        raise storage_error(e, path, action) from e
