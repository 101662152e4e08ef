"""train.py --branch CHECKPOINT --cooldown STEPS: a decay from any checkpoint, as a new run."""

from __future__ import annotations

import json
import math

import pytest
from helpers_scripts import load_script

train = load_script("train")
audit = load_script("audit_run")

WSD = {"model": {"hidden": [16]},
       "optimizer": {"name": "SGD", "momentum": 0.9,
                     "learning_rate": {"name": "warmup_stable_decay", "peak": 0.2,
                                       "total_steps": 40, "warmup_steps": 5,
                                       "decay_steps": 15}},
       "training": {"steps": 40, "eval_every": 10, "checkpoint_every": 5,
                    "keep_checkpoints": 10, "log_every": 5},
       "output": {"plots": False}}


def tree(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "system.jsonl"}


def rows(run_dir, kind="train") -> list[dict]:
    lines = (run_dir / "log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    root = tmp_path_factory.mktemp("branch")
    (root / "wsd.json").write_text(json.dumps(WSD))
    assert train.main(["--config", str(root / "wsd.json"), "--run-dir", str(root / "orig")]) == 0
    return root / "orig"


@pytest.mark.slow
def test_a_branch_at_the_decay_start_is_the_runs_own_decay(original, tmp_path):
    before = tree(original)
    branch = tmp_path / "b25"
    assert train.main(["--branch", str(original / "checkpoints" / "step_00000025"),
                       "--cooldown", "15", "--run-dir", str(branch), "--no-plots"]) == 0
    final = "checkpoints/step_00000040/model.safetensors"
    assert (branch / final).read_bytes() == (original / final).read_bytes()  # same weights
    assert rows(branch) == rows(original)  # every rate and loss, copied rows included
    assert tree(original) == before  # the original run is only read
    assert audit.main([str(branch)]) == 0
    info = json.loads((branch / "branch.json").read_text())
    assert (info["step"], info["cooldown_steps"], info["rate_at_splice"]) == (
        25, 15, pytest.approx(0.2, rel=1e-7))


@pytest.mark.slow
def test_a_cosine_cooldown_from_the_stable_phase(original, tmp_path):
    branch = tmp_path / "b15"
    assert train.main(["--branch", str(original / "checkpoints" / "step_00000015"),
                       "--cooldown", "10", "--cooldown-shape", "cosine",
                       "--run-dir", str(branch), "--no-plots"]) == 0
    got = rows(branch)
    assert [r["step"] for r in got] == list(range(25))
    assert got[:15] == rows(original)[:15]
    # from the rate in force at step 15 (the peak) to 0 at step 25, continuous at the splice
    expected = [0.2 * 0.5 * (1 + math.cos(math.pi * (t - 15) / 10)) for t in range(15, 25)]
    assert [r["learning_rate"] for r in got[15:]] == pytest.approx(expected, rel=1e-6,
                                                                   abs=1e-8)
    assert got[15]["learning_rate"] == got[14]["learning_rate"]
    assert json.loads((branch / "experiment.json").read_text())["training"]["steps"] == 25
    assert audit.main([str(branch)]) == 0


@pytest.mark.parametrize(("extra", "message"), [
    (["--cooldown", "5", "--run-dir", "{orig}"], "outside the original run"),
    (["--run-dir", "{new}"], "--branch and --cooldown go together"),
    (["--cooldown", "0", "--run-dir", "{new}"], "--cooldown: need a positive"),
    (["--cooldown", "5"], "--branch needs --run-dir"),
    (["--cooldown", "5", "--run-dir", "{new}", "--resume", "{orig}"], "not with --resume"),
])
def test_bad_branches_exit_2_and_write_nothing(original, tmp_path, capsys, extra, message):
    before = tree(original)
    args = [a.format(orig=original, new=tmp_path / "new") for a in extra]
    assert train.main(["--branch", str(original / "checkpoints" / "step_00000020"),
                       *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "new").exists() and tree(original) == before


def test_a_checkpoint_of_another_config_is_refused(original, tmp_path, capsys):
    other = tmp_path / "other"
    (other / "checkpoints").mkdir(parents=True)
    config = json.loads((original / "experiment.json").read_text())
    config["optimizer"]["learning_rate"]["peak"] = 0.3  # not the run that saved it
    (other / "experiment.json").write_text(json.dumps(config))
    source = original / "checkpoints" / "step_00000020"
    copy = other / "checkpoints" / "step_00000020"
    copy.mkdir()
    for path in source.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    assert train.main(["--branch", str(copy), "--cooldown", "5",
                       "--run-dir", str(tmp_path / "new")]) == 2
    assert "does not belong to that config" in capsys.readouterr().err
