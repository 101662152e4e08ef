"""The schedule-free baseline in the scripts: its family, its config, its evaluation at x."""

from __future__ import annotations

import json

import numpy as np
import pytest
from experiments.config import DEFAULT_CONFIG, build_optimizer, merge_config, validate
from experiments.families import family_configs
from experiments.run import load_data, run_training
from helpers_scripts import load_script

from trainers.schedule_free import ScheduleFreeSGD

compare = load_script("compare_schedules")


def test_the_family_builds_a_schedule_free_sgd():
    section = family_configs("schedule_free", 0.5, 200)
    assert section == {"name": "ScheduleFreeSGD", "learning_rate": 0.5, "momentum": 0.9,
                       "warmup_steps": 10}
    config = validate(merge_config(DEFAULT_CONFIG, {"optimizer": section}))
    opt = build_optimizer(config["optimizer"])
    assert isinstance(opt, ScheduleFreeSGD)
    assert (opt.momentum, opt.warmup_steps, opt.learning_rate.item()) == (0.9, 10, 0.5)


def test_a_run_evaluates_the_averaged_weights(monkeypatch):
    """run_training hands a schedule-free run's trainer to evaluate_averaged (whose swap to x
    tests/trainers/test_schedule_free.py checks against the paper's equations)."""
    import experiments.run

    config = validate(merge_config(DEFAULT_CONFIG, {
        "model": {"hidden": [16]}, "optimizer": family_configs("schedule_free", 0.3, 20),
        "training": {"steps": 20, "eval_every": 20}, "output": {"plots": False}}))
    data = load_data(config["dataset"])
    swapped = []
    real = experiments.run.evaluate_averaged

    def spy(trainer):
        swapped.append(type(trainer.optimizer).__name__)
        real(trainer)

    monkeypatch.setattr(experiments.run, "evaluate_averaged", spy)
    summary, rows = run_training(config, data=data, log_files=False)
    assert swapped == ["ScheduleFreeSGD"] and rows.eval[-1]["step"] == 20
    assert 0.0 <= summary["final_accuracy"] <= 1.0
    plain = validate(merge_config(DEFAULT_CONFIG, {
        "model": {"hidden": [16]}, "training": {"steps": 20}, "output": {"plots": False}}))
    run_training(plain, data=data, log_files=False)
    assert swapped == ["ScheduleFreeSGD"]  # not for other optimizers


@pytest.mark.slow
def test_compare_schedules_runs_the_baseline(tmp_path):
    argv = ["--budgets", "16", "--peaks", "0.1", "1.0", "--seeds", "1",
            "--families", "cosine", "schedule_free", "--range-test-steps", "10",
            "--target", "0.5", "--set", "model.hidden=[16]", "--no-plots",
            "--out-dir", str(tmp_path)]
    assert compare.main(argv) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    measured = results["measured"]["schedule_free"]["16"]
    assert 0.0 <= measured["final_accuracy"] <= 1.0
    assert results["tuned_peaks"]["schedule_free"]["16"] in (0.1, 1.0)
    assert "schedule-free SGD" in (tmp_path / "comparison.md").read_text()
    assert np.isfinite(measured["final_accuracy"])
