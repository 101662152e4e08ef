"""scripts/lr_range_test.py --seeds: each rule's rate, its band over the seeds, the plot."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers_scripts import assert_png, load_script

from trainers.lr_finder import suggest_lrs

range_script = load_script("lr_range_test")


@pytest.mark.slow
def test_seeds_give_each_rule_a_band(tmp_path, capsys):
    out = tmp_path / "rt"
    assert range_script.main(["--run-dir", str(out), "--sweep-steps", "30", "--min-lr", "1e-3",
                              "--max-lr", "30", "--seeds", "3",
                              "--set", "model.hidden=[16]"]) == 0
    result = json.loads((out / "range_test.json").read_text())
    assert_png(str(out / "range_test.png"))
    assert result["seeds"] == [0, 1, 2] and len(result["sweeps"]) == 3
    for rule in ("valley", "steepest", "minimum/10"):
        per_seed = [suggest_lrs(s["learning_rates"], s["smoothed_losses"], skip_start=3)[rule]
                    for s in result["sweeps"]]
        band = result["spread"][rule]
        assert band["values"] == per_seed
        assert band["median"] == result["suggestions"][rule] == float(np.median(per_seed))
        assert band["low"] == min(per_seed) <= band["median"] <= band["high"] == max(per_seed)
    # the default config trains 1-cycle: its peak is the median of each sweep's extremum / 3
    extrema = [min((v, r) for r, v in zip(s["learning_rates"], s["smoothed_losses"],
                                          strict=True) if np.isfinite(v))[1]
               for s in result["sweeps"]]
    assert result["suggested_for"] == "one_cycle"
    assert result["suggested_lr"] == pytest.approx(float(np.median(extrema)) / 3, rel=1e-12)
    assert result["sweeps"][0]["smoothed_losses"] != result["sweeps"][1]["smoothed_losses"]
    assert "band" in capsys.readouterr().out


def test_seeds_must_be_positive(tmp_path, capsys):
    assert range_script.main(["--run-dir", str(tmp_path), "--seeds", "0"]) == 2
    assert "--seeds" in capsys.readouterr().err
