"""Shared by the command-line tests: a script's command module, check a PNG is a real plot."""

from __future__ import annotations

import importlib
import importlib.util
import os

import matplotlib.image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = os.path.join(ROOT, "scripts")


#: scripts/<name>.py -> the module of trainers.cli it runs
SCRIPT_MODULES = {"train": "train", "train_lm": "train_lm", "compare_schedules": "compare",
                  "compare_lm": "compare_lm", "lr_range_test": "range_test",
                  "audit_run": "audit", "plot_schedules": "plot", "download_data": "download"}


def load_script(name: str):
    """The module of :mod:`trainers.cli` that ``scripts/<name>.py`` runs (its ``main(argv)``
    is the script's and the ``mlx-schedules`` subcommand's)."""
    return importlib.import_module(f"trainers.cli.{SCRIPT_MODULES[name]}")


def load_bench(name: str):
    """``scripts/<name>.py``, a benchmark (benchmarks stay scripts), imported from its file."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}",
                                                  os.path.join(SCRIPTS, f"{name}.py"))
    assert spec is not None and spec.loader is not None
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
