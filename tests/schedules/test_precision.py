"""Accuracy at step counts beyond float32's exact integers (2**24) and up to 10**9.

Each schedule's horizon or cycle is long enough that the value at those steps is not a
held end value, so locating the phase with integer arithmetic is what is under test.
"""

from __future__ import annotations

import math

import mlx.core as mx
import pytest
import schedule_reference as ref

import mlx_schedules as ms

BIG = 2 * 10**9
STEPS = [2**24 + 1, 2**24 + 3, 10**8 + 5, 10**9 + 7]

CASES = [
    ("one_cycle", ms.one_cycle(0.1, BIG), lambda t: ref.one_cycle(t, 0.1, BIG)),
    ("one_cycle-3phase-linear", ms.one_cycle(0.1, BIG, anneal_strategy="linear",
                                             three_phase=True, pct_start=0.2),
     lambda t: ref.one_cycle(t, 0.1, BIG, 0.2, "linear", three_phase=True)),
    ("one_cycle_momentum", ms.one_cycle_momentum(BIG, pct_start=0.45),
     lambda t: ref.one_cycle_momentum(t, BIG, pct_start=0.45)),
    ("cosine_decay", ms.cosine_decay(1.0, 3 * 10**9),
     lambda t: ref.cosine_decay(t, 1.0, 3 * 10**9)),
    ("cosine_decay-exponent", ms.cosine_decay(1.0, 3 * 10**9, 0.01, exponent=3.0),
     lambda t: ref.cosine_decay(t, 1.0, 3 * 10**9, 0.01, 3.0)),
    ("linear_schedule", ms.linear_schedule(1.0, 0.0, 3 * 10**9),
     lambda t: ref.linear_schedule(t, 1.0, 0.0, 3 * 10**9)),
    ("cyclic_lr", ms.cyclic_lr(0.01, 0.1, 10**8 + 3),
     lambda t: ref.cyclic_lr(t, 0.01, 0.1, 10**8 + 3)),
    ("cyclic_lr-asym-tri2", ms.cyclic_lr(0.01, 0.1, 10**8 + 3, step_size_down=3 * 10**7 + 1,
                                         mode="triangular2"),
     lambda t: ref.cyclic_lr(t, 0.01, 0.1, 10**8 + 3, 3 * 10**7 + 1, "triangular2")),
    ("cyclic_lr-exp_range", ms.cyclic_lr(0.01, 0.1, 10**8 + 3, mode="exp_range",
                                         gamma=1 - 1e-9),
     lambda t: ref.cyclic_lr(t, 0.01, 0.1, 10**8 + 3, None, "exp_range", 1 - 1e-9)),
    ("cyclic_momentum", ms.cyclic_momentum(0.8, 0.9, 10**8 + 3, step_size_down=10**7 + 9),
     lambda t: ref.cyclic_momentum(t, 0.8, 0.9, 10**8 + 3, 10**7 + 9)),
    ("cosine_restarts-t_mul1", ms.cosine_restarts(1.0, 10**8, t_mul=1.0),
     lambda t: ref.cosine_restarts(t, 1.0, 10**8, 1.0)),
    ("cosine_restarts-t_mul2", ms.cosine_restarts(1.0, 10**8, m_mul=0.9, end=0.01),
     lambda t: ref.cosine_restarts(t, 1.0, 10**8, 2.0, 0.9, 0.01)),
    ("cosine_restarts-t_mul1.5", ms.cosine_restarts(1.0, 10**7 + 1, t_mul=1.5),
     lambda t: ref.cosine_restarts(t, 1.0, 10**7 + 1, 1.5)),
    ("ced", ms.cyclic_exponential_decay(1.0, 1 - 1e-9, 10**8 + 7),
     lambda t: ref.cyclic_exponential_decay(t, 1.0, 1 - 1e-9, 10**8 + 7)),
    ("ced-decay_steps", ms.cyclic_exponential_decay(1.0, 0.5, 10**8 + 7, end=0.01,
                                                    decay_steps=10**9),
     lambda t: ref.cyclic_exponential_decay(t, 1.0, 0.5, 10**8 + 7, 0.01, 10**9)),
    ("exponential-decay_steps", ms.exponential_decay(1.0, 0.5, decay_steps=10**8),
     lambda t: ref.exponential_decay(t, 1.0, 0.5, 10**8)),
    ("exponential-seed", ms.exponential_decay(1.0, math.exp(-2e-9)),
     lambda t: math.exp(-2e-9 * t)),
    ("exponential-staircase-begin", ms.exponential_decay(1.0, 0.5, decay_steps=10**8,
                                                         staircase=True, begin=3),
     lambda t: ref.exponential_decay(t, 1.0, 0.5, 10**8, True, 3)),
    ("step_decay", ms.step_decay(1.0, 0.9, 10**7 + 1), lambda t: ref.step_decay(t, 1.0, 0.9,
                                                                            10**7 + 1)),
    ("multistep", ms.multistep_decay(1.0, [2**24, 2**24 + 2, 10**9 + 7], 0.5),
     lambda t: ref.multistep_decay(t, 1.0, [2**24, 2**24 + 2, 10**9 + 7], 0.5)),
    ("polynomial", ms.polynomial_decay(1.0, 3 * 10**9, 0.01, power=2.0),
     lambda t: ref.polynomial_decay(t, 1.0, 3 * 10**9, 0.01, 2.0)),
    ("polynomial-cycle", ms.polynomial_decay(1.0, 10**8 + 1, power=0.5, cycle=True),
     lambda t: ref.polynomial_decay(t, 1.0, 10**8 + 1, 0.0, 0.5, True)),
    ("inverse_time", ms.inverse_time_decay(1.0, 10**8 + 1, 0.5),
     lambda t: ref.inverse_time_decay(t, 1.0, 10**8 + 1, 0.5)),
    ("inverse_time-staircase", ms.inverse_time_decay(1.0, 10**7 + 1, 0.5, staircase=True),
     lambda t: ref.inverse_time_decay(t, 1.0, 10**7 + 1, 0.5, True)),
    ("piecewise", ms.piecewise_constant([2**24, 10**9 + 6], [1.0, 0.5, 0.25]),
     lambda t: ref.piecewise_constant(t, [2**24, 10**9 + 6], [1.0, 0.5, 0.25])),
    ("warmup", ms.warmup(ms.cosine_decay(1.0, 10**9), 2 * 10**9, init=0.01),
     lambda t: ref.warmup(t, lambda s: ref.cosine_decay(s, 1.0, 10**9), 2 * 10**9, 0.01)),
    ("warmup-then-cosine", ms.warmup(ms.cosine_decay(1.0, 3 * 10**9), 2**24),
     lambda t: ref.warmup(t, lambda s: ref.cosine_decay(s, 1.0, 3 * 10**9), 2**24)),
    ("join", ms.join_schedules([ms.constant(1.0), ms.cosine_decay(1.0, 2 * 10**9)], [2**24]),
     lambda t: 1.0 if t < 2**24 else ref.cosine_decay(t - 2**24, 1.0, 2 * 10**9)),
    ("wsd-cosine", ms.warmup_stable_decay(1.0, 2 * 10**9, warmup_steps=10**7 + 3,
                                          decay_steps=1990000000 - 3, decay_shape="cosine"),
     lambda t: ref.warmup_stable_decay(t, 1.0, 2 * 10**9, 10**7 + 3, 1990000000 - 3, 0.0, 0.0,
                                       "cosine")),
    ("wsd-sqrt-warm", ms.warmup_stable_decay(1.0, 3 * 10**9, warmup_steps=2 * 10**9,
                                             decay_steps=10**9 - 5, decay_shape="sqrt"),
     lambda t: ref.warmup_stable_decay(t, 1.0, 3 * 10**9, 2 * 10**9, 10**9 - 5, 0.0, 0.0,
                                       "sqrt")),
    # short cycles far out: float32 cannot even count these steps, so any conversion
    # before the modulo lands in the wrong place of the cycle
    ("cyclic_lr-short", ms.cyclic_lr(0.01, 0.1, 7, step_size_down=6),
     lambda t: ref.cyclic_lr(t, 0.01, 0.1, 7, 6)),
    ("ced-short", ms.cyclic_exponential_decay(1.0, 1 - 1e-10, 1007),
     lambda t: ref.cyclic_exponential_decay(t, 1.0, 1 - 1e-10, 1007)),
    ("cosine_restarts-short", ms.cosine_restarts(1.0, 999, t_mul=1.0, m_mul=1.0),
     lambda t: ref.cosine_restarts(t, 1.0, 999, 1.0)),
    ("polynomial-cycle-short", ms.polynomial_decay(1.0, 13, cycle=True),
     lambda t: ref.polynomial_decay(t, 1.0, 13, 0.0, 1.0, True)),
    ("range_sweep", ms.range_sweep(1e-7, 1.0, 2 * 10**9),
     lambda t: ref.range_sweep(t, 1e-7, 1.0, 2 * 10**9)),
    ("range_sweep-linear", ms.range_sweep(1e-7, 1.0, 2 * 10**9, mode="linear"),
     lambda t: ref.range_sweep(t, 1e-7, 1.0, 2 * 10**9, "linear")),
]


@pytest.mark.parametrize("schedule, reference", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
@pytest.mark.parametrize("t", STEPS)
def test_large_step_matches_float64(schedule, reference, t):
    want = reference(t)
    got = schedule(mx.array(t, dtype=mx.uint64)).item()
    assert got == pytest.approx(want, rel=1e-5), f"t={t}"


@pytest.mark.parametrize("schedule, reference", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_values_at_large_steps(schedule, reference):
    # the vectorised path locates phases the same way
    got = schedule.values(STEPS)
    for t, value in zip(STEPS, got.tolist()):
        assert value == pytest.approx(reference(t), rel=1e-5), f"t={t}"


def test_values_are_not_trivial_at_large_steps():
    # Guard against a table that only compares end values: most schedules are mid-phase.
    mid = 0
    for _, _schedule, reference in CASES:
        at = [reference(t) for t in STEPS]
        if len({round(v, 12) for v in at}) > 1:
            mid += 1
    assert mid >= len(CASES) - 3
