"""The scripts' shared modules: their examples run, every script has the same help, imports
need no path hacks, and the memory estimate counts what the models hold."""

from __future__ import annotations

import doctest
import importlib
import os
import re

import mlx.core as mx
import pytest
from experiments.models import build_model, memory_estimate
from helpers_scripts import SCRIPTS, load_script
from mlx.utils import tree_flatten

MODULES = sorted(n[:-3] for n in os.listdir(os.path.join(SCRIPTS, "experiments"))
                 if n.endswith(".py") and n != "__init__.py")
SCRIPT_NAMES = ["train", "compare_schedules", "lr_range_test", "plot_schedules",
                "download_data", "audit_run", "train_lm", "compare_lm"]


@pytest.mark.parametrize("name", MODULES)
def test_examples_in_docstrings_run(name):
    module = importlib.import_module(f"experiments.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_help_shows_the_docstring(name, capsys):
    script = load_script(name)
    with pytest.raises(SystemExit) as stop:
        script.main(["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    first, _, rest = script.__doc__.strip("\n").partition("\n\n")
    assert first.split()[0] in out
    assert f"python scripts/{name}.py" in out  # the usage examples, as written


# The benchmarks run in fresh subprocesses of their own and are kept apart from this code.
@pytest.mark.parametrize("name", sorted(n for n in os.listdir(SCRIPTS)
                                        if n.endswith(".py") and not n.startswith("bench_")))
def test_scripts_import_without_path_hacks(name):
    with open(os.path.join(SCRIPTS, name), encoding="utf-8") as f:
        text = f.read()
    assert "sys.path.insert" not in text and "noqa: E402" not in text
    assert not re.search(r"argparse\.ArgumentParser\(", text)  # experiments.cli.script_parser


@pytest.mark.parametrize("kind, norm", [("mlp", None), ("mlp", "batch"), ("mlp", "layer"),
                                        ("cnn", None), ("cnn", "batch"), ("cnn", "layer")])
def test_memory_estimate_counts_the_models_parameters(kind, norm):
    shape, classes = (6, 5, 3), 7
    model = build_model(kind, shape, classes, hidden=[9, 4], channels=[5, 8], norm=norm)
    mx.eval(model.parameters())
    held = sum(v.size for _, v in tree_flatten(model.parameters()))
    estimate = memory_estimate(kind, shape, classes, hidden=[9, 4], channels=[5, 8], norm=norm,
                               batch_size=0)  # no activations: parameters only
    assert sum(estimate.values()) == 16 * held  # float32 weights, gradients, two moments
