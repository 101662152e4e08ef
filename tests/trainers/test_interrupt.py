"""Ctrl-C in ``Trainer.fit``: a clean stop at the step boundary with a checkpoint, a second
Ctrl-C that aborts at once, the handler given back, and a resume equal to the uninterrupted
run."""

from __future__ import annotations

import os
import signal
import threading

import mlx.optimizers as optim
import pytest
from helpers_trainer import linear_model, mse, regression_data

from trainers import ArrayBatches, Trainer, TrainingInterrupted
from trainers.interrupt import Interrupt


def _trainer(run_dir, callbacks=(), **kwargs) -> Trainer:
    x, y = regression_data(64, 4, 2)
    kwargs = {"max_steps": 20, "log_every": 3, "eval_every": 5, "checkpoint_every": 10,
              "report_every": 0, "compile": False, **kwargs}
    return Trainer(linear_model(4, 2), mse, optim.SGD(learning_rate=0.05, momentum=0.9),
                   ArrayBatches((x, y), 8, seed=1), run_dir=run_dir, eval_data=[(x, y)],
                   callbacks=list(callbacks), **kwargs)


class CtrlC:
    """A callback pressing Ctrl-C (SIGINT to this process) when the row of ``step`` arrives,
    ``times`` times in a row; it records every event."""

    def __init__(self, step: int, times: int = 1):
        self.step, self.times, self.events = step, times, []

    def __call__(self, event: dict) -> None:
        self.events.append(event)
        if event["event"] == "train" and event["step"] == self.step:
            for _ in range(self.times):
                os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_stops_at_the_block_boundary_with_a_checkpoint_and_resumes_exactly(tmp_path):
    press = CtrlC(step=6)  # in the block of rows 6..8: the run stops after 9 updates
    split = tmp_path / "split"
    with pytest.raises(TrainingInterrupted) as stopped:
        _trainer(split, [press]).fit()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # given back
    assert (stopped.value.step, stopped.value.checkpoint_step) == (9, 9)
    assert stopped.value.checkpoint == str(split / "checkpoints" / "step_00000009")
    kinds = [e["event"] for e in press.events]
    assert kinds[-2:] == ["checkpoint", "interrupted"] and "end" not in kinds
    assert press.events[-1] == {"event": "interrupted", "step": 9}
    # no evaluation at the stop (an uninterrupted run has none at step 9)
    assert [e["step"] for e in press.events if e["event"] == "eval"] == [5]

    _trainer(split).fit(resume=True)
    whole = tmp_path / "whole"
    _trainer(whole).fit()
    for name in ("log.jsonl", "log.csv", os.path.join("checkpoints", "step_00000020",
                                                      "model.safetensors")):
        assert (split / name).read_bytes() == (whole / name).read_bytes(), name


def test_a_second_ctrl_c_aborts_at_once(tmp_path):
    press = CtrlC(step=6, times=2)
    with pytest.raises(KeyboardInterrupt) as aborted:
        _trainer(tmp_path, [press]).fit()
    assert not isinstance(aborted.value, TrainingInterrupted)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    # aborted inside the callback: no checkpoint of the stop, no further event
    assert press.events[-1] == {**press.events[-1], "event": "train", "step": 6}
    assert not (tmp_path / "checkpoints").exists() or not os.listdir(tmp_path / "checkpoints")


def test_an_interrupt_during_the_last_block_finishes_the_run(tmp_path):
    press = CtrlC(step=18)  # the final block holds rows 18 and 19: the run is complete
    result = _trainer(tmp_path, [press]).fit()
    assert result["step"] == 20 and press.events[-1]["event"] == "end"


def test_without_checkpoints_the_interrupt_names_none(tmp_path):
    with pytest.raises(TrainingInterrupted) as stopped:
        _trainer(tmp_path, [CtrlC(step=1)], checkpoint_every=0).fit()  # rows 0..2: stop at 3
    assert stopped.value.checkpoint is None and stopped.value.step == 3
    assert "no checkpoint was saved" in str(stopped.value)


def test_the_handler_is_taken_only_in_the_main_thread_and_when_not_ignored():
    held = {}

    def in_thread():
        interrupt = Interrupt.install()
        held["thread"] = signal.getsignal(signal.SIGINT) is signal.default_int_handler
        interrupt.restore()

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    assert held["thread"]  # untouched from another thread

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        interrupt = Interrupt.install()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # an ignored SIGINT stays so
        interrupt.restore()
    finally:
        signal.signal(signal.SIGINT, previous)

    interrupt = Interrupt.install(enabled=False)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert interrupt.requested is False
