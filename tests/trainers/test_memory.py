"""Gradient checkpointing and memory options."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from helpers_trainer import classification_data, flat_weights
from mlx.utils import tree_flatten

from trainers import ArrayBatches, Trainer
from trainers.memory import checkpoint_blocks, model_blocks


def stack():
    mx.random.seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.GELU(), nn.Linear(16, 16), nn.GELU(),
                         nn.Linear(16, 3))


def xent(model, x, y):
    return nn.losses.cross_entropy(model(x), y, reduction="mean")


@pytest.mark.parametrize("compile", [False, True])
def test_checkpointed_blocks_train_to_the_same_weights(tmp_path, compile):
    x, y = classification_data(64)
    weights = []
    for flag in (False, True):
        model = stack()
        Trainer(model, xent, optim.Adam(learning_rate=1e-2), ArrayBatches((x, y), 16, seed=1),
                run_dir=None, log=False, checkpoint_every=0, max_steps=6, report_every=0,
                compile=compile, grad_checkpoint=flag).fit()
        weights.append(flat_weights(model))
        if flag:
            assert all(type(b).__name__.startswith("Checkpointed") for b in model.layers)
    for key, value in weights[0].items():
        np.testing.assert_allclose(weights[1][key], value, rtol=1e-5, atol=1e-6)


def test_only_the_given_instances_change_and_names_stay():
    model, other = stack(), stack()
    names = sorted(k for k, _ in tree_flatten(model.parameters()))
    assert checkpoint_blocks(model) == 5
    assert checkpoint_blocks(model) == 5  # idempotent
    assert type(other.layers[0]) is nn.Linear  # another instance of the class is untouched
    assert sorted(k for k, _ in tree_flatten(model.parameters())) == names


def test_blocks_are_found_the_documented_ways():
    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(2, 2), nn.Linear(2, 2)

        def grad_checkpoint_blocks(self):
            return [self.a]

    class Inner(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = [nn.Linear(2, 2), nn.Linear(2, 2)]

    class LikeMlxLm(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = Inner()

    custom = Custom()
    assert model_blocks(custom) == [custom.a]
    assert len(model_blocks(LikeMlxLm())) == 2
    with pytest.raises(ValueError, match="does not say what its blocks are"):
        model_blocks(nn.Linear(2, 2))


def test_memory_limits_are_checked_and_applied(tmp_path):
    x, y = classification_data(32)
    with pytest.raises(ValueError, match="memory_limit must be an integer >= 0"):
        Trainer(stack(), xent, optim.SGD(0.1), ArrayBatches((x, y), 8), run_dir=None,
                log=False, checkpoint_every=0, max_steps=1, memory_limit=-1)
    before = mx.set_cache_limit(0)  # returns the previous limit
    mx.set_cache_limit(before)
    try:
        Trainer(stack(), xent, optim.SGD(0.1), ArrayBatches((x, y), 8), run_dir=None,
                log=False, checkpoint_every=0, max_steps=1, report_every=0, compile=False,
                cache_limit=12345).fit()
        assert mx.set_cache_limit(before) == 12345
    finally:
        mx.set_cache_limit(before)
