"""``eval_at_start``: an evaluation before the first update (mlx-lm's trainer reports one)."""

from __future__ import annotations

import json

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np
import pytest
from helpers_trainer import MLP, classification_data, read_jsonl, xent

import mlx_schedules
from trainers import PAUSE, ArrayBatches, Trainer, audit_run


def make(run_dir, callbacks=(), **kw):
    mx.random.seed(0)
    x, y = classification_data(48)
    model = MLP(hidden=8)
    opt = optim.SGD(learning_rate=mlx_schedules.cosine_decay(0.3, 12), momentum=0.9)
    trainer = Trainer(model, xent, opt, ArrayBatches((x, y), 8, seed=1), run_dir=run_dir,
                      max_steps=12, eval_data=[(x, y)], eval_every=4, checkpoint_every=4,
                      log_every=2, report_every=0, compile=False, eval_at_start=True,
                      callbacks=list(callbacks), **kw)
    return trainer, model, (x, y)


def test_the_first_row_is_the_untrained_models_evaluation(tmp_path):
    trainer, model, (x, y) = make(tmp_path / "run")
    # the untrained model's loss, computed before fit, in float64 from its logits
    logits = np.array(model(mx.array(x)), np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    untrained = -log_probs[np.arange(len(y)), y].mean()
    trainer.fit()
    rows = read_jsonl(tmp_path / "run" / "log.jsonl")
    assert rows[0]["kind"] == "eval" and rows[0]["step"] == 0
    assert rows[0]["eval_loss"] == pytest.approx(untrained, rel=1e-5)
    assert [r["step"] for r in rows if r["kind"] == "eval"] == [0, 4, 8, 12]
    assert [r["step"] for r in rows if r["kind"] == "train"] == list(range(12))
    assert audit_run(tmp_path / "run").ok


def test_a_resume_does_not_repeat_it_and_the_logs_match_an_unbroken_run(tmp_path):
    make(tmp_path / "whole")[0].fit()

    def pause(event):  # stops at step 4, an evaluation and checkpoint step anyway
        return PAUSE if event["event"] == "train" and event["step"] == 3 else None

    paused = make(tmp_path / "split", [pause])[0]
    paused.fit()
    assert paused.step == 4
    make(tmp_path / "split")[0].fit(resume=True)
    for name in ("log.jsonl", "log.csv"):
        assert (tmp_path / "split" / name).read_bytes() == \
            (tmp_path / "whole" / name).read_bytes()


def test_a_callback_can_stop_at_the_first_evaluation(tmp_path):
    def stop(event):
        return PAUSE if event["event"] == "eval" and event["step"] == 0 else None

    trainer, _, _ = make(tmp_path / "run", [stop])
    trainer.fit()
    assert trainer.step == 0
    rows = read_jsonl(tmp_path / "run" / "log.jsonl")
    assert [(r["kind"], r["step"]) for r in rows] == [("eval", 0)]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["eval_at_start"] is True


def test_eval_at_start_needs_eval_data(tmp_path):
    x, y = classification_data(16)
    with pytest.raises(ValueError, match="eval_at_start=True but eval_data is missing"):
        Trainer(MLP(), xent, optim.SGD(0.1), ArrayBatches((x, y), 8), run_dir=None, log=False,
                checkpoint_every=0, max_steps=2, eval_at_start=True)
    with pytest.raises(TypeError, match="eval_at_start"):
        Trainer(MLP(), xent, optim.SGD(0.1), ArrayBatches((x, y), 8), run_dir=None, log=False,
                checkpoint_every=0, max_steps=2, eval_data=[(x, y)], eval_at_start="yes")
