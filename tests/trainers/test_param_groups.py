"""Parameter groups (mlx.optimizers.MultiOptimizer): per-group columns, plateau, resume."""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from helpers_trainer import MLP, classification_data, flat_weights, read_jsonl, xent
from mlx.utils import tree_flatten, tree_unflatten

from mlx_schedules import cosine_decay, linear_schedule, schedule_hyperparameters
from mlx_schedules._mlx_compat import schedules_of
from trainers import PAUSE, ArrayBatches, ReduceLROnPlateau, Trainer, weight_decay_groups

STEPS = 10


def groups():
    """Biases at a linear rate with SGD + cosine momentum; weights at a cosine rate."""
    biases = optim.SGD(learning_rate=linear_schedule(0.02, 0.0, STEPS), momentum=0.9)
    schedule_hyperparameters(biases, momentum=cosine_decay(0.9, STEPS, 0.5))
    weights = optim.AdamW(learning_rate=cosine_decay(0.01, STEPS), weight_decay=0.05)
    return optim.MultiOptimizer([biases, weights], [lambda path, _: path.endswith("bias")])


def make(run_dir, optimizer, log_every=4, **kw):
    mx.random.seed(0)
    x, y = classification_data(64)
    model = MLP(hidden=8)
    return Trainer(model, xent, optimizer, ArrayBatches((x, y), 16, seed=1), run_dir=run_dir,
                   max_steps=STEPS, report_every=0, log_every=log_every, compile=False,
                   **kw), model


def test_each_group_logs_its_own_schedules(tmp_path):
    trainer, _ = make(tmp_path, groups())
    trainer.fit()
    rows = [r for r in read_jsonl(tmp_path / "log.jsonl") if r["kind"] == "train"]
    assert set(rows[0]) >= {"learning_rate/0", "momentum/0", "learning_rate/1"}
    assert "learning_rate" not in rows[0]
    for t, row in enumerate(rows):
        lr0 = 0.02 * (1 - t / STEPS)
        lr1 = 0.01 * 0.5 * (1 + math.cos(math.pi * t / STEPS))
        momentum = 0.5 + 0.4 * 0.5 * (1 + math.cos(math.pi * t / STEPS))
        assert row["learning_rate/0"] == pytest.approx(lr0, rel=1e-6, abs=1e-9)
        assert row["learning_rate/1"] == pytest.approx(lr1, rel=1e-6, abs=1e-9)
        assert row["momentum/0"] == pytest.approx(momentum, rel=1e-6)


def test_plateau_scales_every_group():
    opt = groups()
    plateau = ReduceLROnPlateau(opt, patience=0, factor=0.5)
    for value in (1.0, 1.0, 1.0):  # two evaluations without improvement: factor 0.25
        plateau({"event": "eval", "eval_loss": value})
    assert [o.state["lr_factor"].item() for o in opt.optimizers] == [0.25, 0.25]
    for inner, expected in zip(opt.optimizers, (0.02 * 0.25, 0.01 * 0.25), strict=True):
        rate = schedules_of(inner)["learning_rate"](mx.array(0, mx.uint64))
        assert rate.item() == pytest.approx(expected, rel=1e-6)


def test_multioptimizer_resumes_exactly(tmp_path):
    reference, reference_model = make(tmp_path / "ref", groups(), checkpoint_every=3)
    reference.fit()
    stop_at_6 = lambda e: PAUSE if e["event"] == "train" and e["step"] == 5 else None  # noqa: E731
    crashed, _ = make(tmp_path / "run", groups(), log_every=3, checkpoint_every=3,
                      callbacks=[stop_at_6])
    crashed.fit()  # stops after update 6, with its checkpoint
    assert crashed.step == 6
    resumed, model = make(tmp_path / "run", groups(), checkpoint_every=3)
    resumed.fit(resume=True)
    for key, value in flat_weights(reference_model).items():
        np.testing.assert_array_equal(flat_weights(model)[key], value)
    ref_rows = [r for r in read_jsonl(tmp_path / "ref" / "log.jsonl") if r["kind"] == "train"]
    rows = [r for r in read_jsonl(tmp_path / "run" / "log.jsonl") if r["kind"] == "train"]
    assert rows == ref_rows


def test_weight_decay_groups_split_biases_norms_and_embeddings():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(16, 8)
            self.proj = nn.Linear(8, 8)
            self.norm = nn.RMSNorm(8)
            self.head = nn.Linear(8, 4, bias=False)

        def __call__(self, x):
            return self.head(self.norm(self.proj(self.embed(x))))

    model = Net()
    opt = weight_decay_groups(model, optim.AdamW(1e-2, weight_decay=0.5),
                              optim.AdamW(1e-2, weight_decay=0.0))
    paths = [p for p, _ in tree_flatten(model.parameters())]
    no_decay = sorted(p for p, w in tree_flatten(model.parameters()) if opt.filters[0](p, w))
    assert no_decay == ["embed.weight", "norm.weight", "proj.bias"]
    assert sorted(set(paths) - set(no_decay)) == ["head.weight", "proj.weight"]
    # one update with zero gradients: only the decayed group shrinks
    before = {p: np.array(w) for p, w in tree_flatten(model.parameters())}
    zeros = {k: mx.zeros_like(v) for k, v in tree_flatten(model.trainable_parameters())}
    opt.update(model, tree_unflatten(list(zeros.items())))
    after = {p: np.array(w) for p, w in tree_flatten(model.parameters())}
    for p in paths:
        if p in no_decay:
            np.testing.assert_array_equal(after[p], before[p])
        else:
            np.testing.assert_allclose(after[p], before[p] * (1 - 1e-2 * 0.5), rtol=1e-6)
