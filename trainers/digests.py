"""Digests of checkpoint files: BLAKE3 when the ``blake3`` package is installed, else SHA-256.

A checkpoint's manifest records each file's size and digest under the name of the hash that
made it (``{"bytes": 1234, "blake3": "<64 hex digits>"}``, or ``"sha256"``), so checkpoints
of either kind load, whichever hash this installation writes.

What the digest guarantees: both are 256-bit cryptographic hashes. Any change to a file after
it was saved (a flipped bit, a truncated or half-copied file, an edit in place) makes its
digest differ from the manifest's, except with a chance of about 2^-128 for a deliberately
crafted collision (and far less by accident). Neither protects against someone who rewrites
the manifest too: the manifest is not signed. BLAKE3 is several times faster than SHA-256 on
one core and hashes a large file on several cores at once, which is what makes verifying a
checkpoint cost about as much as reading it (``pip install 'mlx-schedules[fast]'``, or
``pip install blake3``).

Files are hashed as they are written (:class:`Digest` fed by :class:`trainers.files.NewFile`,
with large writes hashed in a second thread while the first writes) and, at load,
:func:`file_digests` hashes every file of a checkpoint in parallel threads: ``hashlib`` and
``blake3`` release the GIL on large buffers.

Example:
    >>> d = Digest("sha256")
    >>> d.update(b"abc")
    >>> d.hexdigest()[:16]
    'ba7816bf8f01cfea'
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["ALGORITHMS", "Digest", "DigestUnavailable", "default_algorithm", "file_digests",
           "label", "update_while"]

#: the digests a manifest may record, fastest first; each is 32 bytes (64 hex digits)
ALGORITHMS = ("blake3", "sha256")
_LABELS = {"blake3": "BLAKE3", "sha256": "SHA-256"}
# Writes at least this large are hashed in a second thread while the first one writes.
_PARALLEL_BYTES = 1 << 22
# Files are read for hashing in chunks of this size (one buffer per file, reused).
_CHUNK = 1 << 23


class DigestUnavailable(ImportError):
    """A manifest names a hash this installation cannot compute (``blake3`` not installed).

    Not a :class:`trainers.errors.CheckpointError`: the checkpoint is not known to be bad,
    so it is never set aside as corrupt; installing the package is the fix.
    """


def _blake3() -> Any:
    try:
        import blake3
    except ImportError:
        return None
    return blake3


def default_algorithm() -> str:
    """The hash new checkpoints record: ``"blake3"`` when installed, else ``"sha256"``."""
    return "blake3" if _blake3() is not None else "sha256"


def label(algorithm: str) -> str:
    """The hash's name as people write it.

    Example:
        >>> label("sha256"), label("blake3")
        ('SHA-256', 'BLAKE3')
    """
    return _LABELS.get(algorithm, algorithm)


class Digest:
    """An incremental digest of one of :data:`ALGORITHMS` (``update``, ``hexdigest``).

    Raises:
        DigestUnavailable: ``"blake3"`` without the ``blake3`` package.
        ValueError: an algorithm not in :data:`ALGORITHMS`.
    """

    def __init__(self, algorithm: str, *, threads: bool = True):
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unknown digest {algorithm!r}; expected one of {ALGORITHMS}")
        self.algorithm = algorithm
        if algorithm == "sha256":
            self._hash: Any = hashlib.sha256()
            return
        module = _blake3()
        if module is None:
            raise DigestUnavailable(
                "this checkpoint is verified with BLAKE3, which needs the blake3 package: "
                "pip install blake3 (or 'mlx-schedules[fast]')")
        # AUTO: a large buffer is hashed on every core (BLAKE3 is a tree hash)
        self._hash = module.blake3(max_threads=module.blake3.AUTO if threads else 1)

    def update(self, data: Any) -> None:
        self._hash.update(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def update_while(digest: Digest, data: memoryview, work: Any) -> None:
    """Feed ``data`` to ``digest`` while calling ``work()`` (a write of the same bytes):
    in a second thread when ``data`` is large, so that hashing and writing overlap."""
    if len(data) < _PARALLEL_BYTES or (os.cpu_count() or 1) < 2:
        work()
        digest.update(data)
        return
    hashing = threading.Thread(target=digest.update, args=(data,), daemon=True)
    hashing.start()
    try:
        work()
    finally:
        hashing.join()


def _digest_of(fd: int, size: int, algorithm: str) -> str:
    """Hash the first ``size`` bytes of an open file, read in chunks into one buffer (a
    read, not a memory map: a file cut short meanwhile gives a short read, not a crash)."""
    digest = Digest(algorithm)
    buffer = memoryview(bytearray(min(size, _CHUNK) or 1))
    left = size
    while left:
        n = os.readv(fd, [buffer[:min(left, _CHUNK)]])
        if n == 0:
            break  # shorter than the caller saw: the digest will differ
        digest.update(buffer[:n])
        left -= n
    return digest.hexdigest()


def file_digests(files: Sequence[tuple[int, int, str]]) -> list[str]:
    """Digests of open files ``(fd, size, algorithm)``, hashed in parallel threads.

    Each file's first ``size`` bytes are hashed (the caller has checked the size); the file
    descriptors stay open and owned by the caller.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "x")
        >>> with open(path, "wb") as f:
        ...     _ = f.write(b"abc")
        >>> fd = os.open(path, os.O_RDONLY)
        >>> file_digests([(fd, 3, "sha256")])[0][:16]
        'ba7816bf8f01cfea'
        >>> os.close(fd)
    """
    for _, _, algorithm in files:
        Digest(algorithm)  # DigestUnavailable before any file is read
    if len(files) <= 1:
        return [_digest_of(fd, size, algorithm) for fd, size, algorithm in files]
    with ThreadPoolExecutor(max_workers=min(len(files), os.cpu_count() or 1)) as pool:
        return list(pool.map(lambda f: _digest_of(*f), files))
