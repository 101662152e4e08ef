"""Monotone decays: their bounds and forms, and MLX's own schedules where they exist. The
values of every family against its reference are in ``test_reference_values``."""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np
import pytest
from schedule_reference import assert_close

import mlx_schedules as ms


@pytest.mark.parametrize("k", [0.0, 0.01, 0.5, 2.0])
def test_seed_exponential_form(k):
    lr = ms.exponential_decay(0.3, math.exp(-k))
    steps = np.array([0, 1, 2, 10, 100, 1000])
    assert_close(lr.values(steps), 0.3 * np.exp(-k * steps), 0.3, steps)


def test_exponential_floor_and_ceiling_are_reached_and_held():
    floor = ms.exponential_decay(1.0, 0.5, end=0.2).values(100)
    ceiling = ms.exponential_decay(0.1, 1.5, end=0.8).values(100)
    assert floor.min() == pytest.approx(0.2, rel=1e-7) and floor[-1] == floor.min()
    assert ceiling.max() == pytest.approx(0.8, rel=1e-7) and ceiling[-1] == ceiling.max()


def test_piecewise_value_holds_through_its_boundary():
    lr = ms.piecewise_constant([5], [1.0, 2.0])
    assert lr(5).item() == 1.0 and lr(6).item() == 2.0


# MLX's own schedules and ours agree on shared steps --------------------------------------

BUILTIN_PAIRS = [
    ("exponential_decay", ms.exponential_decay(0.1, 0.97), optim.exponential_decay(0.1, 0.97)),
    ("step_decay", ms.step_decay(0.1, 0.7, 5), optim.step_decay(0.1, 0.7, 5)),
    ("cosine_decay", ms.cosine_decay(0.1, 50), optim.cosine_decay(0.1, 50)),
    ("cosine_decay-end", ms.cosine_decay(0.1, 50, 0.01), optim.cosine_decay(0.1, 50, 0.01)),
    ("linear_schedule", ms.linear_schedule(0.0, 0.1, 20), optim.linear_schedule(0.0, 0.1, 20)),
    ("join_schedules",
     ms.join_schedules([ms.linear_schedule(0.0, 0.1, 10), ms.cosine_decay(0.1, 40)], [10]),
     optim.join_schedules([optim.linear_schedule(0.0, 0.1, 10), optim.cosine_decay(0.1, 40)],
                          [10])),
]


@pytest.mark.parametrize("ours, theirs", [p[1:] for p in BUILTIN_PAIRS],
                         ids=[p[0] for p in BUILTIN_PAIRS])
def test_equals_mlx_builtin(ours, theirs):
    steps = list(range(0, 80)) + [200, 1000]
    got = [ours(mx.array(t, dtype=mx.uint64)).item() for t in steps]
    want = [theirs(mx.array(t, dtype=mx.uint64)).item() for t in steps]
    # both are float32; ours uses sin^2 where MLX uses 1 + cos, so allow a few ulps
    assert_close(got, want, 0.1, steps, rtol=2e-6)
