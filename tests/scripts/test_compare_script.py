"""scripts/compare_schedules.py end to end on tiny settings."""

from __future__ import annotations

import csv
import json

import matplotlib.image
import numpy as np
import pytest
from helpers_scripts import load_script

import mlx_schedules as ms
from trainers.experiments.families import family_configs

compare = load_script("compare_schedules")
FAMILIES = ["constant", "cyclic_exponential", "one_cycle", "triangular"]


@pytest.fixture(scope="module")
def tiny_comparison(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    argv = ["--budgets", "16", "24", "--peaks", "0.1", "0.3", "--seeds", "2",
            "--families", *FAMILIES, "--range-test-steps", "20", "--target", "0.5",
            "--max-extra", "0",
            "--set", "model.hidden=[16]", "--keep-logs", "--out-dir", str(out)]
    assert compare.main(argv) == 0
    return out


@pytest.mark.slow
def test_writes_table_figure_and_results(tiny_comparison):
    out = tiny_comparison
    report = (out / "comparison.md").read_text()
    labels = [compare.FAMILY_LABELS[f] for f in FAMILIES]
    measured = report.split("## Measured")[1].split("## Budget sweep")[0]
    sweep = report.split("## Budget sweep")[1].split("## Range test")[0]
    for table in (measured, sweep):
        rows = [line for line in table.splitlines() if line.startswith("| ")][1:]
        assert [row.split(" | ")[0][2:] for row in rows] == labels  # a row per schedule
    assert "## The source article's table" in report and "Cyclic exponential decay" in report
    assert "Command: `mlx-schedules compare --budgets 16 24" in report

    results = json.loads((out / "results.json").read_text())
    assert results["budgets"] == [16, 24] and results["main_budget"] == 24
    for family in FAMILIES:
        assert results["tuned_peaks"][family]["24"] in (0.1, 0.3)
        cell = results["measured"][family]["24"]
        assert len(cell["runs"]) == 2 and cell["seeds"] == 2
        assert 0 <= cell["final_accuracy"] <= 1 and cell["wall_time_s"] > 0

    with open(out / "comparison.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(out / "comparison.png")
    assert min(image.shape[:2]) > 400 and image.std() > 0.01


@pytest.mark.slow
def test_logged_rates_are_the_schedules(tiny_comparison):
    out = tiny_comparison
    results = json.loads((out / "results.json").read_text())
    for family in FAMILIES:
        peak = results["tuned_peaks"][family]["24"]
        with open(out / "runs" / f"{family}_24_seed1" / "log.csv", newline="") as f:
            rows = [r for r in csv.DictReader(f) if r["kind"] == "train"]
        assert [int(r["step"]) for r in rows] == list(range(24))
        configs = family_configs(family, peak, 24)
        expected = ms.from_config(configs["learning_rate"]).values(24)
        np.testing.assert_allclose([float(r["learning_rate"]) for r in rows], expected,
                                   rtol=1e-6)
        momentum = configs["momentum"]
        if isinstance(momentum, dict):
            np.testing.assert_allclose([float(r["momentum"]) for r in rows],
                                       ms.from_config(momentum).values(24), rtol=1e-6)
        curve = results["curves"][family]
        np.testing.assert_allclose(curve["learning_rate"], expected, rtol=1e-6)


@pytest.mark.parametrize("argv, words", [
    (["--families", "constant", "linear_warmup"], "--families: unknown ['linear_warmup']"),
    (["--budgets", "4"], "--budgets: every budget must be >= 8"),
    (["--peaks", "0", "0.1"], "--peaks: need positive rates"),
    (["--optimizer", "SGD", "--set", "training.batch_size=\"64\""], "training.batch_size"),
])
def test_bad_arguments_stop_before_training(tmp_path, capsys, argv, words):
    assert compare.main([*argv, "--out-dir", str(tmp_path / "out")]) == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
