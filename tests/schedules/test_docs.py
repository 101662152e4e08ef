"""Every public function documents itself with a runnable example (pytest runs the
examples through ``--doctest-modules``); the seed schedules show their formula."""

from __future__ import annotations

import doctest
import inspect

import pytest

import mlx_schedules as ms

PUBLIC = [name for name in ms.__all__ if callable(getattr(ms, name))]


@pytest.mark.parametrize("name", PUBLIC)
def test_docstring_has_runnable_example(name):
    doc = inspect.getdoc(getattr(ms, name)) or ""
    assert "Example" in doc, name
    examples = doctest.DocTestParser().get_examples(doc)
    assert examples, f"{name}: no >>> example"


@pytest.mark.parametrize("name", ["exponential_decay", "cyclic_exponential_decay", "one_cycle"])
def test_seed_schedules_show_their_formula(name):
    assert ".. math::" in inspect.getdoc(getattr(ms, name))


def test_doctests_are_collected():
    # The examples only count if pytest runs them: keep --doctest-modules in the config.
    import pathlib

    import tomllib

    root = pathlib.Path(__file__).resolve().parents[2]
    options = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["pytest"]
    assert "--doctest-modules" in options["ini_options"]["addopts"]
    assert "mlx_schedules" in options["ini_options"]["testpaths"]
