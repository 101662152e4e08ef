"""scripts/compare_lm.py: the schedule families' values, bad input, and a tiny run end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from helpers_scripts import assert_png, load_script

from mlx_schedules import from_config
from trainers.experiments.comparison_lm import LM_FAMILIES, LM_LABELS, lm_family_configs

pytest.importorskip("mlx_lm")
compare_lm = load_script("compare_lm")


# ------------------------------------------------------- the families, written out in float64
def cosine_anneal(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2 * (1 + math.cos(math.pi * pct))


def one_cycle_reference(t: int, peak: float, total: int) -> tuple[float, float]:
    """PyTorch OneCycleLR (pct_start 0.3, cos, div 25, final_div 1e4) and its momentum."""
    initial, lowest = peak / 25, peak / 25 / 1e4
    up_end, down_end = 0.3 * total - 1, total - 1
    t = min(t, total - 1)
    if t <= up_end:
        pct = t / up_end
        return cosine_anneal(initial, peak, pct), cosine_anneal(0.95, 0.85, pct)
    pct = (t - up_end) / (down_end - up_end)
    return cosine_anneal(peak, lowest, pct), cosine_anneal(0.85, 0.95, pct)


def reference(family: str, peak: float, total: int, t: int) -> tuple[float, float]:
    """(learning rate, beta1) of the k-th update, from the definitions in the module docs."""
    warm = max(1, total // 20)
    decay = (0.01) ** (1 / (total - 1))  # exponential families end at peak / 100
    if family == "constant":
        return peak, 0.9
    if family == "warmup_cosine":
        if t < warm:
            return peak * t / warm, 0.9
        floor = peak / 10
        return floor + (peak - floor) * 0.5 * (1 + math.cos(
            math.pi * min(t - warm, total - warm) / (total - warm))), 0.9
    if family == "wsd":
        tail = max(1, round(0.2 * total))
        if t < warm:
            return peak * t / warm, 0.9
        return peak * min(max(total - t, 0), tail) / tail, 0.9
    if family == "exponential":
        return peak * decay ** t, 0.9
    if family == "cyclic_exponential":
        cycle = max(2, round(total / 3.5))
        return peak * decay ** t * 0.5 * (1 + math.cos(2 * math.pi * (t % cycle) / cycle)), 0.9
    return one_cycle_reference(t, peak, total)


@pytest.mark.parametrize("family", LM_FAMILIES)
@pytest.mark.parametrize("total", [10, 57, 400])
def test_family_schedules_match_their_definitions(family, total):
    configs = lm_family_configs(family, 0.02, total)
    rate = from_config(configs["learning_rate"]).values(total)
    beta1 = configs["beta1"]
    beta1 = (from_config(beta1).values(total) if isinstance(beta1, dict)
             else np.full(total, beta1))
    expected = np.array([reference(family, 0.02, total, t) for t in range(total)])
    np.testing.assert_allclose(rate, expected[:, 0], rtol=2e-5, atol=1e-9)
    np.testing.assert_allclose(beta1, expected[:, 1], rtol=1e-6)


def test_family_bad_input_is_named():
    with pytest.raises(ValueError, match="unknown schedule family 'zigzag'"):
        lm_family_configs("zigzag", 0.01, 100)
    with pytest.raises(ValueError, match="steps must be an int >= 8.*got 4"):
        lm_family_configs("wsd", 0.01, 4)
    with pytest.raises(ValueError, match="peak_lr must be a positive number, got -0.1"):
        lm_family_configs("constant", -0.1, 100)


@pytest.mark.parametrize("argv, message", [
    (["--budgets", "4", "100"], "--budgets: every budget must be >= 8 steps, got [4, 100]"),
    (["--peaks", "0.01", "-1"], "--peaks: need positive rates, got [0.01, -1.0]"),
    (["--seeds", "0"], "--seeds: need >= 1, got 0"),
    (["--families", "warmup_cosine", "sgdr"], "--families: unknown ['sgdr']"),
    (["--seq-len", "0"], "--seq-len: need >= 1, got 0"),
    (["--jobs", "0"], "--jobs: need >= 1, got 0"),
    (["--heads", "5"], "hidden_size=64 must be a multiple of num_attention_heads=5"),
])
def test_bad_arguments_exit_2_before_training(argv, message, tmp_path, capsys):
    assert compare_lm.main([*argv, "--out-dir", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------ a tiny run, end to end
PEAKS = (0.003, 0.03)
BUDGET = 10
TINY = ["--budgets", str(BUDGET), "--peaks", *map(str, PEAKS), "--seeds", "2",
        "--seq-len", "16", "--batch-size", "2", "--hidden-size", "16", "--layers", "1",
        "--intermediate-size", "32", "--tune-windows", "8", "--test-windows", "8",
        "--max-extra", "0", "--range-test-steps", "0"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare_lm")
    assert compare_lm.main([*TINY, "--jobs", "2", "--out-dir", str(out)]) == 0
    return out, json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_tiny_run_writes_report_figure_and_results(tiny_run):
    out, results = tiny_run
    report = (out / "comparison.md").read_text()
    assert report.startswith("# The source article's schedules on a byte-level language model")
    assert f"Command: `mlx-schedules compare-lm --budgets {BUDGET} --peaks" in report
    labels = [LM_LABELS[f] for f in LM_FAMILIES]
    measured = report.split("## Measured")[1].split("## Budget sweep")[0]
    sweep = report.split("## Budget sweep")[1].split("Seed noise")[0]
    for table in (measured, sweep):
        rows = [line for line in table.splitlines() if line.startswith("| ")][1:]
        assert [row.split(" | ")[0][2:] for row in rows][:len(labels)] == labels
    claims = report.split("## What the source article claims / what we measured")[1]
    claims = claims.split("## Tuning")[0]
    claim_rows = [line for line in claims.splitlines() if line.startswith("| ")][1:]
    assert len(claim_rows) == 5 and "rugged" in claim_rows[0] and "1-cycle" in claim_rows[2]
    assert "## The source article's table" in report and "Cyclic exponential decay" in report
    assert_png(str(out / "comparison.png"))

    assert results["budgets"] == [BUDGET] and results["families"] == list(LM_FAMILIES)
    assert results["runs"] == len(LM_FAMILIES) * (len(PEAKS) + 1)  # grid on seed 0, + seed 1
    assert results["wall_time_s"] > 0 and results["cpu_time_s"] > 0
    for family in LM_FAMILIES:
        tuning = results["tuning_bpb"][family][str(BUDGET)]
        peak = results["tuned_peaks"][family][str(BUDGET)]
        finite = {float(p): v for p, v in tuning.items() if v is not None}
        assert peak == min(finite, key=finite.get)  # the grid's best on the tuning files
        cell = results["measured"][family][str(BUDGET)]
        per_seed = [r["test_bpb"] for r in cell["runs"]]
        assert [r["seed"] for r in cell["runs"]] == [0, 1] and cell["seeds"] == 2
        assert all(0 < b < 9 for b in per_seed)  # an untrained byte model is near 8
        assert cell["test_bpb"] == pytest.approx(np.mean(per_seed), rel=1e-12)
        assert cell["test_bpb_std"] == pytest.approx(np.std(per_seed), rel=1e-9, abs=1e-12)
        assert f"| {LM_LABELS[family]} | {peak:g}" in measured


@pytest.mark.slow
def test_tiny_run_logged_rates_are_each_schedule(tiny_run):
    _, results = tiny_run
    for family in LM_FAMILIES:
        curves = results["curves"][family]
        peak = results["tuned_peaks"][family][str(BUDGET)]
        assert curves["step"] == list(range(BUDGET))  # one row per update
        expected = np.array([reference(family, peak, BUDGET, t) for t in range(BUDGET)])
        np.testing.assert_allclose(curves["learning_rate"], expected[:, 0], rtol=2e-5,
                                   atol=1e-9, err_msg=family)
        if family == "one_cycle":
            np.testing.assert_allclose(curves["beta1"], expected[:, 1], rtol=1e-6)
        else:  # a fixed beta1 is not a logged column
            assert curves["beta1"] == [None] * BUDGET
        assert all(math.isfinite(v) for v in curves["loss"])


@pytest.mark.slow
def test_render_rewrites_the_report_from_results(tiny_run, tmp_path):
    out, _ = tiny_run
    assert compare_lm.main(["--render", str(out / "results.json"), "--no-plot",
                            "--out-dir", str(tmp_path)]) == 0
    assert (tmp_path / "comparison.md").read_text() == (out / "comparison.md").read_text()
    assert not (tmp_path / "results.json").exists()
    assert compare_lm.main(["--render", str(tmp_path / "missing.json")]) == 2


@pytest.mark.slow
def test_worker_processes_do_not_change_the_numbers(tiny_run, tmp_path):
    _, parallel = tiny_run
    families = ["constant", "one_cycle"]
    argv = [*TINY, "--families", *families, "--jobs", "1", "--no-plot", "--out-dir",
            str(tmp_path)]
    assert compare_lm.main(argv) == 0
    serial = json.loads((tmp_path / "results.json").read_text())
    for family in families:
        assert serial["tuning_bpb"][family] == parallel["tuning_bpb"][family]
        assert serial["curves"][family] == parallel["curves"][family]
        for a, b in zip(serial["measured"][family][str(BUDGET)]["runs"],
                        parallel["measured"][family][str(BUDGET)]["runs"], strict=True):
            assert (a["seed"], a["test_bpb"], a["final_train_loss"]) == \
                (b["seed"], b["test_bpb"], b["final_train_loss"])


def test_help_shows_the_usage(capsys):
    with pytest.raises(SystemExit) as stop:
        compare_lm.main(["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "mlx-schedules compare-lm --out-dir docs/comparison_lm" in out
    assert "--jobs" in out and "--render" in out
