"""The progress display: its plain lines (rates, elapsed time and ETA on a controlled clock),
its bar on a terminal, and that the trainer refreshes it with every block of log rows."""

from __future__ import annotations

import io

import mlx.optimizers as optim
import pytest
from helpers_trainer import linear_model, mse, regression_data

import trainers.progress as progress
from trainers import ArrayBatches, Trainer
from trainers.progress import ProgressDisplay


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress.time, "perf_counter", clock)
    return clock


def _values(step: int, **extra) -> dict:
    return {"step": step, "loss": 0.25, "learning_rate": 0.01, "peak_memory": 3 * 2**20,
            **extra}


def test_plain_lines_rate_elapsed_and_eta_on_a_known_clock(clock):
    out = io.StringIO()
    display = ProgressDisplay(100, stream=out, progress=False)
    clock.now += 2.0  # 10 updates in 2 s: 5 steps/s, 90 left -> 18 s
    display(_values(10, samples=64))
    clock.now += 1.0  # 10 more in 1 s: 10 steps/s; smoothed 0.3*10 + 0.7*5 = 6.5 -> 80/6.5
    display(_values(20, samples=64))
    clock.now += 3600.0 + 120.0  # 80 in 3720 s
    display(_values(100, samples=64))
    first, second, last = out.getvalue().splitlines()
    assert first == ("step 10/100 | loss 0.2500 | lr 1.000e-02 | 5.0 steps/s | 320 samples/s "
                     "| elapsed 0:02 | ETA 0:18 | peak mem 3.0 MB")
    assert second.split(" | ")[3:7] == ["10.0 steps/s", "640 samples/s", "elapsed 0:03",
                                       f"ETA 0:{round(80 / 6.5):02d}"]
    assert last.split(" | ")[3:7] == [f"{80 / 3720:.1f} steps/s",
                                     f"{round(80 / 3720 * 64)} samples/s",
                                     "elapsed 1:02:03", "ETA 0:00"]


def test_tokens_per_second_and_an_unknown_length(clock):
    out = io.StringIO()
    display = ProgressDisplay(None, stream=out, progress=False, start_step=40)
    clock.now += 4.0
    display(_values(50, tokens=2000.0, samples=8))  # 2000 tokens in 4 s; tokens beat samples
    clock.now += 1.0
    display(_values(60, tokens=2600.0))
    lines = out.getvalue().splitlines()
    assert lines[0].split(" | ")[:5] == ["step 50", "loss 0.2500", "lr 1.000e-02",
                                        "2.5 steps/s", "500 tok/s"]
    assert lines[1].split(" | ")[3:5] == ["10.0 steps/s", "600 tok/s"]
    assert all("ETA" not in line for line in lines)  # no total, no ETA


def test_a_bar_on_a_terminal_and_messages_above_it():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    display = ProgressDisplay(40, stream=out, start_step=10)
    assert out.getvalue() == ""  # nothing drawn before the first report
    display(_values(20, samples=16))
    display.message("eval @ step 20: eval_loss 0.5000")
    display.close()
    text = out.getvalue()
    assert "\r" in text and "20/40" in text and "loss 0.2500" in text
    assert "eval @ step 20: eval_loss 0.5000\n" in text
    assert "samples/s" in text and "mem 3.0 MB" in text
    assert text.endswith("\n")


def test_the_trainer_refreshes_the_display_with_every_block(tmp_path):
    out = io.StringIO()
    x, y = regression_data(64, 4, 2)
    Trainer(linear_model(4, 2), mse, optim.SGD(learning_rate=0.05), ArrayBatches((x, y), 8),
            run_dir=tmp_path, max_steps=12, log_every=4, stream=out, compile=False).fit()
    steps = [line.split(" | ")[0] for line in out.getvalue().splitlines()]
    assert steps == ["step 4/12", "step 8/12", "step 12/12"]  # report_every defaults to it
    for line in out.getvalue().splitlines():  # 8 samples per update, at the line's rate
        fields = line.split(" | ")
        rate = float(fields[3].removesuffix(" steps/s"))
        assert float(fields[4].removesuffix(" samples/s")) == pytest.approx(8 * rate, abs=1)
