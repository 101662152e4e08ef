"""Every schedule family against its float64 reference (PyTorch's, Keras's, optax's or
MLX's definition, written out in ``schedule_reference``), at the steps where each changes
phase: vectorised over many steps, and one step at a time as the optimizer calls it."""

from __future__ import annotations

import mlx.core as mx
import pytest
import schedule_reference as ref
from schedule_reference import around, assert_close

import mlx_schedules as ms


def cycles(period: int, count: int) -> list[int]:
    """Every step of the first ``count`` periods, and one past."""
    return list(range(period * count + 1))


# Monotone decays. (id, schedule, reference of t, steps, scale)
DECAY_CASES = [
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

# Periodic schedules, over several cycles.
PERIODIC_CASES = [
    ("ced", ms.cyclic_exponential_decay(0.1, 0.99, 10),
     lambda t: ref.cyclic_exponential_decay(t, 0.1, 0.99, 10), cycles(10, 4), 0.1),
    ("ced-end-decay_steps", ms.cyclic_exponential_decay(1.0, 0.5, 7, end=0.05, decay_steps=20),
     lambda t: ref.cyclic_exponential_decay(t, 1.0, 0.5, 7, 0.05, 20), cycles(7, 5), 1.0),
    ("ced-odd-cycle", ms.cyclic_exponential_decay(1.0, 0.9, 3),
     lambda t: ref.cyclic_exponential_decay(t, 1.0, 0.9, 3), cycles(3, 5), 1.0),
    ("cyclic_lr-triangular", ms.cyclic_lr(0.01, 0.1, 4),
     lambda t: ref.cyclic_lr(t, 0.01, 0.1, 4), cycles(8, 3), 0.1),
    ("cyclic_lr-asymmetric", ms.cyclic_lr(0.01, 0.1, 3, step_size_down=7),
     lambda t: ref.cyclic_lr(t, 0.01, 0.1, 3, 7), cycles(10, 3), 0.1),
    ("cyclic_lr-asymmetric-down-short", ms.cyclic_lr(0.0, 1.0, 6, step_size_down=2),
     lambda t: ref.cyclic_lr(t, 0.0, 1.0, 6, 2), cycles(8, 3), 1.0),
    ("cyclic_lr-triangular2", ms.cyclic_lr(0.01, 0.1, 4, step_size_down=3, mode="triangular2"),
     lambda t: ref.cyclic_lr(t, 0.01, 0.1, 4, 3, "triangular2"), cycles(7, 4), 0.1),
    ("cyclic_lr-exp_range", ms.cyclic_lr(0.01, 0.1, 5, mode="exp_range", gamma=0.97),
     lambda t: ref.cyclic_lr(t, 0.01, 0.1, 5, None, "exp_range", 0.97), cycles(10, 3), 0.1),
    ("cyclic_momentum", ms.cyclic_momentum(0.8, 0.9, 4),
     lambda t: ref.cyclic_momentum(t, 0.8, 0.9, 4), cycles(8, 3), 0.9),
    ("cyclic_momentum-asym-tri2", ms.cyclic_momentum(0.8, 0.95, 2, step_size_down=5,
                                                     mode="triangular2"),
     lambda t: ref.cyclic_momentum(t, 0.8, 0.95, 2, 5, "triangular2"), cycles(7, 3), 0.95),
    ("cyclic_momentum-exp_range", ms.cyclic_momentum(0.8, 0.9, 3, mode="exp_range", gamma=0.9),
     lambda t: ref.cyclic_momentum(t, 0.8, 0.9, 3, None, "exp_range", 0.9), cycles(6, 3), 0.9),
    ("restarts-t_mul1", ms.cosine_restarts(1.0, 10, t_mul=1.0),
     lambda t: ref.cosine_restarts(t, 1.0, 10, 1.0), cycles(10, 4), 1.0),
    ("restarts-t_mul2", ms.cosine_restarts(1.0, 5),
     lambda t: ref.cosine_restarts(t, 1.0, 5, 2.0), list(range(80)), 1.0),
    ("restarts-t_mul1.5", ms.cosine_restarts(0.1, 10, t_mul=1.5),
     lambda t: ref.cosine_restarts(t, 0.1, 10, 1.5), list(range(130)), 0.1),
    ("restarts-m_mul-end", ms.cosine_restarts(1.0, 4, t_mul=2.0, m_mul=0.5, end=0.1),
     lambda t: ref.cosine_restarts(t, 1.0, 4, 2.0, 0.5, 0.1), list(range(62)), 1.0),
    ("restarts-t_mul1-m_mul", ms.cosine_restarts(1.0, 6, t_mul=1.0, m_mul=0.8, end=0.05),
     lambda t: ref.cosine_restarts(t, 1.0, 6, 1.0, 0.8, 0.05), cycles(6, 5), 1.0),
    ("restarts-t_mul3", ms.cosine_restarts(1.0, 2, t_mul=3.0),
     lambda t: ref.cosine_restarts(t, 1.0, 2, 3.0), list(range(82)), 1.0),
]

CASES = DECAY_CASES + PERIODIC_CASES


@pytest.mark.parametrize("schedule, reference, steps, scale",
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_values_match_reference(schedule, reference, steps, scale):
    assert_close(schedule.values(steps), ref.reference_values(reference, steps), scale, steps)


@pytest.mark.parametrize("schedule, reference, steps, scale",
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_uint64_step_matches_reference(schedule, reference, steps, scale):
    # The optimizer's own step type, one step at a time.
    for t in steps:
        got = schedule(mx.array(t, dtype=mx.uint64))
        assert got.dtype == mx.float32 and got.shape == ()
        assert_close(got.item(), reference(t), scale, [t])
