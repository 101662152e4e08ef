"""The ranges schedules support, and what happens at and beyond their edges.

Steps and integer parameters run up to ``2**62``: an array step beyond it (a ``uint64``
up to ``2**64 - 1``) saturates there, a host step beyond it raises. Costs stay bounded:
nested warmups evaluate their innermost schedule once per call, and cosine restarts
build a bounded table for any ``t_mul``. Values are compared with float64 references.
"""

from __future__ import annotations

import math
import time

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
import schedule_reference as ref
from schedule_reference import assert_close

import mlx_schedules as ms

TOP = 2**62


def uint64(value: int) -> mx.array:
    return mx.array(np.array([value], dtype=np.uint64))[0]


# (id, schedule, float64 reference of t, scale): horizons and periods at the headroom's edge
AT_THE_EDGE = [
    ("cosine_decay-horizon-2**62", ms.cosine_decay(1.0, TOP),
     lambda t: ref.cosine_decay(t, 1.0, TOP), 1.0),
    ("linear-horizon-2**62", ms.linear_schedule(0.0, 1.0, TOP),
     lambda t: ref.linear_schedule(t, 0.0, 1.0, TOP), 1.0),
    ("polynomial-cycle-2**62", ms.polynomial_decay(1.0, TOP, 0.1, cycle=True),
     lambda t: ref.polynomial_decay(t, 1.0, TOP, 0.1, 1.0, True), 1.0),
    ("restarts-t_mul1-2**62", ms.cosine_restarts(1.0, TOP, t_mul=1.0),
     lambda t: ref.cosine_restarts(t, 1.0, TOP, 1.0), 1.0),
    ("restarts-t_mul2-2**62", ms.cosine_restarts(1.0, TOP),
     lambda t: ref.cosine_restarts(t, 1.0, TOP, 2.0), 1.0),
    ("cyclic_lr-period-2**62", ms.cyclic_lr(0.0, 1.0, 2**61, step_size_down=2**61),
     lambda t: ref.cyclic_lr(t, 0.0, 1.0, 2**61, 2**61), 1.0),
    ("ced-cycle-2**62", ms.cyclic_exponential_decay(1.0, 0.5, TOP, decay_steps=TOP),
     lambda t: ref.cyclic_exponential_decay(t, 1.0, 0.5, TOP, 0.0, TOP), 1.0),
    ("warmup-2**62", ms.warmup(ms.constant(1.0), TOP),
     lambda t: ref.warmup(t, lambda s: 1.0, TOP), 1.0),
    ("join-at-2**62", ms.join_schedules([ms.constant(1.0), ms.constant(2.0)], [TOP]),
     lambda t: 1.0 if t < TOP else 2.0, 2.0),
    ("multistep-at-2**62", ms.multistep_decay(1.0, [TOP - 1, TOP], gamma=0.5),
     lambda t: ref.multistep_decay(t, 1.0, [TOP - 1, TOP], 0.5), 1.0),
    ("exponential-begin-2**62", ms.exponential_decay(1.0, 0.5, begin=TOP - 2),
     lambda t: ref.exponential_decay(t, 1.0, 0.5, begin=TOP - 2), 1.0),
    ("one_cycle-2**62", ms.one_cycle(1.0, TOP), lambda t: ref.one_cycle(t, 1.0, TOP), 1.0),
    ("wsd-2**62", ms.warmup_stable_decay(1.0, TOP, warmup_steps=2**61, decay_steps=2**61),
     lambda t: ref.warmup_stable_decay(t, 1.0, TOP, 2**61, 2**61), 1.0),
]
EDGE_STEPS = [0, 1, 2**40, 2**61 - 1, 2**61, 2**61 + 1, TOP - 2, TOP - 1, TOP]


@pytest.mark.parametrize("schedule, reference, scale", [c[1:] for c in AT_THE_EDGE],
                         ids=[c[0] for c in AT_THE_EDGE])
def test_parameters_at_the_headroom(schedule, reference, scale):
    assert_close(schedule.values(EDGE_STEPS), [reference(t) for t in EDGE_STEPS], scale,
                 EDGE_STEPS)


@pytest.mark.parametrize("schedule, reference, scale", [c[1:] for c in AT_THE_EDGE],
                         ids=[c[0] for c in AT_THE_EDGE])
def test_array_steps_beyond_the_headroom_saturate(schedule, reference, scale):
    at_top = reference(TOP)
    # uint64 just past 2**62, past int64, and 2**64 - 1 (which used to wrap to step 0)
    for step in (uint64(TOP + 1), uint64(2**63), uint64(2**64 - 1),
                 mx.array(0, dtype=mx.uint64) - 1, mx.array(2**63 - 1, dtype=mx.int64)):
        assert_close(schedule(step).item(), at_top, scale, [int(step.item())])
    many = mx.array(np.array([2**63, 2**64 - 1, 5], dtype=np.uint64))
    assert_close(schedule(many).tolist(), [at_top, at_top, reference(5)], scale, [0, 1, 2])


def test_saturated_step_inside_an_optimizer_and_compiled():
    schedule = ms.cosine_decay(0.1, 1000)
    optimizer = optim.SGD(learning_rate=schedule)
    model = nn.Linear(2, 1)
    optimizer.init(model.trainable_parameters())
    optimizer.state["step"] = mx.array(0, dtype=mx.uint64) - 1     # 2**64 - 1
    grads = nn.value_and_grad(model, lambda m: m(mx.ones((1, 2))).sum())(model)[1]
    optimizer.update(model, grads)
    assert optimizer.learning_rate.item() == 0.0        # past the horizon: the end value
    assert schedule.compiled(mx.array(0, dtype=mx.uint64) - 1).item() == 0.0
    assert schedule(mx.array(0, dtype=mx.uint64)).item() == pytest.approx(0.1, rel=1e-7)


@pytest.mark.parametrize("step", [TOP + 1, 2**63, 2**64 - 1, 10**30, np.uint64(2**63)])
def test_host_steps_beyond_the_headroom_raise(step):
    schedule = ms.constant(1.0)
    with pytest.raises(ValueError, match=r"step must be <= 2\*\*62"):
        schedule(step)
    with pytest.raises(ValueError, match=r"step must be <= 2\*\*62"):
        schedule([0, step])
    with pytest.raises(ValueError, match=r"steps must be <= 2\*\*62"):
        schedule.values([5, step])
    assert schedule(TOP).item() == 1.0 and schedule.values([TOP]).tolist() == [1.0]


def test_host_step_that_is_not_an_integer():
    with pytest.raises(TypeError, match="step must be an integer"):
        ms.constant(1.0)([1, 2**70, "x"])


# cosine_restarts: huge first cycles and huge t_mul, against the float64 walk -----------

RESTARTS = [(TOP, 2.0), (10**18, 2.0), (3 * 10**17 + 7, 3.0), (10, 1e10), (3, 1e19),
            (10, 3e38), (1, 1.5), (7, 1.001)]


def _restart_steps(first, t_mul):
    """Steps at, just before and just after the first restarts, and far out."""
    steps = {0, 1, TOP - 1, TOP, 2**40}
    for cycle in range(1, 5):
        start = ref.cycle_start_exact(cycle, first, t_mul)
        if start > TOP:
            break
        steps.update(s for s in (start - 1, start, start + 1) if 0 <= s <= TOP)
    return sorted(steps)


@pytest.mark.parametrize("first, t_mul", RESTARTS, ids=[f"T0={f}-t_mul={m}" for f, m in RESTARTS])
def test_restarts_with_huge_cycles_match_float64(first, t_mul):
    # (the reference is exact: float64 sums of the cycle lengths are off beyond 2**53,
    # at 3·10**17 + 7 already)
    schedule = ms.cosine_restarts(1.0, first, t_mul=t_mul, end=0.01)
    steps = _restart_steps(first, t_mul)
    want = [ref.cosine_restarts_exact(t, 1.0, first, t_mul, 1.0, 0.01) for t in steps]
    assert_close(schedule.values(steps), want, 1.0, steps)
    for t, value in zip(steps[:6], want):
        assert_close(schedule(uint64(t)).item(), value, 1.0, [t])


# t_mul near 1 (more cycles than a table holds) and the common t_mul, against Keras's
# closed form in 60-digit decimals, at the steps next to restarts far into the run
NEAR_ONE = [(1, 1.0001), (10, 1.0001), (1000, 1.000001), (1, 1.0000001), (3, 1.0003),
            (1, 1.5), (10, 2.0), (7, 3.0)]


def _cycle_count(first, t_mul):
    """Cycles that start at a step <= 2**62 (float64 is enough to choose test cycles)."""
    return int(math.log1p((t_mul - 1) * TOP / first) / math.log(t_mul)) + 1


def _steps_next_to_restarts(first, t_mul):
    count = _cycle_count(first, t_mul)
    group = -(-count // 65536)       # cycles per tabulated start when they are grouped
    cycles = {1, 2, 3, 10, 100, 1000, 10**4, group - 1, group, group + 1, 7 * group + 3,
              count // 3, count // 2, count - 3, count - 2}
    cycles.update(count * k // 40 + k for k in range(40))
    steps = {0, 1, 2, 10**6 + 3, 2**40 + 5, TOP - 1, TOP}
    for cycle in cycles:
        if 0 < cycle < count - 1:
            first_step = ref.cycle_start_exact(cycle, first, t_mul)
            steps.update(s for s in (first_step - 1, first_step, first_step + 1) if s <= TOP)
    return sorted(steps)


@pytest.mark.parametrize("first, t_mul", NEAR_ONE,
                         ids=[f"T0={f}-t_mul={m}" for f, m in NEAR_ONE])
def test_restarts_match_keras_closed_form_next_to_restarts(first, t_mul):
    # t_mul = 1.0001 used to be refused (more than 65,536 cycles before step 2**62)
    schedule = ms.cosine_restarts(1.0, first, t_mul=t_mul, end=0.01)
    steps = _steps_next_to_restarts(first, t_mul)
    want = [ref.cosine_restarts_exact(t, 1.0, first, t_mul, end=0.01) for t in steps]
    assert_close(schedule.values(steps), want, 1.0, steps)
    for t, value in list(zip(steps, want))[::25]:
        assert_close(schedule(uint64(t)).item(), value, 1.0, [t])


def test_restarts_near_one_with_decaying_peaks_and_a_cycle_limit():
    # 200,000 cycles at most (a grouped table), peaks decaying by m_mul each cycle
    schedule = ms.cosine_restarts(0.5, 3, t_mul=1.0001, m_mul=0.99999, end=0.001,
                                  cycle_limit=200_000)
    limit_step = ref.cycle_start_exact(200_000, 3, 1.0001)
    steps = sorted({0, 1, 2, 3, 4, 10**5, limit_step - 1, limit_step, limit_step + 1, TOP}
                   | {ref.cycle_start_exact(i, 3, 1.0001) + d for i in (5, 777, 65_537, 199_999)
                      for d in (-1, 0, 1)})
    want = [ref.cosine_restarts_exact(t, 0.5, 3, 1.0001, 0.99999, 0.001, 200_000)
            for t in steps]
    assert_close(schedule.values(steps), want, 0.5, steps)
    assert schedule.values([limit_step, TOP]).tolist() == [np.float32(0.001)] * 2


@pytest.mark.parametrize("t_mul", [1.000001, 1 + 1e-9, 1 + 2**-52])
def test_restarts_for_any_t_mul_above_one_build_quickly_and_stay_finite(t_mul):
    started = time.perf_counter()
    schedule = ms.cosine_restarts(0.1, 1000, t_mul=t_mul)
    assert time.perf_counter() - started < 5.0
    values = schedule.values([0, 1, 999, 1000, 1001, 10**6, 10**12, TOP])
    assert np.all(np.isfinite(values)) and values[0] == np.float32(0.1)
    assert values.min() >= 0.0 and values.max() <= np.float32(0.1)
    # the first restart, at step 1000 exactly
    assert values[3] == np.float32(0.1) and values[2] < 1e-6


# Composition cost grows linearly with depth -------------------------------------------

def test_nested_warmups_evaluate_the_inner_schedule_once_per_call():
    calls = []

    def inner(step):
        calls.append(step.shape)
        return mx.full(step.shape, 0.5, dtype=mx.float32)

    started = time.perf_counter()
    schedule = inner
    for _ in range(30):
        schedule = ms.warmup(schedule, 1)
    assert len(calls) == 30          # building: each level evaluates its peak once
    calls.clear()
    values = schedule.values(32)
    assert len(calls) == 1           # one call of 32 steps, not 2**30
    # every outer peak is the inner warmup's step-0 value, 0: the value waits 30 steps
    assert values.tolist() == [0.0] * 30 + [0.5, 0.5]
    schedule(mx.array(7, dtype=mx.uint64))
    assert len(calls) == 2
    assert time.perf_counter() - started < 5.0


def test_deep_warmup_from_config_builds_and_evaluates():
    config = {"name": "constant", "value": 1.0}
    for _ in range(40):
        config = {"name": "warmup", "steps": 2, "schedule": config}
    schedule = ms.from_config(config)
    # 40 two-step warmups: each ramp reaches half of its peak, every peak is 1 at last
    assert schedule.values([79, 80, 81]).tolist() == [0.5, 1.0, 1.0]
