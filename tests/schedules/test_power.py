"""The power scheduler (Shen et al. 2024) against the paper's formula in float64, inside a
compiled training step, and as data."""

from __future__ import annotations

import json
from functools import partial

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
import schedule_reference as ref
from schedule_reference import assert_close

import mlx_schedules as ms

# The paper's runs: 1024 sequences of 4096 tokens per step, a = 4, b = -0.51, cap 0.02,
# warmup over 1B tokens (here 238 steps), exponential decay over the last 10%.
PAPER = {"batch_size": 1024, "tokens_per_step": 1024 * 4096, "a": 4.0, "b": -0.51,
         "max_lr": 0.02, "warmup_steps": 238, "decay_steps": 2_000, "total_steps": 20_000}
# A small run where the cap holds for a while after the warmup, and a linear decay.
SMALL = {"batch_size": 8, "tokens_per_step": 8 * 256, "a": 2.0, "b": -0.45, "max_lr": 0.05,
         "warmup_steps": 10, "decay_steps": 40, "total_steps": 200, "decay_shape": "linear"}


def _twenty_steps(warmup, decay_start, total):
    """20 steps: the warmup's start and end, the decay's start and end, their neighbours,
    and steps in between and far past the end."""
    steps = [0, 1, warmup - 1, warmup, warmup + 1, (warmup + decay_start) // 2,
             decay_start - 1, decay_start, decay_start + 1, (decay_start + total) // 2,
             total - 2, total - 1, total, total + 1, 2 * total, 10**6, 2**24 + 1, 10**12,
             2**40, 2**62]
    assert len(set(steps)) == 20
    return steps


@pytest.mark.parametrize("params", [PAPER, SMALL], ids=["paper", "small-linear"])
def test_matches_the_papers_formula(params):
    steps = _twenty_steps(params["warmup_steps"], params["total_steps"] - params["decay_steps"],
                          params["total_steps"])
    schedule = ms.power_schedule(**params)
    want = [ref.power_scheduler(t, **params) for t in steps]
    assert_close(schedule.values(steps), want, params["max_lr"], steps)
    # the endpoints: 0 at step 0 (warmup) and from the end on, exactly
    values = schedule.values([0, params["total_steps"], 2**62]).tolist()
    assert values == [0.0, 0.0, 0.0]


def test_power_law_without_warmup_or_decay_runs_for_ever():
    params = {"batch_size": 32, "tokens_per_step": 32 * 1024, "a": 4.0, "b": -0.51,
              "max_lr": 0.02}
    schedule = ms.power_schedule(**params)
    steps = [0, 1, 2, 3, 100, 10**4, 10**6, 10**9, 2**50, 2**62]
    want = [ref.power_scheduler(t, **params) for t in steps]
    # the cap at step 0 (no tokens seen yet), the power law everywhere after
    assert want[0] == 0.02 and want[-1] < 1e-9
    # float32 keeps about (1 + |b|)·2e-6 of relative precision out to 2**62
    assert_close(schedule.values(steps), want, 1e-12, steps, rtol=3e-6)
    # the rate depends on the tokens seen: twice the batch, half the steps, and the
    # batch size enters linearly, so (2B, 2tau) at t equals 2x (B, tau) at 2t
    double = ms.power_schedule(64, 64 * 1024, a=4.0, b=-0.51, max_lr=1.0)
    single = ms.power_schedule(32, 32 * 1024, a=4.0, b=-0.51, max_lr=1.0)
    t = np.array([1000, 5000, 10**6])
    np.testing.assert_allclose(double.values(t), 2 * single.values(2 * t), rtol=2e-6)


def test_learning_rate_of_a_compiled_training_step():
    schedule = ms.power_schedule(**SMALL)
    model = nn.Linear(4, 2)
    optimizer = optim.AdamW(learning_rate=schedule)
    optimizer.init(model.trainable_parameters())
    state = [model.state, optimizer.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def train_step(x, y):
        loss, grads = nn.value_and_grad(model, lambda m: nn.losses.mse_loss(m(x), y))(model)
        optimizer.update(model, grads)
        return loss

    x, y = mx.ones((3, 4)), mx.zeros((3, 2))
    used = []
    for _ in range(SMALL["total_steps"] + 2):
        mx.eval(state, train_step(x, y))
        used.append(optimizer.learning_rate.item())   # the rate update k used: schedule(k)
    want = [ref.power_scheduler(k, **SMALL) for k in range(len(used))]
    assert_close(used, want, SMALL["max_lr"], list(range(len(used))))
    assert used[0] == 0.0 and used[-2:] == [0.0, 0.0]


@pytest.mark.parametrize("params", [PAPER, SMALL, {"batch_size": 4, "tokens_per_step": 4}],
                         ids=["paper", "small-linear", "defaults"])
def test_config_round_trip_through_json(params):
    schedule = ms.power_schedule(**params)
    config = json.loads(json.dumps(schedule.to_config()))
    assert config["name"] == "power_schedule"
    assert config["a"] == params.get("a", 4.0) and config["b"] == params.get("b", -0.51)
    rebuilt = ms.from_config(config)
    steps = [0, 1, 9, 10, 11, 159, 160, 161, 199, 200, 5000, 2**40]
    assert rebuilt.values(steps).tolist() == schedule.values(steps).tolist()
    assert rebuilt.to_config() == schedule.to_config()


def test_paper_defaults_are_the_papers():
    config = ms.power_schedule(1, 1).to_config()
    assert (config["a"], config["b"], config["max_lr"]) == (4.0, -0.51, 0.02)
    assert config["decay_shape"] == "exponential"


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": 8, "tokens_per_step": 4}, r"tokens_per_step must be >= batch_size"),
    ({"decay_steps": 10}, r"decay_steps=10 needs total_steps"),
    ({"total_steps": 100}, r"total_steps is where the final decay ends: give decay_steps > 0"),
    ({"warmup_steps": 60, "decay_steps": 50, "total_steps": 100},
     r"warmup_steps \+ decay_steps must be <= total_steps, got 60 \+ 50 > 100"),
])
def test_inconsistent_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ms.power_schedule(**{"batch_size": 8, "tokens_per_step": 8 * 128, **kwargs})
