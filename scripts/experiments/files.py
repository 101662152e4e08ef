"""Writing the scripts' own output files: whole or not at all, never through a symlink.

Every file is written to a new temporary file beside its final name (created exclusively, so
no existing file or link is opened) and renamed over it. A rename replaces a symlink itself,
never the file it points to, and a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from typing import Any

__all__ = ["atomic_path", "write_json", "write_text"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """A temporary path to write ``path``'s content to; renamed to ``path`` when the block
    ends without an error, removed otherwise. It keeps ``path``'s extension (matplotlib
    chooses the image format from it).

    Example:
        >>> import os, tempfile
        >>> folder = tempfile.mkdtemp()
        >>> with atomic_path(os.path.join(folder, "a.txt")) as tmp:
        ...     _ = open(tmp, "w").write("done")
        >>> os.listdir(folder), open(os.path.join(folder, "a.txt")).read()
        (['a.txt'], 'done')
    """
    path = os.fspath(path)
    folder, name = os.path.split(path)
    fd, tmp = tempfile.mkstemp(dir=folder or ".", prefix=f".{name}.",
                               suffix=os.path.splitext(name)[1])
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def write_json(path: str | os.PathLike, value: Any) -> None:
    """Write ``value`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(value, indent=1))
