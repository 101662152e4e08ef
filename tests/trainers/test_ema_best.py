"""Averaged (EMA) weights and the best evaluation's checkpoint."""

from __future__ import annotations

import os

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np
import pytest
from helpers_trainer import MLP, classification_data, flat_weights, read_jsonl, xent
from mlx.utils import tree_flatten

from trainers import ArrayBatches, Trainer, list_checkpoints
from trainers.checkpoint import verify_checkpoint


def make(run_dir, *, steps=8, callbacks=(), rate=None, **kw):
    mx.random.seed(0)
    x, y = classification_data(64)
    model = MLP(hidden=8)
    opt = optim.SGD(learning_rate=rate or optim.cosine_decay(0.5, steps), momentum=0.9)
    trainer = Trainer(model, xent, opt, ArrayBatches((x, y), 16, seed=1), run_dir=run_dir,
                      max_steps=steps, eval_data=[(x, y)], log_every=1, report_every=0,
                      compile=False, callbacks=list(callbacks), **kw)
    return trainer, model


def test_ema_equals_a_numpy_average_of_the_weights_after_each_update(tmp_path):
    decay = 0.8
    after_update = [None]  # the weights right after update t (rows arrive one per block)

    def record(event):
        if event["event"] == "train":
            after_update.append(flat_weights(model))

    trainer, model = make(tmp_path, ema=decay, eval_every=4, callbacks=[record])
    after_update[0] = flat_weights(model)
    trainer.fit()
    average = {k: v.astype(np.float64) for k, v in after_update[0].items()}
    for weights in after_update[1:]:
        average = {k: decay * average[k] + (1 - decay) * weights[k] for k in average}
    ema = {k: np.array(v) for k, v in tree_flatten(trainer.train_state["ema"])}
    for key, value in average.items():
        np.testing.assert_allclose(ema[key], value, rtol=1e-5, atol=1e-6)
    # both the raw and the averaged metrics are logged at every evaluation
    evals = [r for r in read_jsonl(tmp_path / "log.jsonl") if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [4, 8]
    assert all({"eval_loss", "ema_eval_loss"} <= set(r) for r in evals)
    assert evals[-1]["eval_loss"] != evals[-1]["ema_eval_loss"]
    # the EMA evaluation is the evaluation of the averaged weights
    x, y = classification_data(64)
    own = model.trainable_parameters()
    model.update(trainer.train_state["ema"])
    direct = xent(model, mx.array(x), mx.array(y)).item()
    model.update(own)
    assert evals[-1]["ema_eval_loss"] == pytest.approx(direct, rel=1e-5)


def test_ema_is_saved_and_resumed_exactly(tmp_path):
    reference, _ = make(tmp_path / "ref", ema=0.9, eval_every=4, checkpoint_every=4)
    reference.fit()
    stopped, _ = make(tmp_path / "run", ema=0.9, eval_every=4, checkpoint_every=4,
                      callbacks=[lambda e: "pause" if e.get("step") == 3 and
                                 e["event"] == "train" else None])
    stopped.fit()
    assert stopped.step == 4
    resumed, _ = make(tmp_path / "run", ema=0.9, eval_every=4, checkpoint_every=4)
    resumed.fit(resume=True)
    for name in ("log.jsonl", "log.csv"):
        assert (tmp_path / "run" / name).read_bytes() == (tmp_path / "ref" / name).read_bytes()
    last = "checkpoints/step_00000008/train_state.safetensors"
    assert (tmp_path / "run" / last).read_bytes() == (tmp_path / "ref" / last).read_bytes()


def test_keep_best_holds_the_best_evaluations_weights_and_restore_best_loads_them(tmp_path):
    snapshots = {}

    def record(event):
        if event["event"] == "eval":
            snapshots[event["step"]] = (event["eval_loss"], flat_weights(model))

    # a rate rising to 2.0 makes the evaluation loss worse after step 6
    rising = optim.linear_schedule(0.2, 2.0, 12)
    trainer, model = make(tmp_path, steps=12, eval_every=2, checkpoint_every=4, rate=rising,
                          keep_best=("eval_loss", "min"), callbacks=[record])
    result = trainer.fit()
    best_step = min(snapshots, key=lambda s: snapshots[s][0])
    assert best_step < 12  # with this rate the last evaluation is not the best one
    assert result["best_step"] == best_step
    assert result["best_value"] == snapshots[best_step][0]
    best = [s for s, _ in list_checkpoints(tmp_path / "best")]
    assert best == [best_step]  # only the best is kept there, apart from the last K
    path = tmp_path / "best" / f"step_{best_step:08d}"
    verify_checkpoint(str(path))
    saved = mx.load(str(path / "model.safetensors"))
    for key, value in snapshots[best_step][1].items():
        np.testing.assert_array_equal(np.array(saved[key]), value)
    assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints")][-1] == 12

    restored, restored_model = make(tmp_path / "again", steps=12, eval_every=2,
                                    checkpoint_every=4, keep_best=("eval_loss", "min"),
                                    restore_best=True, rate=rising)
    restored.fit()
    for key, value in snapshots[best_step][1].items():
        np.testing.assert_array_equal(flat_weights(restored_model)[key], value)
    # the last checkpoint still holds the last weights, not the best ones
    last = mx.load(str(tmp_path / "again" / "checkpoints" / "step_00000012" /
                       "model.safetensors"))
    assert any(not np.array_equal(np.array(last[k]), v)
               for k, v in snapshots[best_step][1].items())


def test_keep_best_names_a_logged_metric(tmp_path):
    with pytest.raises(ValueError, match="keep_best must name an evaluation column"):
        make(tmp_path, keep_best=("eval_accuracy", "max"))
    with pytest.raises(ValueError, match="keep_best\\[1\\] must be one of"):
        make(tmp_path, keep_best=("eval_loss", "lowest"))
    with pytest.raises(ValueError, match="restore_best=True needs keep_best"):
        make(tmp_path, restore_best=True)
    assert not os.path.exists(tmp_path / "config.json")
