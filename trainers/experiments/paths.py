"""Leaving nothing behind: the folders a refused run would have created, and their removal.

A script that is refused (an occupied run directory, a lock, bad data found late) must leave
the file system as it found it. It notes the outermost folder it is about to create and, on a
refusal, removes the empty folders below it again (never a file).
"""

from __future__ import annotations

import os

__all__ = ["first_missing", "remove_empty_dirs"]


def first_missing(path: str) -> str | None:
    """The outermost folder of ``path`` that does not exist yet (``None`` if ``path`` does).

    Example:
        >>> import tempfile
        >>> root = tempfile.mkdtemp()
        >>> first_missing(os.path.join(root, "a", "b")) == os.path.join(root, "a")
        True
    """
    path = os.path.abspath(path)
    if os.path.lexists(path):
        return None
    while not os.path.lexists(os.path.dirname(path)):
        path = os.path.dirname(path)
    return path


def remove_empty_dirs(top: str) -> None:
    """Remove ``top`` and the folders below it that are empty (files are never removed)."""
    for folder, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
        try:
            os.rmdir(folder)
        except OSError:
            pass
