"""Monotone decays against float64 references, and MLX's own schedules where they exist."""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np
import pytest
import schedule_reference as ref
from schedule_reference import around, assert_close

import mlx_schedules as ms

# (id, schedule, reference of t, steps, scale)
CASES = [
    ("constant", ms.constant(0.25), lambda t: ref.constant(t, 0.25), [0, 1, 7, 10**6], 0.25),
    ("exponential", ms.exponential_decay(0.1, 0.9),
     lambda t: ref.exponential_decay(t, 0.1, 0.9), around(1, 50, 200), 0.1),
    ("exponential-decay_steps", ms.exponential_decay(0.1, 0.5, decay_steps=10),
     lambda t: ref.exponential_decay(t, 0.1, 0.5, 10), around(10, 15, 100), 0.1),
    ("exponential-staircase", ms.exponential_decay(0.1, 0.5, decay_steps=10, staircase=True),
     lambda t: ref.exponential_decay(t, 0.1, 0.5, 10, True), around(10, 20, 100), 0.1),
    ("exponential-begin", ms.exponential_decay(1.0, 0.5, decay_steps=4, begin=10),
     lambda t: ref.exponential_decay(t, 1.0, 0.5, 4, begin=10), around(10, 14, 30), 1.0),
    # end is a floor for rate < 1: 1 * 0.5**(t/4) reaches 0.1 at t = 13.29
    ("exponential-floor", ms.exponential_decay(1.0, 0.5, decay_steps=4, end=0.1),
     lambda t: ref.exponential_decay(t, 1.0, 0.5, 4, end=0.1), around(13.29, 100), 1.0),
    # and a ceiling for rate > 1: 0.01 * 2**(t/2) reaches 1 at t = 13.29
    ("exponential-ceiling", ms.exponential_decay(0.01, 2.0, decay_steps=2, end=1.0),
     lambda t: ref.exponential_decay(t, 0.01, 2.0, 2, end=1.0), around(13.29, 100), 1.0),
    ("step", ms.step_decay(0.1, 0.5, 3), lambda t: ref.step_decay(t, 0.1, 0.5, 3),
     around(3, 6, 9, 60), 0.1),
    ("multistep", ms.multistep_decay(0.1, [3, 7, 20], gamma=0.5),
     lambda t: ref.multistep_decay(t, 0.1, [3, 7, 20], 0.5), around(3, 7, 20, 1000), 0.1),
    ("multistep-milestone0", ms.multistep_decay(1.0, [0, 5]),
     lambda t: ref.multistep_decay(t, 1.0, [0, 5]), around(0, 5), 1.0),
    # more than 16 milestones takes the binary-search path
    ("multistep-many", ms.multistep_decay(1.0, list(range(2, 80, 3)), gamma=0.9),
     lambda t: ref.multistep_decay(t, 1.0, list(range(2, 80, 3)), 0.9), list(range(90)), 1.0),
    ("cosine", ms.cosine_decay(0.1, 100), lambda t: ref.cosine_decay(t, 0.1, 100),
     around(50, 100, 1000), 0.1),
    ("cosine-end", ms.cosine_decay(1.0, 10, 0.1), lambda t: ref.cosine_decay(t, 1.0, 10, 0.1),
     list(range(15)), 1.0),
    ("cosine-exponent", ms.cosine_decay(1.0, 10, 0.1, exponent=2.5),
     lambda t: ref.cosine_decay(t, 1.0, 10, 0.1, 2.5), list(range(15)), 1.0),
    ("cosine-rising", ms.cosine_decay(0.0, 10, 1.0), lambda t: ref.cosine_decay(t, 0.0, 10, 1.0),
     list(range(12)), 1.0),
    ("linear", ms.linear_schedule(1.0, 0.1, 10), lambda t: ref.linear_schedule(t, 1.0, 0.1, 10),
     list(range(13)), 1.0),
    ("linear-up", ms.linear_schedule(0.0, 2.0, 7), lambda t: ref.linear_schedule(t, 0.0, 2.0, 7),
     around(7, 100), 2.0),
    ("polynomial", ms.polynomial_decay(1.0, 10, 0.01, power=2.0),
     lambda t: ref.polynomial_decay(t, 1.0, 10, 0.01, 2.0), list(range(13)), 1.0),
    ("polynomial-sqrt", ms.polynomial_decay(0.5, 7, power=0.5),
     lambda t: ref.polynomial_decay(t, 0.5, 7, 0.0, 0.5), list(range(10)), 0.5),
    # cycle: step 0 is 1.0; exact multiples of decay_steps reach end; then a longer horizon
    ("polynomial-cycle", ms.polynomial_decay(1.0, 5, 0.1, power=2.0, cycle=True),
     lambda t: ref.polynomial_decay(t, 1.0, 5, 0.1, 2.0, True), list(range(32)), 1.0),
    ("inverse_time", ms.inverse_time_decay(1.0, 10, 0.5),
     lambda t: ref.inverse_time_decay(t, 1.0, 10, 0.5), around(10, 20, 10**6), 1.0),
    ("inverse_time-staircase", ms.inverse_time_decay(1.0, 10, 0.5, staircase=True),
     lambda t: ref.inverse_time_decay(t, 1.0, 10, 0.5, True), around(10, 20, 30), 1.0),
    ("piecewise", ms.piecewise_constant([3, 8], [1.0, 0.5, 0.1]),
     lambda t: ref.piecewise_constant(t, [3, 8], [1.0, 0.5, 0.1]), around(3, 8, 100), 1.0),
    ("piecewise-boundary0", ms.piecewise_constant([0, 1], [3.0, 2.0, 1.0]),
     lambda t: ref.piecewise_constant(t, [0, 1], [3.0, 2.0, 1.0]), [0, 1, 2, 3], 3.0),
    ("piecewise-many", ms.piecewise_constant(list(range(1, 60, 3)), [float(i) for i in range(21)]),
     lambda t: ref.piecewise_constant(t, list(range(1, 60, 3)), [float(i) for i in range(21)]),
     list(range(70)), 20.0),
]


@pytest.mark.parametrize("schedule, reference, steps, scale",
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_matches_reference(schedule, reference, steps, scale):
    assert_close(schedule.values(steps), ref.reference_values(reference, steps), scale, steps)


@pytest.mark.parametrize("schedule, reference, steps, scale",
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_uint64_step_matches_reference(schedule, reference, steps, scale):
    # The optimizer's own step type, one step at a time.
    for t in steps:
        got = schedule(mx.array(t, dtype=mx.uint64))
        assert got.dtype == mx.float32 and got.shape == ()
        assert_close(got.item(), reference(t), scale, [t])


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
