"""Every schedule starts at the float32 of its stated start and, from its horizon on,
holds the float32 of its stated end, bit for bit.

The cases are keyed by factory name and checked against the registry, so a new factory
without an endpoint case fails ``test_every_registered_factory_has_endpoint_cases``.
Stated values are written here in float64, from the schedule's definition.
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np
import pytest

import mlx_schedules as ms

f32 = np.float32

# name: [(schedule, start, horizon or None, end)]: from the horizon on the value is `end`;
# a schedule without a horizon (periodic, or decaying for ever) has None.
ENDPOINTS = {
    "constant": [(ms.constant(0.1), 0.1, 0, 0.1)],
    "exponential_decay": [
        (ms.exponential_decay(0.1, 0.9), 0.1, None, None),
        # the floor 0.01 is reached after log(0.1)/log(0.9) = 21.85 steps
        (ms.exponential_decay(0.1, 0.9, end=0.01), 0.1, 22, 0.01),
        # the ceiling 1.0: 0.01·2**(t/2) reaches it at t = 13.29
        (ms.exponential_decay(0.01, 2.0, decay_steps=2, end=1.0), 0.01, 14, 1.0)],
    "step_decay": [(ms.step_decay(0.1, 0.5, 3), 0.1, None, None)],
    "multistep_decay": [(ms.multistep_decay(0.1, [3, 7], gamma=0.3), 0.1, 7, 0.1 * 0.3**2)],
    "cosine_decay": [
        (ms.cosine_decay(0.1, 20, 0.001), 0.1, 20, 0.001),
        (ms.cosine_decay(0.3, 3**13, 0.007, exponent=2.0, k_decay=1.5), 0.3, 3**13, 0.007),
        (ms.cosine_decay(0.0, 10, 1.0), 0.0, 10, 1.0)],
    "linear_schedule": [
        (ms.linear_schedule(0.0, 0.1, 20), 0.0, 20, 0.1),
        (ms.linear_schedule(0.3, 0.007, 3**13), 0.3, 3**13, 0.007),
        (ms.linear_schedule(0.1, 0.0, 2**40 + 7), 0.1, 2**40 + 7, 0.0)],
    "polynomial_decay": [
        (ms.polynomial_decay(0.1, 30, 0.001, power=0.5, k_decay=2.0), 0.1, 30, 0.001),
        (ms.polynomial_decay(0.3, 7, 0.007, power=2.0), 0.3, 7, 0.007),
        (ms.polynomial_decay(0.1, 30, 0.001, cycle=True), 0.1, None, None)],
    "inverse_time_decay": [(ms.inverse_time_decay(0.1, 10, 0.5), 0.1, None, None)],
    "piecewise_constant": [
        (ms.piecewise_constant([3, 8], [0.1, 0.03, 0.007]), 0.1, 9, 0.007)],
    "cyclic_exponential_decay": [
        (ms.cyclic_exponential_decay(0.1, 0.99, 10, end=0.001), 0.1, None, None)],
    "one_cycle": [
        (ms.one_cycle(0.1, 1000), 0.1 / 25, 999, 0.1 / 25 / 1e4),
        (ms.one_cycle(0.3, 1001, pct_start=0.5, anneal_strategy="linear", div_factor=7.0,
                      final_div_factor=3.0), 0.3 / 7, 1000, 0.3 / 7 / 3),
        (ms.one_cycle(0.7, 333, pct_start=0.27, three_phase=True), 0.7 / 25, 332,
         0.7 / 25 / 1e4)],
    "one_cycle_momentum": [
        (ms.one_cycle_momentum(1000, base_momentum=0.85, max_momentum=0.95), 0.95, 999, 0.95),
        (ms.one_cycle_momentum(1001, base_momentum=0.8, max_momentum=0.93, pct_start=0.45,
                               anneal_strategy="linear"), 0.93, 1000, 0.93)],
    "cyclic_lr": [
        (ms.cyclic_lr(0.01, 0.1, 7), 0.01, None, None),
        (ms.cyclic_lr(0.003, 0.1, 7, scale_fn=lambda c: 0.3 / c), 0.003, None, None)],
    "cyclic_momentum": [(ms.cyclic_momentum(0.8, 0.95, 5), 0.95, None, None)],
    "cosine_restarts": [
        (ms.cosine_restarts(0.1, 10, end=0.001), 0.1, None, None),
        (ms.cosine_restarts(0.3, 10, t_mul=1.5, m_mul=0.7, end=0.007), 0.3, None, None),
        # three cycles of 10, 20 and 40 steps
        (ms.cosine_restarts(0.1, 10, end=0.001, cycle_limit=3), 0.1, 70, 0.001),
        (ms.cosine_restarts(0.3, 7, t_mul=1.0, end=0.007, cycle_limit=2), 0.3, 14, 0.007)],
    "warmup": [
        (ms.warmup(ms.cosine_decay(0.1, 90, 0.001), 10), 0.0, 100, 0.001),
        (ms.warmup(ms.linear_schedule(0.3, 0.007, 50), 7, init=0.003, shape="log"), 0.003, 57,
         0.007),
        (ms.warmup(ms.constant(0.1), 9, init=0.01, shape="cosine"), 0.01, 9, 0.1)],
    "warmup_stable_decay": [
        (ms.warmup_stable_decay(0.1, 100, warmup_steps=10, decay_steps=20, init=0.001,
                                end=0.0003, decay_shape=shape, warmup_shape=warm),
         0.001, 100, 0.0003)
        for shape, warm in [("linear", "linear"), ("cosine", "cosine"), ("sqrt", "log")]] + [
        (ms.warmup_stable_decay(0.3, 50, warmup_steps=0, decay_steps=50, end=0.007), 0.3, 50,
         0.007)],
    "join_schedules": [
        (ms.join_schedules([ms.linear_schedule(0.0, 0.1, 10),
                            ms.cosine_decay(0.1, 90, 0.001)], [10]), 0.0, 100, 0.001)],
    "range_sweep": [
        (ms.range_sweep(1e-5, 1.0, 100), 1e-5, 99, 1.0),
        (ms.range_sweep(3e-4, 0.7, 37), 3e-4, 36, 0.7),
        (ms.range_sweep(3e-4, 0.7, 37, mode="linear"), 3e-4, 36, 0.7)],
    "inverse_sqrt": [
        (ms.inverse_sqrt(0.1, 10), 0.0, None, None),
        (ms.inverse_sqrt(0.3, 0), 0.3, None, None)],
    "tanh_decay": [
        (ms.tanh_decay(0.1, 20, 0.001), 0.001 + 0.5 * (0.1 - 0.001) * (1 - math.tanh(-7.0)),
         20, 0.001),
        (ms.tanh_decay(0.3, 7, lower=-4.0, upper=5.0), 0.5 * 0.3 * (1 - math.tanh(-4.0)), 7,
         0.0)],
    "piecewise_interpolate": [
        (ms.piecewise_interpolate(0.1, {5: 2.0, 12: 0.1}), 0.1, 12, 0.1 * 2.0 * 0.1),
        (ms.piecewise_interpolate(0.3, {7: 0.3, 9: 0.7}, interpolate="cosine"), 0.3, 9,
         0.3 * 0.3 * 0.7)],
    # the product of the factors' float32 values, numbers folded first
    "multiply": [
        (ms.multiply(0.5, ms.cosine_decay(0.1, 20, 0.001), ms.linear_schedule(1.0, 0.3, 30)),
         f32(f32(0.5) * f32(0.1)) * f32(1.0), 30, f32(f32(0.5) * f32(0.001)) * f32(0.3))],
    "with_noise": [
        (ms.with_noise(ms.cosine_decay(0.1, 20, 0.001), 0.3, start=5, end=15), 0.1, 20,
         0.001)],
    # 0 at step 0 with a warmup, the cap without one (no tokens seen yet); 0 from the end
    "power_schedule": [
        (ms.power_schedule(8, 8 * 512, warmup_steps=10, decay_steps=20, total_steps=100),
         0.0, 100, 0.0),
        (ms.power_schedule(8, 8 * 512, max_lr=0.03, decay_steps=7, total_steps=30,
                           decay_shape="linear"), 0.03, 30, 0.0),
        (ms.power_schedule(8, 8 * 512, max_lr=0.05), 0.05, None, None)],
}

CASES = [pytest.param(schedule, start, horizon, end, id=f"{name}-{i}")
         for name, cases in ENDPOINTS.items()
         for i, (schedule, start, horizon, end) in enumerate(cases)]


def bits(values) -> list[int]:
    return np.asarray(values, dtype=np.float32).reshape(-1).view(np.uint32).tolist()


def test_every_registered_factory_has_endpoint_cases():
    assert sorted(ENDPOINTS) == ms.schedule_names()
    # every case really is the factory it is filed under
    for name, cases in ENDPOINTS.items():
        assert {schedule.name for schedule, *_ in cases} == {name}


@pytest.mark.parametrize("schedule, start, horizon, end", CASES)
def test_start_is_exact(schedule, start, horizon, end):
    want = bits([f32(start)])
    assert bits(schedule.values([0])) == want, (schedule.values([0]), f32(start))
    assert bits([schedule(mx.array(0, dtype=mx.uint64)).item()]) == want
    assert bits([schedule(0).item()]) == want


# periodic schedules and those decaying for ever have no horizon: only their start is pinned
@pytest.mark.parametrize("schedule, start, horizon, end",
                         [case for case in CASES if case.values[2] is not None])
def test_end_is_exact_at_and_after_the_horizon(schedule, start, horizon, end):
    steps = sorted({horizon, horizon + 1, horizon + 2, 2 * horizon + 3, max(horizon, 10**9 + 7),
                    2**62})
    want = bits([f32(end)] * len(steps))
    assert bits(schedule.values(steps)) == want, schedule.values(steps)
    assert bits([schedule(mx.array(horizon, dtype=mx.uint64)).item()]) == want[:1]


def test_issue_example_linear_from_zero():
    lr = ms.linear_schedule(0.0, 0.1, 20)
    assert lr(0).item() == 0.0 and lr(20).item() == f32(0.1)
    assert ms.warmup(ms.constant(0.1), 5)(0).item() == 0.0


@pytest.mark.parametrize("name, index", [("linear_schedule", 1), ("cosine_decay", 0),
                                         ("one_cycle", 1), ("warmup_stable_decay", 1),
                                         ("range_sweep", 0)])
def test_endpoints_are_exact_when_compiled(name, index):
    # compiled, the arithmetic is fused (and may contract into fused multiply-adds): the
    # endpoints hold there too, since their weights are exactly 1 and 0 or pinned
    schedule, start, horizon, end = ENDPOINTS[name][index]
    got = [schedule.compiled(mx.array(t, dtype=mx.uint64)).item()
           for t in (0, horizon, horizon + 5)]
    assert bits(got) == bits([f32(start), f32(end), f32(end)])


def test_endpoints_reach_the_optimizer():
    schedule = ms.linear_schedule(0.0, 0.1, 3)
    optimizer = optim.SGD(learning_rate=schedule)
    assert optimizer.learning_rate.item() == 0.0     # the optimizer's own call at step 0
