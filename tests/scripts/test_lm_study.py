"""The LM study: its schedule shapes in float64, the claims table from hand-built numbers, and
the --tiny run end to end (structure of its output)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from helpers_scripts import assert_png, load_script

from mlx_schedules import from_config
from trainers.experiments.lm_schedules import schedule_configs
from trainers.experiments.lm_study import claims_rows

pytest.importorskip("mlx_lm")
compare_lm = load_script("compare_lm")

PEAK, STEPS, WARM = 0.01, 100, 5


def values(family: str) -> np.ndarray:
    config = schedule_configs(family, PEAK, STEPS, batch_size=16, tokens_per_step=512)
    return np.asarray(from_config(config["learning_rate"]).values(STEPS + 1), np.float64)


def test_linear_decay_to_zero():
    expected = [PEAK * t / WARM if t < WARM else PEAK * (1 - (t - WARM) / (STEPS - WARM))
                for t in range(STEPS + 1)]
    np.testing.assert_allclose(values("linear"), expected, rtol=1e-5, atol=1e-9)


def test_wsd_with_the_one_minus_sqrt_cooldown():
    start = STEPS - 20  # the last 20% decays
    expected = [PEAK * t / WARM if t < WARM else PEAK if t <= start
                else PEAK * (1 - math.sqrt((t - start) / 20)) for t in range(STEPS + 1)]
    np.testing.assert_allclose(values("wsd_sqrt"), expected, rtol=1e-5, atol=1e-9)


def test_power_meets_the_peak_after_warmup_then_decays_as_a_power_law():
    got = values("power")
    decay_start = STEPS - 10

    def law(t):  # a set so that batch * a * (WARM * 512) ** b == PEAK
        return PEAK * (t / WARM) ** -0.51

    expected = [PEAK * t / WARM if t < WARM else law(t) if t <= decay_start
                else law(decay_start) * (math.exp((STEPS - t) / 10) - 1) / (math.e - 1)
                for t in range(STEPS + 1)]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-9)


def fake_results(cells: dict[str, list[float]], std: float = 0.01) -> dict:
    """Two sizes x two budgets; ``cells[family]`` the four means (S/10, S/40, M/10, M/40)."""
    sizes = {}
    for i, size in enumerate(("S", "M")):
        measured = {f: {str(b): {"test_bpb": v[2 * i + j], "test_bpb_std": std}
                        for j, b in enumerate((10, 40))} for f, v in cells.items()}
        sizes[size] = {"measured": measured}
    return {"study": {"families": list(cells), "budgets": [10, 40]}, "sizes": sizes}


def test_claims_rows_from_the_numbers():
    rows = claims_rows(fake_results({
        "wsd": [3.0, 2.5, 2.8, 2.3],
        "wsd_sqrt": [2.9, 2.4, 2.7, 2.2],        # better by 0.1 everywhere (noise 0.02)
        "warmup_cosine": [2.9, 2.41, 2.7, 2.3],  # within the noise of wsd_sqrt but once
        "power": [3.2, 2.5, 2.8, 2.3],            # worse than WSD once, tied thrice
    }))
    by_pair = {row.split(" | ")[1]: row for row in rows[2:]}
    sqrt_vs_linear = by_pair["WSD, 1-sqrt cooldown vs warmup-stable-decay"]
    assert "S/10: -0.100 (±0.020)" in sqrt_vs_linear and "| holds (every cell) |" in sqrt_vs_linear
    sqrt_vs_cosine = by_pair["WSD, 1-sqrt cooldown vs cosine with warmup"]
    assert "holds (1 of 4 cells; ties elsewhere)" in sqrt_vs_cosine
    power = by_pair["power scheduler vs warmup-stable-decay"]
    assert "does not hold: WSD is better (1 of 4 cells)" in power
    # pairs whose schedules were not run are left out
    assert not any("schedule-free" in row for row in rows)


@pytest.mark.slow
def test_tiny_study_writes_its_results(tmp_path, capsys):
    out = tmp_path / "study"
    assert compare_lm.main(["--study", "--tiny", "--jobs", "1", "--out-dir", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    study = results["study"]
    assert set(results["sizes"]) == {"S", "M"} and study["budgets"] == [8, 32]
    for size in results["sizes"].values():
        tpp = size["tokens_per_parameter"]
        assert tpp["32"] == pytest.approx(4 * tpp["8"])  # the budgets span 4x
        assert tpp["8"] == pytest.approx(8 * 4 * 16 / size["model_parameters"])
        for family in study["families"]:
            for budget in ("8", "32"):
                cell = size["measured"][family][budget]
                assert cell["seeds"] == 2 and len(cell["runs"]) == 2
                assert cell["test_bpb"] is not None and 0 < cell["test_bpb"] < 9
    sizes = results["sizes"]
    assert sizes["S"]["model_parameters"] < sizes["M"]["model_parameters"]
    report = (out / "study.md").read_text()
    assert "## What the literature claims / what we measured at this scale" in report
    assert "WSD, 1-sqrt cooldown vs warmup-stable-decay" in report
    assert "power scheduler vs warmup-stable-decay" in report
    assert_png(str(out / "study.png"))


def test_tiny_needs_study(tmp_path, capsys):
    assert compare_lm.main(["--tiny", "--out-dir", str(tmp_path)]) == 2
    assert "--tiny goes with --study" in capsys.readouterr().err


def test_compare_lm_takes_the_study_schedules():
    args = compare_lm.parse_args(["--families", "wsd_sqrt", "power", "schedule_free", "linear"])
    assert compare_lm._settings(args).batch_size == 16  # accepted: no ValueError
    args = compare_lm.parse_args(["--families", "sgdr"])
    with pytest.raises(ValueError, match=r"--families: unknown \['sgdr'\]"):
        compare_lm._settings(args)
