"""The cost table and checkpoint benchmarks stay runnable: their tiny configurations finish
and report every figure, positive and finite (no timing is asserted)."""

from __future__ import annotations

import json
import math

from helpers_scripts import load_bench


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_the_cost_table_reports_every_figure_for_each_model(tmp_path, capsys):
    out, table = tmp_path / "cost.json", tmp_path / "cost.md"
    assert load_bench("bench_cost").main(
        ["--tiny", "--json", str(out), "--markdown", str(table)]) == 0
    result = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result
    assert [r["model"] for r in result["models"]] == ["MLP 784-256-256-10", "llama tiny"]
    for row in result["models"]:
        for key in ("parameters", "hand_step_s", "trainer_step_s", "trainer_vs_hand",
                    "throughput_per_s", "peak_memory_bytes", "eval_s", "checkpoint_bytes",
                    "save_s", "load_s"):
            assert _positive(row[key]), (row["model"], key, row[key])
        assert math.isclose(row["trainer_share"], 1 - row["trainer_vs_hand"])
        assert math.isclose(row["throughput_per_s"], row["per_step"] / row["trainer_step_s"])
        assert row["rounds"] == 1 and len(row["runs"]["hand_step_s"]) == 1
    assert result["models"][0]["per_step"] == 128 and result["models"][1]["per_step"] == 2 * 16
    grown = result["growth"]
    for key in ("save_fixed_s", "save_s_per_gb", "load_fixed_s", "load_s_per_gb"):
        assert math.isfinite(grown[key])
    assert grown["step_time_exponent_in_parameters"] is None  # one LM preset: no fit
    assert all(_positive(v) for v in grown["us_per_unit_per_million_parameters"].values())
    lines = table.read_text().splitlines()
    assert lines[0].startswith("| model |") and len([s for s in lines if s.startswith(
        "| MLP") or s.startswith("| llama")]) == 2
    assert result["digest"] in ("blake3", "sha256")


def test_the_checkpoint_benchmark_reports_both_ratios(tmp_path, capsys):
    out = tmp_path / "checkpoint.json"
    assert load_bench("bench_checkpoint").main(
        ["--size-mb", "0.2", "--rounds", "2", "--dir", str(tmp_path), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["width"] == int(math.sqrt(0.2e6 / 24))
    # two layers: weight + bias, each with AdamW's two moments, plus the step and the rate
    width = result["width"]
    assert result["bytes"] == 3 * 4 * 2 * (width * width + width) + 8 + 4
    seconds = result["seconds"]
    for name in ("plain_save", "our_save", "plain_load", "verified_load", "plain_save_in_place"):
        assert len(seconds[name]) == 2 and all(map(_positive, seconds[name]))
    assert _positive(result["ratio"]["save"]) and _positive(result["ratio"]["load"])
    fastest = result["ratio_of_fastest"]
    assert fastest["save"] == min(seconds["our_save"]) / min(seconds["plain_save"])
    assert fastest["load"] == min(seconds["verified_load"]) / min(seconds["plain_load"])
    assert fastest["save_vs_in_place"] == (min(seconds["our_save"])
                                           / min(seconds["plain_save_in_place"]))
    table = capsys.readouterr().out
    assert "new files" in table and "in place" in table and "fastest rounds" in table
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.json"]  # cleaned up
