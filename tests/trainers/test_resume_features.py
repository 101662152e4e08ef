"""Exact resume with every feature on: bf16, EMA, parameter groups, gradient checkpointing,
the best checkpoint, bucketed token batches and reduce-on-plateau, killed with SIGKILL."""

from __future__ import annotations

import os
import subprocess
import sys

import mlx.core as mx
import pytest
from helpers_trainer import read_jsonl, run_files

SCRIPT = os.path.join(os.path.dirname(__file__), "_trainer_lm_script.py")


def _run(run_dir, *args):
    return subprocess.run([sys.executable, SCRIPT, str(run_dir), *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_sigkill_then_resume_with_every_feature_is_byte_identical(tmp_path):
    reference = _run(tmp_path / "ref")
    assert reference.returncode == 0, reference.stderr[-3000:]
    expected = run_files(tmp_path / "ref", hidden=False)
    rows = read_jsonl(tmp_path / "ref" / "log.jsonl")
    train = [r for r in rows if r["kind"] == "train"]
    # every feature really was on
    assert {"learning_rate/0", "learning_rate/1", "beta1/1", "tokens"} <= set(train[0])
    assert any("ema_eval_loss" in r for r in rows)
    assert any(name.startswith("best/") for name in expected)
    assert any(name.endswith("train_state.safetensors") for name in expected)
    weights = mx.load(str(tmp_path / "ref.weights.safetensors"))

    for kill in (2, 6, 11):  # mid-block, right after a checkpoint's batch, near the end
        run_dir = tmp_path / f"kill{kill}"
        killed = _run(run_dir, "--kill-at-batch", kill)
        assert killed.returncode == -9, killed.stderr[-3000:]
        resumed = _run(run_dir, "--resume")
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        got = run_files(run_dir, hidden=False)
        assert sorted(got) == sorted(expected), kill
        different = [name for name in expected if got[name] != expected[name]]
        assert not different, (kill, different)
        final = mx.load(str(run_dir) + ".weights.safetensors")
        for key, value in weights.items():
            assert mx.array_equal(final[key], value).item(), (kill, key)
