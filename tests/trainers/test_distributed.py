"""Data parallel: 2 ranks under ``mlx.launch`` (ring backend) against one process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import mlx.core as mx
import numpy as np
import pytest
from helpers_trainer import flat_weights, read_jsonl

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "_trainer_dist_script.py")


@pytest.mark.distributed
def test_two_ranks_match_each_other_and_a_single_process(tmp_path, mlx_launch):
    cmd = [*mlx_launch(2), sys.executable, SCRIPT, str(tmp_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=os.path.dirname(os.path.dirname(HERE)), start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:  # a hung collective must fail, not stall the suite
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"mlx.launch timed out:\n{output[-3000:]}")
    assert proc.returncode == 0, output[-3000:]

    ranks = [mx.load(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1)]
    for key in ranks[0]:
        assert mx.array_equal(ranks[0][key], ranks[1][key]).item(), key

    sys.path.insert(0, HERE)
    from _trainer_dist_script import build

    trainer, model = build(tmp_path / "single", group=None)
    trainer.fit()
    single = flat_weights(model)
    for key, value in ranks[0].items():
        np.testing.assert_allclose(np.array(value), single[key], rtol=1e-5, atol=1e-6,
                                   err_msg=key)
    # rank 0 logged the global-batch loss (averaged over ranks), as the single process did
    dist_rows = read_jsonl(tmp_path / "run" / "log.jsonl")
    single_rows = read_jsonl(tmp_path / "single" / "log.jsonl")
    assert [(r["kind"], r["step"]) for r in dist_rows] == [
        (r["kind"], r["step"]) for r in single_rows
    ]
    # the sharded evaluation (each rank its share of the batches, sums combined) equals the
    # single process's evaluation of every batch
    for a, b in zip(dist_rows, single_rows, strict=True):
        for key in ("loss", "grad_norm", "learning_rate", "eval_loss"):
            if key in b:
                assert a[key] == pytest.approx(b[key], rel=1e-5), (a["step"], key)
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == [
        "step_00000004", "step_00000008"
    ]


def test_shard_splits_rows_by_rank_and_rejects_uneven_batches():
    from trainers.data import shard

    batch = {"x": mx.arange(12).reshape(6, 2), "y": mx.arange(6)}
    parts = [shard(batch, r, 3) for r in range(3)]
    assert [p["y"].tolist() for p in parts] == [[0, 1], [2, 3], [4, 5]]
    assert parts[2]["x"].tolist() == [[8, 9], [10, 11]]
    with pytest.raises(ValueError, match="6 rows cannot be split evenly over 4 ranks"):
        shard(batch, 0, 4)
