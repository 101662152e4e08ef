"""scripts/audit_run.py on the runs scripts/train.py writes: exit 0, and 1 at the right step."""

from __future__ import annotations

import json
import math
import shutil

import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from helpers_scripts import load_script

import mlx_schedules as ms
from trainers import ArrayBatches, Trainer

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


# ---------------------------------------------------------------- exit status 0, 1, 2
def tiny_run(run, *, float16=False):
    """A 12-step cosine run of a linear model; with ``float16`` the updates of steps 1 and 5
    overflow (inputs of 1e5) and are skipped."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3)).astype(np.float32)
    y = x @ rng.normal(size=(3, 1)).astype(np.float32)
    batches = [(x[i:i + 8], y[i:i + 8]) for i in range(0, 32, 8)] * 3
    if float16:
        for t in (1, 5):
            batches[t] = (np.full_like(batches[t][0], 1e5), batches[t][1])
    model = nn.Linear(3, 1)
    Trainer(model, lambda m, a, b: nn.losses.mse_loss(m(a), b),
            optim.SGD(learning_rate=ms.cosine_decay(0.1, 12)),
            batches if float16 else ArrayBatches((x, y), 8), run_dir=run, max_steps=12,
            report_every=0, compile=False, precision="float16" if float16 else "float32").fit()
    return run


@pytest.fixture(scope="module")
def honest(tmp_path_factory):
    root = tmp_path_factory.mktemp("honest")
    return tiny_run(root / "float32"), tiny_run(root / "float16", float16=True)


def test_an_untampered_float16_run_exits_0(honest, capsys):
    assert audit.main([str(honest[1])]) == 0
    assert "learning_rate [config.json]: ok, 12 rows (12 bit-exact)" in capsys.readouterr().out


def test_a_rate_one_ulp_off_exits_1_naming_row_column_and_values(honest, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(honest[0], run)
    lines = (run / "log.jsonl").read_text().splitlines()
    row = json.loads(lines[6])
    good = row["learning_rate"]
    bad = float(np.nextafter(np.float32(good), np.float32(1)))
    row["learning_rate"] = bad
    lines[6] = json.dumps(row)
    (run / "log.jsonl").write_text("\n".join(lines) + "\n")
    csv_lines = (run / "log.csv").read_text().splitlines()
    csv_lines[7] = csv_lines[7].replace(repr(good), repr(bad))
    (run / "log.csv").write_text("\n".join(csv_lines) + "\n")
    assert audit.main([str(run)]) == 1
    assert (f"FIRST PROBLEM at log.jsonl line 7, step 6, column 'learning_rate': logged {bad!r}, "
            f"expected {good!r}") in capsys.readouterr().out
    assert audit.main([str(run), "--json"]) == 1
    first = json.loads(capsys.readouterr().out)["first_mismatch"]
    assert (first["row"], first["step"], first["logged"], first["expected"]) == (7, 6, bad, good)


def no_columns(run):
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(dict(config, columns=[])))


def list_config(run):
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps([config]))


def deep_config(run):
    (run / "config.json").write_text('{"columns": ' + "[" * 50_000 + "]" * 50_000 + "}")


def empty_log(run):
    (run / "log.jsonl").write_text("")


def eval_rows_only(run):
    (run / "log.jsonl").write_text(json.dumps({"kind": "eval", "step": 0}) + "\n")


def broken_row(run):
    (run / "log.jsonl").write_text('{"kind": "train", "step": 0, "learning_ra\n')


def no_csv(run):
    (run / "log.csv").unlink()


UNUSABLE = {no_columns: "lists no log columns", list_config: "JSON list",
            deep_config: "nests too deeply", empty_log: "no training rows",
            eval_rows_only: "no training rows", broken_row: "line 1", no_csv: "log.csv"}


@pytest.mark.parametrize("spoil", list(UNUSABLE), ids=[f.__name__ for f in UNUSABLE])
def test_unusable_input_exits_2_with_a_message_and_no_traceback(honest, tmp_path, capsys,
                                                                 spoil):
    run = tmp_path / "run"
    shutil.copytree(honest[0], run)
    spoil(run)
    assert audit.main([str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and UNUSABLE[spoil] in err and "Traceback" not in err
