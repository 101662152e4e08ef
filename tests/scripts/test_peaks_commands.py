"""The range test's per-family peak on the command line: range-test --for and its JSON,
--max-lr-from picking the family trained, compare's grid extension and --peaks-from."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from helpers_scripts import load_script

from trainers.cli.args import build_config
from trainers.experiments import comparison

range_script = load_script("lr_range_test")
train = load_script("train")
compare = load_script("compare_schedules")


@pytest.mark.slow
def test_range_test_for_a_schedule(tmp_path, capsys):
    out = tmp_path / "rt"
    assert range_script.main(["--run-dir", str(out), "--sweep-steps", "30", "--min-lr", "1e-3",
                              "--max-lr", "30", "--for", "constant", "--no-plots",
                              "--set", "model.hidden=[16]"]) == 0
    result = json.loads((out / "range_test.json").read_text())
    rates, smoothed = result["learning_rates"], result["smoothed_losses"]
    extremum = min((v, r) for r, v in zip(rates, smoothed, strict=True)
                   if math.isfinite(v))[1]
    assert result["suggested_for"] == "constant"
    assert result["suggested_lr"] == pytest.approx(extremum / 10, rel=1e-12)
    by = result["suggestions_by_schedule"]
    assert by["one_cycle"] == pytest.approx(extremum / 3, rel=1e-12)
    assert by["cosine"] == pytest.approx(extremum / 5, rel=1e-12)
    assert set(result["suggestions"]) == {"valley", "steepest", "minimum/10"}
    printed = capsys.readouterr().out
    assert f"mlx-schedules train --schedule constant --max-lr-from {out}/range_test.json" \
        in printed


def test_range_test_refuses_an_unknown_schedule(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        range_script.main(["--run-dir", str(tmp_path), "--for", "zigzag"])
    assert e.value.code == 2 and "--for" in capsys.readouterr().err


def _range_json(tmp_path, **fields):
    path = tmp_path / "range_test.json"
    path.write_text(json.dumps(fields))
    return str(path)


@pytest.mark.parametrize("schedule, key", [("cosine", "init"), ("constant", "value"),
                                           ("one_cycle", "max_lr"),
                                           ("exponential", "init")])
def test_max_lr_from_picks_the_trained_family(tmp_path, schedule, key):
    path = _range_json(tmp_path, suggested_lr=0.7, suggestions_by_schedule={
        "one_cycle": 0.3, "cosine": 0.2, "constant": 0.05})
    expected = {"one_cycle": 0.3, "cosine": 0.2, "constant": 0.05,
                "exponential": 0.7}[schedule]  # no rule in the file: suggested_lr
    args = train.parse_args(["--schedule", schedule, "--max-lr-from", path,
                             "--run-dir", str(tmp_path / "run")])
    rate = build_config(args)["optimizer"]["learning_rate"]
    assert rate[key] == expected


def test_max_lr_from_follows_the_config_schedule(tmp_path):
    path = _range_json(tmp_path, suggested_lr=0.7,
                       suggestions_by_schedule={"cosine": 0.2, "one_cycle": 0.3})
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"optimizer": {"name": "SGD", "learning_rate": {
        "name": "cosine_decay", "init": 9.0, "decay_steps": 50}}}))
    args = train.parse_args(["--config", str(config), "--max-lr-from", path])
    assert build_config(args)["optimizer"]["learning_rate"]["init"] == 0.2
    # the default config trains 1-cycle
    args = train.parse_args(["--max-lr-from", path])
    assert build_config(args)["optimizer"]["learning_rate"]["max_lr"] == 0.3


def test_max_lr_from_old_file_and_bad_values(tmp_path):
    from trainers.cli.args import read_suggested_lr
    from trainers.experiments.config import ConfigError

    assert read_suggested_lr(_range_json(tmp_path, suggested_lr=0.4), "cosine") == 0.4
    with pytest.raises(ConfigError, match="cosine must be a positive number"):
        read_suggested_lr(_range_json(tmp_path, suggested_lr=0.4,
                                      suggestions_by_schedule={"cosine": -1}), "cosine")


# ------------------------------------------------------- compare: grid extension, both peaks
def fake_training(best: dict[str, float]):
    """train_one stand-in: final accuracy 1 - 0.1 * |log10(peak / best[family])|."""
    def train_one(config, data, log_dir=None):
        rate = config["optimizer"]["learning_rate"]
        peak = next(rate[k] for k in ("max_lr", "value", "init") if k in rate)
        name = {"one_cycle": "one_cycle", "constant": "constant"}[rate["name"]]
        acc = 1 - 0.1 * abs(math.log10(peak / best[name]))
        return {"diverged": False, "final_accuracy": acc, "final_eval_loss": 1 - acc,
                "best_accuracy": acc, "steps_to_target": None, "wall_time_s": 0.01,
                "curves": {"steps": [1], "learning_rate": [peak], "momentum": [None],
                           "loss": [1.0], "eval_steps": [1], "eval_accuracy": [acc]}}
    return train_one


def _base_and_data():
    """A config and arrays for :func:`comparison.compare` with a stand-in train_one."""
    base = {"dataset": {"name": "digits", "split_seed": 0}, "model": {"kind": "mlp"},
            "training": {}}
    return base, {k: np.zeros((10, 1)) for k in ("x_train", "y_train", "x_test", "y_test")}


def test_compare_extends_the_grid_and_reports_both_peaks(monkeypatch):
    monkeypatch.setattr(comparison, "train_one", fake_training(
        {"one_cycle": 8.0, "constant": 0.05}))
    monkeypatch.setattr(comparison, "range_test", lambda *a, **k: {
        "suggested_lr": 0.01, "min_loss_lr": 3.0, "steepest_lr": 0.01, "diverged_at": 9,
        "suggestions_by_schedule": {"one_cycle": 1.0, "constant": 0.3}})
    base, data = _base_and_data()
    results = comparison.compare(base, data, families=["one_cycle", "constant"],
                                 budgets=[20], peaks=[0.1, 0.3, 0.9], seeds=2, target=0.9,
                                 range_test_steps=10, peaks_from="both", max_extra=2,
                                 report=lambda line: None)
    # one_cycle wants 8: 0.9 -> 2.7 -> 8.1 (limit 2 reached while 8.1 is the best: an edge)
    assert results["tuned_peaks"]["one_cycle"]["20"] == pytest.approx(8.1)
    assert results["tuning_status"]["one_cycle"]["20"] == "grid edge (limit)"
    # constant wants 0.05: 0.1 -> 0.0333 (0.18 decades off; 0.1 is 0.30) -> 0.0111 (0.65):
    # 0.0333 is then interior
    assert results["tuned_peaks"]["constant"]["20"] == pytest.approx(0.1 / 3)
    assert results["tuning_status"]["constant"]["20"] == "interior"
    versus = results["versus_range_test"]["one_cycle"]["20"]
    assert versus["suggested_peak"] == 1.0 and versus["ratio"] == pytest.approx(8.1)
    expected_loss = 100 * 0.1 * (abs(math.log10(1.0 / 8.0)) - abs(math.log10(8.1 / 8.0)))
    assert versus["accuracy_loss_points"] == pytest.approx(expected_loss)
    report = comparison.markdown_report({**results, "command": "x", "machine": "m",
                                         "wall_time_s": 1.0})
    assert "| 1-cycle + momentum | 8.1, grid edge (limit) |" in report
    assert "## Range-test peak against the grid-tuned peak" in report


def test_recheck_measures_a_large_loss_again_with_more_seeds(monkeypatch):
    """Seeds 0 and 1 favour the tuned peak by 4 points; seeds 2 to 5 favour the suggested
    one by 1: the 2-seed loss is 4, the 6-seed loss (4 + 4 - 4 * 1) / 6 = 2/3 points."""
    def train_one(config, data, log_dir=None):
        peak = config["optimizer"]["learning_rate"]["value"]
        seed = config["training"]["seed"]
        tuned = peak == pytest.approx(0.1)
        acc = 0.9 + (0.04 if tuned and seed < 2 else 0) + (0.01 if not tuned and seed >= 2
                                                             else 0)
        return {"diverged": False, "final_accuracy": acc, "final_eval_loss": 1 - acc,
                "best_accuracy": acc, "steps_to_target": None, "wall_time_s": 0.01,
                "curves": {"steps": [1], "learning_rate": [peak], "momentum": [None],
                           "loss": [1.0], "eval_steps": [1], "eval_accuracy": [acc]}}

    monkeypatch.setattr(comparison, "train_one", train_one)
    monkeypatch.setattr(comparison, "range_test", lambda *a, **k: {
        "suggested_lr": 0.05, "min_loss_lr": 0.5, "steepest_lr": 0.01, "diverged_at": 9,
        "suggestions_by_schedule": {"constant": 0.05}})
    base, data = _base_and_data()
    results = comparison.compare(base, data, families=["constant"], budgets=[20],
                                 peaks=[0.1], seeds=2, target=0.9, range_test_steps=10,
                                 peaks_from="both", max_extra=0, recheck_seeds=6,
                                 report=lambda line: None)
    versus = results["versus_range_test"]["constant"]["20"]
    assert versus["accuracy_loss_points"] == pytest.approx(4.0)
    recheck = versus["recheck"]
    assert recheck["seeds"] == 6
    assert recheck["accuracy_loss_points"] == pytest.approx(2 / 3)
    assert recheck["tuned_accuracy"] == pytest.approx(0.9 + 0.08 / 6)
    report = comparison.markdown_report({**results, "command": "x", "machine": "m",
                                         "wall_time_s": 1.0})
    assert "measured again with 6 seeds" in report and "| constant | 20 |" in report
    assert "| +0.7 |" in report


def test_compare_refuses_a_recheck_without_both_peaks(tmp_path, capsys):
    assert compare.main(["--recheck-seeds", "10", "--out-dir", str(tmp_path)]) == 2
    assert "--recheck-seeds 10: needs --peaks-from both" in capsys.readouterr().err
    assert compare.main(["--peaks-from", "both", "--recheck-seeds", "2",
                         "--out-dir", str(tmp_path)]) == 2


def test_compare_peaks_from_range_test_skips_the_grid(monkeypatch):
    tried = []
    fake = fake_training({"one_cycle": 1.0, "constant": 0.1})

    def spy(config, data, log_dir=None):
        tried.append(config["optimizer"]["learning_rate"])
        return fake(config, data, log_dir)

    monkeypatch.setattr(comparison, "train_one", spy)
    monkeypatch.setattr(comparison, "range_test", lambda *a, **k: {
        "suggested_lr": 0.01, "min_loss_lr": 3.0, "steepest_lr": 0.01, "diverged_at": 9,
        "suggestions_by_schedule": {"one_cycle": 1.0, "constant": 0.3}})
    base, data = _base_and_data()
    results = comparison.compare(base, data, families=["one_cycle"], budgets=[20],
                                 peaks=[0.1, 0.3], seeds=2, target=0.9, range_test_steps=10,
                                 peaks_from="range-test", report=lambda line: None)
    assert results["tuned_peaks"]["one_cycle"]["20"] == 1.0
    assert [r["max_lr"] for r in tried] == [1.0, 1.0]  # two seeds, no tuning run


def test_compare_refuses_contradicting_flags(tmp_path, capsys):
    assert compare.main(["--peak-from-range-test", "--peaks-from", "grid",
                         "--out-dir", str(tmp_path)]) == 2
    assert "--peak-from-range-test" in capsys.readouterr().err
