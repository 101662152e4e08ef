"""Mixed precision: bf16/fp16 compute on float32 master weights and optimizer state, and
float16 loss scaling that skips an overflowing update without moving the step counter."""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from helpers_trainer import classification_data, read_jsonl
from mlx.utils import tree_flatten

from trainers import ArrayBatches, Trainer
from trainers.step import make_train_step
from trainers.train_state import init_train_state


class Probe(nn.Module):
    """A two-layer net that records the dtype its hidden activations had at trace time."""

    def __init__(self):
        super().__init__()
        self.l1, self.l2 = nn.Linear(6, 16), nn.Linear(16, 3)
        self.seen: list = []

    def __call__(self, x):
        h = nn.relu(self.l1(x))
        self.seen.append(h.dtype)
        return self.l2(h)


def xent(model, x, y):
    return nn.losses.cross_entropy(model(x), y, reduction="mean")


def run(tmp_path, precision, steps=6, batches=None):
    mx.random.seed(0)
    x, y = classification_data(64)
    model = Probe()
    opt = optim.AdamW(learning_rate=1e-2, weight_decay=0.01)
    data = batches if batches is not None else ArrayBatches((x, y), 16, seed=1)
    trainer = Trainer(model, xent, opt, data, run_dir=tmp_path, max_steps=steps,
                      log_every=1, report_every=0, precision=precision, checkpoint_every=3)
    trainer.fit()
    return trainer, model, opt


@pytest.mark.parametrize("precision, compute", [("bfloat16", mx.bfloat16),
                                                ("float16", mx.float16)])
def test_low_precision_computes_in_its_dtype_and_keeps_float32_masters(tmp_path, precision,
                                                                       compute):
    trainer, model, opt = run(tmp_path, precision)
    assert model.seen and set(model.seen) == {compute}  # the forward ran in the compute dtype
    for name, weight in tree_flatten(model.parameters()):
        assert weight.dtype == mx.float32, name
    for name, value in tree_flatten(opt.state):
        if name not in ("step",):
            assert value.dtype == mx.float32, name
    # what the checkpoint holds is the float32 masters and state
    ckpt = tmp_path / "checkpoints" / "step_00000006"
    assert {v.dtype for v in mx.load(str(ckpt / "model.safetensors")).values()} == {mx.float32}
    saved = mx.load(str(ckpt / "optimizer.safetensors"))
    assert {v.dtype for k, v in saved.items() if k != "step"} == {mx.float32}
    rows = [r for r in read_jsonl(tmp_path / "log.jsonl") if r["kind"] == "train"]
    assert rows[-1]["loss"] < rows[0]["loss"]  # it trains


def test_bf16_update_is_the_float32_update_of_bf16_gradients():
    """One SGD step: master - lr * float32(gradient of the bf16 forward), the gradient written
    out by hand here (mse of a linear layer) on bf16 copies of weights and inputs."""
    mx.random.seed(1)
    model = nn.Linear(4, 1)
    x = mx.random.normal((8, 4))
    y = mx.random.normal((8, 1))
    w0, b0 = model.weight, model.bias
    opt = optim.SGD(learning_rate=0.5)
    opt.init(model.trainable_parameters())
    mse = lambda m, x, y: nn.losses.mse_loss(m(x), y)  # noqa: E731
    state = init_train_state(model, precision="bfloat16")
    step = make_train_step(model, mse, opt, precision="bfloat16", train_state=state,
                           compile=False)
    step((x, y))
    bf = mx.bfloat16
    xb, wb, bb, yb = x.astype(bf), w0.astype(bf), b0.astype(bf), y.astype(bf)
    diff = xb @ wb.T + bb - yb  # the bf16 forward
    grad_w = (2.0 / 8) * (diff.T @ xb)  # d mean((x w^T + b - y)^2) / dw, in bf16
    grad_b = (2.0 / 8) * diff.sum(0)
    want_w = w0 - 0.5 * grad_w.astype(mx.float32)
    want_b = b0 - 0.5 * grad_b.astype(mx.float32)
    assert model.weight.dtype == mx.float32
    np.testing.assert_allclose(np.array(model.weight), np.array(want_w), rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.array(model.bias), np.array(want_b), rtol=0, atol=1e-6)
    # and it is not the float32 update (which differs by ~1e-3 here)
    grad32_w = (2.0 / 8) * ((x @ w0.T + b0 - y).T @ x)
    f32_w = np.array(w0 - 0.5 * grad32_w)
    assert np.abs(np.array(model.weight) - f32_w).max() > 1e-4


def test_float16_skips_an_overflowing_update_without_moving_the_step(tmp_path):
    x, y = classification_data(64)
    batches = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]
    bad = 2
    # 1e5 overflows float16 (max 65504): that update's gradients are not finite
    batches[bad] = (np.full_like(batches[bad][0], 1e5), batches[bad][1])
    trainer, model, opt = run(tmp_path, "float16", steps=4, batches=batches)
    rows = [r for r in read_jsonl(tmp_path / "log.jsonl") if r["kind"] == "train"]
    assert [r["skipped"] for r in rows] == [0.0, 0.0, 1.0, 0.0]
    scales = [r["loss_scale"] for r in rows]
    assert scales == [2.0**15, 2.0**15, 2.0**15, 2.0**14]  # halved after the overflow
    # three real updates: the step counter (and with it every schedule) moved three times
    assert opt.state["step"].item() == 3
    for _, weight in tree_flatten(model.parameters()):
        assert bool(mx.all(mx.isfinite(weight)))
    assert math.isfinite(rows[-1]["loss"])
