"""The schedule-free baseline in the scripts: its family, its config, its evaluation at x."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers_scripts import load_script

from trainers.experiments.config import DEFAULT_CONFIG, build_optimizer, merge_config, validate
from trainers.experiments.families import family_configs
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
