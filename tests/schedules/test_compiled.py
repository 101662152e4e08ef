"""Compiled and eager schedules agree, under every kind of step the contract accepts.

Each new ``mx.compile`` graph costs seconds of C++ compilation on Linux's CPU backend,
so this checks one fixed parameter set per family (and the property tests stay eager).
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

import mlx_schedules as ms

FAMILIES = {
    "one_cycle": ms.one_cycle(0.1, 1000, three_phase=True, pct_start=0.25),
    "cyclic_lr": ms.cyclic_lr(0.01, 0.1, 7, step_size_down=5, mode="triangular2"),
    "cosine_restarts": ms.cosine_restarts(1.0, 10, m_mul=0.9, end=0.01),
    # t_mul near 1: grouped cycles, located with int64 shifts and masks
    "cosine_restarts_near_one": ms.cosine_restarts(1.0, 10, t_mul=1.0001, m_mul=0.9999,
                                                   end=0.01),
    "exponential_decay": ms.exponential_decay(0.1, 0.9, decay_steps=3, begin=2, end=0.01),
    "warmup_join": ms.warmup(ms.join_schedules([ms.linear_schedule(0.1, 0.05, 8),
                                                ms.cosine_decay(0.05, 300)], [12]), 4),
    # the newer shapes, in one product (one compile)
    "more_shapes": ms.multiply(
        ms.tanh_decay(1.0, 900, 0.01), ms.inverse_sqrt(1.0, 3),
        ms.piecewise_interpolate(1.0, {5: 0.5, 250: 0.2}, interpolate="cosine"),
        ms.warmup(ms.cosine_decay(1.0, 800, k_decay=2.0), 4, shape="log"),
        ms.with_noise(ms.cosine_restarts(1.0, 10, cycle_limit=50), 0.1, seed=1)),
}
STEPS = [0, 1, 3, 4, 5, 17, 249, 250, 999, 1000, 2**24 + 1, 10**9 + 7]


@pytest.mark.parametrize("name", list(FAMILIES))
def test_compiled_equals_eager_scalar_steps(name):
    schedule = FAMILIES[name]
    eager = schedule.values(STEPS)
    # a 0-d uint64 (the optimizer's step) and a Python int give the same compiled trace
    for t, want in zip(STEPS, eager.tolist()):
        for step in (mx.array(t, dtype=mx.uint64), t):
            got = schedule.compiled(step)
            assert got.dtype == mx.float32 and got.shape == ()
            assert got.item() == want, (t, step)
        assert schedule(mx.array(t, dtype=mx.uint64)).item() == want


def test_compiled_equals_eager_array_of_steps():
    # one family only: every new input shape is another trace and another C++ compile
    schedule = FAMILIES["one_cycle"]
    got = schedule.compiled(mx.array(STEPS, dtype=mx.uint64))
    assert got.shape == (len(STEPS),) and got.dtype == mx.float32
    np.testing.assert_array_equal(np.asarray(got), schedule.values(STEPS))


def test_step_conversions():
    lr = ms.cosine_decay(1.0, 100)
    want = lr(7).item()
    for step in (mx.array(7, dtype=mx.uint64), mx.array(7, dtype=mx.int32),
                 mx.array(7, dtype=mx.uint8), mx.array(7, dtype=mx.int16), np.int64(7), 7):
        assert lr(step).item() == want
    batch = lr(np.array([[1, 2], [3, 7]]))
    assert batch.shape == (2, 2) and batch[1, 1].item() == want
    assert lr([7, 7]).tolist() == [want, want]
    assert lr.values(range(5, 10, 2)).tolist() == lr.values([5, 7, 9]).tolist()
    assert lr.values(np.arange(3)).dtype == np.float32


@pytest.mark.parametrize("step, error", [(mx.array(1.5), TypeError), (-1, ValueError),
                                         (True, TypeError), (1.0, TypeError),
                                         ([0.5], TypeError)])
def test_bad_steps(step, error):
    with pytest.raises(error, match="step"):
        ms.constant(1.0)(step)
