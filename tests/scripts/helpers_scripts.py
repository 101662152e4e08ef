"""Shared by the script tests: import a script as a module, check a PNG is a real plot."""

from __future__ import annotations

import importlib.util
import os

import matplotlib.image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = os.path.join(ROOT, "scripts")


def load_script(name: str):
    """Import scripts/<name>.py as a module (conftest.py put scripts/ on sys.path, as running
    the script does, so its ``experiments`` imports resolve)."""
    spec = importlib.util.spec_from_file_location(f"script_{name}",
                                                  os.path.join(SCRIPTS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_png(path: str, min_bytes: int = 5000) -> None:
    """A valid PNG of a drawn figure: signature, size, readable, not a blank canvas."""
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(path) > min_bytes
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and min(image.shape[:2]) > 200
    assert image.std() > 0.01
