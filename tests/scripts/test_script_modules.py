"""The scripts' shared modules: their examples run, every script has the same help, imports
need no path hacks, and the memory estimate counts what the models hold."""

from __future__ import annotations

import ast
import os

import mlx.core as mx
import pytest
from helpers_scripts import SCRIPTS, load_script
from mlx.utils import tree_flatten

from trainers.cli import main
from trainers.experiments.models import build_model, memory_estimate

#: script -> the mlx-schedules subcommand it runs
SUBCOMMAND = {"train": "train", "compare_schedules": "compare", "lr_range_test": "range-test",
              "plot_schedules": "plot", "download_data": "download", "audit_run": "audit",
              "train_lm": "train-lm", "compare_lm": "compare-lm"}


@pytest.mark.parametrize("name", sorted(SUBCOMMAND))
def test_help_shows_the_docstring(name, capsys):
    script = load_script(name)
    with pytest.raises(SystemExit) as stop:
        main([SUBCOMMAND[name], "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    first, _, rest = script.__doc__.strip("\n").partition("\n\n")
    assert first.split()[0] in out
    assert f"usage: mlx-schedules {SUBCOMMAND[name]}" in out  # named as the user typed it
    assert f"mlx-schedules {SUBCOMMAND[name]} " in rest  # the usage examples, as written
    assert "python scripts/" not in out  # an installed user has no scripts/ folder


# The benchmarks run in fresh subprocesses of their own and are kept apart from this code.
@pytest.mark.parametrize("name", sorted(n for n in os.listdir(SCRIPTS)
                                        if n.endswith(".py") and not n.startswith("bench_")))
def test_scripts_are_thin_wrappers_of_the_installed_command(name):
    with open(os.path.join(SCRIPTS, name), encoding="utf-8") as f:
        text = f.read()
    tree = ast.parse(text)
    imported = {n.module if isinstance(n, ast.ImportFrom) else n.names[0].name
                for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))}
    assert imported == {"sys", "trainers.cli"}
    assert not [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    assert f'main(["{SUBCOMMAND[name[:-3]]}", *sys.argv[1:]])' in text


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
