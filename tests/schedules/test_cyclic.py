"""Periodic schedules (CED, cyclical rate and momentum, cosine restarts) over several
cycles, against float64 references of PyTorch's and Keras's definitions."""

from __future__ import annotations

import mlx.core as mx
import pytest
import schedule_reference as ref
from schedule_reference import around, assert_close

import mlx_schedules as ms


def cycles(period: int, count: int) -> list[int]:
    """Every step of the first ``count`` periods, and one past."""
    return list(range(period * count + 1))


CASES = [
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


@pytest.mark.parametrize("schedule, reference, steps, scale",
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_matches_reference(schedule, reference, steps, scale):
    assert_close(schedule.values(steps), ref.reference_values(reference, steps), scale, steps)


@pytest.mark.parametrize("schedule, reference, steps, scale",
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_uint64_step_matches_reference(schedule, reference, steps, scale):
    for t in steps[:: max(1, len(steps) // 12)]:
        got = schedule(mx.array(t, dtype=mx.uint64)).item()
        assert_close(got, reference(t), scale, [t])


def test_ced_restarts_at_envelope_and_touches_end_mid_cycle():
    lr = ms.cyclic_exponential_decay(1.0, 0.9, 10, end=0.1)
    values = lr.values(41)
    for cycle in range(4):
        start = 10 * cycle
        assert values[start] == pytest.approx(0.1 + 0.9 * 0.9**start, rel=1e-6)
        assert values[start + 5] == pytest.approx(0.1, rel=1e-6)


@pytest.mark.parametrize("t_mul, m_mul, end", [(1.0, 1.0, 0.0), (2.0, 1.0, 0.0),
                                               (1.5, 0.7, 0.02), (3.0, 0.5, 0.1)])
def test_restarts_equal_keras_formula(t_mul, m_mul, end):
    # Keras locates the restart with a float logarithm; compare away from the restarts,
    # where that cannot flip, and at the restart steps through the walking reference.
    lr = ms.cosine_restarts(0.2, 8, t_mul=t_mul, m_mul=m_mul, end=end)
    starts, start, length = set(), 0.0, 8.0
    while start < 400:
        starts.update({int(start)})
        start += length
        length *= t_mul
    steps = [t for t in range(400) if t not in starts]
    keras = [ref.keras_cosine_decay_restarts(t, 0.2, 8, t_mul, m_mul, end / 0.2) for t in steps]
    assert_close(lr.values(steps), keras, 0.2, steps)


@pytest.mark.parametrize("t_0, t_mult, eta_min", [(5, 1, 0.0), (5, 2, 0.0), (3, 3, 0.01),
                                                  (10, 1, 0.05)])
def test_restarts_equal_pytorch_warm_restarts(t_0, t_mult, eta_min):
    lr = ms.cosine_restarts(0.1, t_0, t_mul=float(t_mult), end=eta_min)
    steps = list(range(120))
    torch = [ref.torch_cosine_annealing_warm_restarts(t, 0.1, t_0, t_mult, eta_min)
             for t in steps]
    assert_close(lr.values(steps), torch, 0.1, steps)


def test_cyclic_lr_peaks_and_troughs():
    lr = ms.cyclic_lr(0.1, 0.5, 3, step_size_down=5)
    values = lr.values(around(3, 8, 11, 16))
    assert lr(3).item() == pytest.approx(0.5) and lr(11).item() == pytest.approx(0.5)
    assert lr(8).item() == pytest.approx(0.1) and lr(16).item() == pytest.approx(0.1)
    assert values.min() >= 0.1 - 1e-8 and values.max() <= 0.5 + 1e-8


def test_cyclic_momentum_mirrors_cyclic_lr():
    lr = ms.cyclic_lr(0.2, 0.6, 4, step_size_down=6, mode="triangular2")
    momentum = ms.cyclic_momentum(0.85, 0.95, 4, step_size_down=6, mode="triangular2")
    steps = list(range(40))
    lr_fraction = (lr.values(steps) - 0.2) / 0.4
    momentum_fraction = (0.95 - momentum.values(steps)) / 0.1
    assert_close(momentum_fraction, lr_fraction, 1.0, steps, rtol=1e-5)
