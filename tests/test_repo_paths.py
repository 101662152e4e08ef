"""No two paths of the repository differ only in case.

On macOS's default (case-insensitive) disk two such files are one: a clone loses one of them
and ``git status`` shows a change nobody made (``docs/SCHEDULES.md`` and ``docs/schedules.md``
once did this). Checked on the paths git tracks, folders included.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def case_clashes(paths: list[str]) -> list[list[str]]:
    """Groups of distinct paths (files or the folders above them) equal when lower-cased."""
    names = set()
    for path in paths:
        parts = path.split("/")
        names |= {"/".join(parts[:k]) for k in range(1, len(parts) + 1)}
    groups = defaultdict(set)
    for name in names:
        groups[name.casefold()].add(name)
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)


def test_the_check_finds_clashes_of_files_and_folders():
    assert case_clashes(["docs/SCHEDULES.md", "docs/schedules.md", "a/b.py"]) == [
        ["docs/SCHEDULES.md", "docs/schedules.md"]]
    assert case_clashes(["Docs/x.md", "docs/y.md"]) == [["Docs", "docs"]]
    assert case_clashes(["docs/x.md", "docs/X.py", "docs/x/index.md"]) == []


def test_no_two_tracked_paths_differ_only_in_case():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (an unpacked sdist)")
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                            check=True).stdout.decode("utf-8").split("\0")
    paths = [p for p in listed if p]
    assert len(paths) > 50, len(paths)  # the listing worked
    assert case_clashes(paths) == []
