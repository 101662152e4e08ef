"""scripts/audit_run.py on the runs scripts/train.py writes: exit 0, and 1 at the right step."""

from __future__ import annotations

import json
import math

import pytest
from helpers_scripts import load_script

audit = load_script("audit_run")
train = load_script("train")
TINY = ["--no-plots", "--set", "model.hidden=[16]", "--set", "training.eval_every=10",
        "--set", "training.checkpoint_every=10", "--set", "training.log_every=10"]


def one_cycle(t: int, max_lr: float, total: int) -> float:
    """PyTorch OneCycleLR (cosine, pct_start 0.3, div 25, final div 1e4), float64."""
    initial, final = max_lr / 25, max_lr / 25 / 1e4
    up = 0.3 * total - 1
    if t <= up:
        start, end, pct = initial, max_lr, t / up
    else:
        start, end, pct = max_lr, final, (t - up) / (total - 1 - up)
    return end + (start - end) / 2 * (math.cos(math.pi * pct) + 1)


@pytest.mark.slow
def test_train_runs_pass_also_after_a_resume(tmp_path, capsys):
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert train.main(["--steps", "20", "--run-dir", str(whole), *TINY]) == 0
    assert train.main(["--steps", "20", "--run-dir", str(split), "--stop-after", "7",
                       *TINY]) == 0
    assert train.main(["--resume", str(split)]) == 0
    capsys.readouterr()
    for run in (whole, split):
        assert audit.main([str(run)]) == 0
        out = capsys.readouterr().out
        assert "every rate equals its schedule" in out
        assert "learning_rate [config.json]: ok, 20 rows (20 bit-exact)" in out
        assert "momentum [config.json]: ok, 20 rows (20 bit-exact)" in out


@pytest.mark.slow
def test_a_config_sized_for_another_length_exits_1_at_its_first_step(tmp_path, capsys):
    run = tmp_path / "run"
    assert train.main(["--steps", "20", "--run-dir", str(run), "--max-lr", "0.2", *TINY]) == 0
    experiment = json.loads((run / "experiment.json").read_text())
    experiment["optimizer"]["learning_rate"]["total_steps"] = 30  # not what the run used
    (run / "experiment.json").write_text(json.dumps(experiment))
    capsys.readouterr()
    assert audit.main([str(run), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    first = report["first_mismatch"]
    # both start at max_lr / 25; step 1 is the first where the two lengths differ
    assert (first["step"], first["column"], first["source"]) == (1, "learning_rate",
                                                                 "experiment.json")
    assert first["expected"] == pytest.approx(one_cycle(1, 0.2, 30), rel=1e-6)
    assert first["logged"] == pytest.approx(one_cycle(1, 0.2, 20), rel=1e-6)
    assert not report["ok"]


def test_not_a_run_directory_exits_2(tmp_path, capsys):
    assert audit.main([str(tmp_path)]) == 2
    assert "config.json" in capsys.readouterr().err


@pytest.mark.slow
def test_train_lm_runs_pass_with_a_cycled_beta1(tmp_path, capsys):
    pytest.importorskip("mlx_lm")
    train_lm = load_script("train_lm")
    run = tmp_path / "lm"
    assert train_lm.main(["--steps", "12", "--preset", "tiny", "--seq-len", "16",
                          "--batch-size", "4", "--schedule", "one_cycle", "--run-dir", str(run),
                          "--no-plots", "--eval-every", "6", "--quiet"]) == 0
    capsys.readouterr()
    assert audit.main([str(run)]) == 0
    out = capsys.readouterr().out
    assert "learning_rate [config.json]: ok, 12 rows (12 bit-exact)" in out
    assert "beta1 [config.json]: ok, 12 rows (12 bit-exact)" in out
