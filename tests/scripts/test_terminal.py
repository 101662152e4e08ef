"""What a user of ``mlx-schedules train`` sees in the terminal (issue 17, item 5): the progress
display at the log cadence, Ctrl-C (a clean stop, the exact resume command, exit 130, and a
resume byte-identical to an uninterrupted run), the resume banner, and errors in the command
line's own words, all of them at once."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys

import pytest
from helpers_scripts import ROOT, load_script

train = load_script("train")
TINY = ["--no-plots", "--set", "model.hidden=[16]"]


def _log_rows(run_dir, kind="train") -> list[dict]:
    with open(os.path.join(run_dir, "log.jsonl"), encoding="utf-8") as f:
        return [row for row in map(json.loads, f) if row["kind"] == kind]


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "trainers.cli", "train", *args]


def _env() -> dict[str, str]:
    # one BLAS thread: the three processes compared byte for byte round alike
    return dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONHASHSEED="0")


# ---------------------------------------------------------------------------- the display
def test_plain_lines_come_at_the_log_cadence_with_rate_loss_elapsed_and_eta(tmp_path, capsys):
    run = tmp_path / "run"
    assert train.main(["--steps", "20", "--log-every", "5", "--run-dir", str(run), *TINY]) == 0
    out = capsys.readouterr().out.splitlines()
    lines = [line for line in out if line.startswith("step ")]
    assert [line.split(" | ")[0] for line in lines] == ["step 5/20", "step 10/20",
                                                        "step 15/20", "step 20/20"]
    rows = _log_rows(run)
    pattern = re.compile(r"step (\d+)/20 \| loss (\S+) \| lr \S+ \| ([\d.]+) steps/s \| "
                         r"(\d+) samples/s \| elapsed (\d+):(\d\d) \| ETA (\d+):(\d\d) \| "
                         r"peak mem [\d.]+ MB$")
    elapsed = []
    for line in lines:
        match = pattern.match(line)
        assert match, line
        step = int(match[1])
        assert match[2] == f"{rows[step - 1]['loss']:.4f}"  # the block's last row
        rate, samples = float(match[3]), int(match[4])
        assert rate > 0
        # 64 samples per update (the default batch), at the line's own rate
        assert abs(samples - 64 * rate) <= 64 * 0.05 + 1, line
        elapsed.append(int(match[5]) * 60 + int(match[6]))
    assert elapsed == sorted(elapsed)
    assert lines[-1].endswith("| ETA 0:00 | " + lines[-1].split(" | ETA 0:00 | ")[-1])
    # the banner comes first, once the run has started
    assert out[0].startswith("training mlp on digits with SGD") and out[0].endswith(f"-> {run}")


# ---------------------------------------------------------------------------- Ctrl-C
@pytest.mark.slow
def test_sigint_at_a_random_step_stops_cleanly_and_the_resume_is_byte_identical(tmp_path):
    steps, every = 1000, 5
    k = random.Random().randrange(every, 150, every)  # a step the log shows, chosen at random
    args = ["--steps", str(steps), "--log-every", str(every), "--set", "training.eval_every=500",
            "--set", "training.checkpoint_every=500", *TINY]
    split, whole = tmp_path / "split", tmp_path / "whole"
    process = subprocess.Popen(_command(*args, "--run-dir", str(split)), cwd=ROOT, env=_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    shown = []
    for line in process.stdout:
        shown.append(line)
        if line.startswith(f"step {k}/"):
            process.send_signal(signal.SIGINT)
            break
    out, err = process.communicate(timeout=300)
    assert process.returncode == 130, (k, err)
    assert "Traceback" not in err
    stopped = int(re.search(r"interrupted after (\d+) steps: checkpoint saved", err)[1])
    assert k <= stopped < steps, (k, err)
    assert f"Continue the run with:\n  mlx-schedules train --resume {split}\n" in err
    # every finished update is logged, the checkpoint holds the stop, no evaluation was added
    assert [r["step"] for r in _log_rows(split)] == list(range(stopped))
    assert f"step_{stopped:08d}" in os.listdir(split / "checkpoints")
    assert all(r["step"] % 500 == 0 for r in _log_rows(split, "eval"))
    summary = json.loads((split / "summary.json").read_text())
    assert summary["stopped_at"] == stopped and summary["interrupted"] is True

    resumed = subprocess.run(_command("--resume", str(split)), cwd=ROOT, env=_env(),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    banner = resumed.stdout.splitlines()[0]
    assert banner.startswith(f"resuming {split} from step {stopped} of {steps}: "), banner
    complete = subprocess.run(_command(*args, "--run-dir", str(whole)), cwd=ROOT, env=_env(),
                              capture_output=True, text=True, timeout=300)
    assert complete.returncode == 0, complete.stderr
    for name in ("log.jsonl", "log.csv",
                 os.path.join("checkpoints", f"step_{steps:08d}", "model.safetensors"),
                 os.path.join("checkpoints", f"step_{steps:08d}", "optimizer.safetensors")):
        assert (split / name).read_bytes() == (whole / name).read_bytes(), (k, stopped, name)
    assert "interrupted" not in json.loads((split / "summary.json").read_text())


def test_train_lm_names_its_resume_command_after_ctrl_c(tmp_path, capsys, monkeypatch):
    pytest.importorskip("mlx_lm")
    import trainers
    from trainers import TrainingInterrupted

    def interrupted(self, **kwargs):  # the trainer started, then stopped at step 12
        os.makedirs(self.run_dir)
        for callback in self.callbacks:
            callback({"event": "start", "step": 0, "resumed": False, "run_dir": self.run_dir})
        raise TrainingInterrupted(12, os.path.join(self.run_dir, "checkpoints", "x"), 12)

    monkeypatch.setattr(trainers.Trainer, "fit", interrupted)
    run = tmp_path / "my run"
    code = load_script("train_lm").main(["--preset", "tiny", "--steps", "20", "--no-plots",
                                         "--run-dir", str(run)])
    assert code == 130
    captured = capsys.readouterr()
    assert captured.out.startswith("training llama 'tiny'")
    assert (f"interrupted after 12 steps: checkpoint saved. Continue the run with:\n"
            f"  mlx-schedules train-lm --resume '{run}'\n") in captured.err
    assert not (run / "summary.json").exists()  # an interrupted run is not finished


# ---------------------------------------------------------------------------- errors
def test_a_config_with_three_typos_reports_all_three(tmp_path, capsys):
    config = {"trainig": {"steps": 10}, "model": {"hiden": [16]},
              "optimizer": {"name": "Adamm", "learning_rate": 0.1}}
    path = tmp_path / "typos.json"
    path.write_text(json.dumps(config))
    assert train.main(["--config", str(path), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("config error: 3 problems in the config:\n")
    problems = err.splitlines()[1:]
    assert [p.strip().split(":")[0].split(" ")[0] for p in problems] == \
        ["trainig", "model.hiden", "optimizer.name"]
    assert "got 'Adamm'" in problems[2]
    assert not (tmp_path / "run").exists()


def test_bad_values_and_unknown_names_together(tmp_path, capsys):
    assert train.main(["--set", "training.batch_size=0", "--set", "model.dropout=\"x\"",
                       "--set", "output.plot=false", "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    for field in ("output.plot: unknown field", "training.batch_size must be",
                  "model.dropout must be"):
        assert f"\n  {field}" in err, err


def test_train_lm_reports_every_wrong_flag_at_once(tmp_path, capsys):
    pytest.importorskip("mlx_lm")
    run = tmp_path / "run"
    assert load_script("train_lm").main(["--steps", "3", "--batch-size", "0", "--ema", "1.5",
                                         "--lora-rank", "4", "--run-dir", str(run)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: --steps must be an int >= 8, got 3",
        "error: --batch-size must be an int >= 1, got 0",
        "error: --lora-rank needs --model-path (adapters adapt a saved model)",
        "error: --ema must be a finite number in [0.0, 1.0), got 1.5"]
    assert not run.exists()


@pytest.mark.parametrize("subcommand", ["train", "train-lm"])
def test_resume_of_a_missing_directory_says_it_does_not_exist(tmp_path, capsys, subcommand):
    if subcommand == "train-lm":
        pytest.importorskip("mlx_lm")
    from trainers.cli import main

    missing = tmp_path / "nonexistent"
    assert main([subcommand, "--resume", str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"--resume: run directory {missing} does not exist" in err
    assert "experiment.json" not in err


def test_an_occupied_run_directory_is_refused_in_flag_words_before_any_banner(tmp_path,
                                                                              capsys):
    run = tmp_path / "run"
    assert train.main(["--steps", "10", "--run-dir", str(run), *TINY]) == 0
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    capsys.readouterr()
    assert train.main(["--steps", "10", "--run-dir", str(run), *TINY]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no banner claiming that training started
    assert captured.err == (f"error: run directory {run} already holds a run; pass --overwrite "
                            f"to replace it, or --resume {run} to continue it\n")
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before


def test_trainer_messages_are_put_in_flag_words(tmp_path):
    """The trainer's own refusals, as the subcommands print them (a refusal that comes from
    the trainer itself, e.g. after a race, or a run without a usable checkpoint)."""
    from trainers.cli.messages import in_flag_words
    from trainers.errors import CheckpointError
    from trainers.run_dir import RunDirectory

    run = tmp_path / "run"
    (run / "checkpoints" / "step_00000004").mkdir(parents=True)  # a broken checkpoint
    directory = RunDirectory(run)
    directory.record("checkpoints")  # the trainer wrote it
    with pytest.raises(ValueError) as refused:
        directory.refuse_if_occupied(False, False)
    with pytest.raises(CheckpointError) as broken:
        directory.checkpoint_to_resume()
    for error in (refused.value, broken.value):
        words = in_flag_words(str(error), str(run))
        assert "=True" not in words and "--overwrite" in words, words
    assert f"--resume {run} to continue" in in_flag_words(str(refused.value), str(run))


def test_ctrl_c_outside_a_run_exits_130_without_a_traceback(capsys, monkeypatch):
    """Ctrl-C while a subcommand loads its data (no run to resume yet)."""
    from trainers.cli import main

    def interrupted(argv):
        raise KeyboardInterrupt

    monkeypatch.setattr(load_script("plot_schedules"), "main", interrupted)
    assert main(["plot", "--text"]) == 130
    assert capsys.readouterr().err == "\nmlx-schedules plot: interrupted\n"
