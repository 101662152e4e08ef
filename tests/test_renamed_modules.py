"""Renamed modules stay importable for a while, with a DeprecationWarning naming the new one."""

from __future__ import annotations

import importlib

import pytest

import mlx_schedules
import trainers


@pytest.mark.parametrize("old, name, new", [
    ("trainers.logging", "RunLog", trainers.runlog.RunLog),
    ("trainers.range_test", "lr_range_test", trainers.lr_finder.lr_range_test),
    ("mlx_schedules.range_test", "lr_range_test", mlx_schedules.range_sweep),
])
def test_old_module_paths_warn_and_give_the_same_objects(old, name, new):
    module = importlib.import_module(old)
    with pytest.warns(DeprecationWarning, match=f"{old} is renamed"):
        assert getattr(module, name) is new


def test_the_aliases_forward_only_what_the_old_modules_had():
    module = importlib.import_module("trainers.logging")
    with pytest.raises(AttributeError, match="has no attribute 'Trainer'"):
        module.Trainer  # noqa: B018


def test_no_file_of_the_old_names_exists():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for path in ("trainers/logging.py", "trainers/range_test.py", "mlx_schedules/range_test.py"):
        assert not (root / path).exists(), path
