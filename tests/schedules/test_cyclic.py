"""Periodic schedules (CED, cyclical rate and momentum, cosine restarts): their shape over
several cycles, and restarts against Keras's and PyTorch's own formulas. The values of
every family against its reference are in ``test_reference_values``."""

from __future__ import annotations

import pytest
import schedule_reference as ref
from schedule_reference import around, assert_close

import mlx_schedules as ms


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
