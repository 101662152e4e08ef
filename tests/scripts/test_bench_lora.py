"""scripts/bench_lora.py --tiny: both commands run in alternating rounds and the JSON report
holds what the docs quote (no timing is asserted: this machine's timings mean nothing)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

import pytest
from helpers_scripts import SCRIPTS

mlx_lm = pytest.importorskip("mlx_lm")


@pytest.mark.slow
def test_bench_lora_tiny_report(tmp_path):
    out, keep = tmp_path / "bench.json", tmp_path / "runs"
    done = subprocess.run([sys.executable, os.path.join(SCRIPTS, "bench_lora.py"), "--tiny",
                           "--json", str(out), "--keep", str(keep)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())

    rounds = report["rounds"]
    assert [r["order"] for r in rounds] == [["mlx-schedules", "mlx_lm"],
                                            ["mlx_lm", "mlx-schedules"]]
    # tokens per update: the mean tokens of a training row (rendered with the chat template,
    # counted here) times --batch-size 4
    _, tokenizer = mlx_lm.load(str(keep / "model"))
    rows = [json.loads(line) for line in (keep / "data" / "train.jsonl").open()]
    lengths = [len(tokenizer.apply_chat_template(r["messages"])) for r in rows]
    assert report["tokens_per_update"] == pytest.approx(4 * statistics.mean(lengths), rel=1e-6)
    for r in rounds:
        for name in ("mlx-schedules", "mlx_lm"):
            m = r[name]
            assert m["steps_per_s"] > 0 and m["wall_s"] > 0
            assert m["tokens_per_s"] == pytest.approx(m["steps_per_s"] *
                                                      report["tokens_per_update"])
            # both wrote adapters mlx-lm loads: its layout, in the folder the report names
            assert {"adapter_config.json", "adapters.safetensors"} <= \
                set(os.listdir(m["adapters"]))
        assert r["ratio"] == pytest.approx(r["mlx-schedules"]["tokens_per_s"] /
                                           r["mlx_lm"]["tokens_per_s"])
    assert report["tokens_per_s_ratio_median"] == pytest.approx(
        statistics.median(r["ratio"] for r in rounds))
    loss = report["val_loss"]
    # 8 updates at 1e-4 move both below the random model they started from
    assert loss["mlx-schedules"] < loss["base model"] and loss["mlx_lm"] < loss["base model"]
    assert report["val_loss_difference"] == pytest.approx(loss["mlx-schedules"] - loss["mlx_lm"])
    assert "--iters" in report["command_line"] and report["machine"]["mlx_lm"]
