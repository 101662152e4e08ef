"""Composed schedules (join, warmup, warmup-stable-decay) and the range-test sweep."""

from __future__ import annotations

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np
import pytest
import schedule_reference as ref
from schedule_reference import around, assert_close

import mlx_schedules as ms


def test_join_matches_reference_across_boundaries():
    lr = ms.join_schedules([ms.linear_schedule(0.0, 1.0, 5), ms.cosine_decay(1.0, 20, 0.1),
                            ms.constant(0.05)], [5, 25])
    pieces = [lambda t: ref.linear_schedule(t, 0.0, 1.0, 5),
              lambda t: ref.cosine_decay(t, 1.0, 20, 0.1), lambda t: 0.05]
    steps = around(5, 25, 1000)
    want = [ref.join_schedules(t, pieces, [5, 25]) for t in steps]
    assert_close(lr.values(steps), want, 1.0, steps)


def test_join_with_boundary_zero_skips_first():
    lr = ms.join_schedules([ms.constant(9.0), ms.linear_schedule(1.0, 0.0, 4)], [0])
    assert lr.values(6).tolist() == [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]


def test_join_accepts_mlx_builtin_schedules():
    builtin = optim.cosine_decay(0.1, 30)
    lr = ms.join_schedules([ms.linear_schedule(0.0, 0.1, 10), builtin], [10])
    pieces = [lambda t: ref.linear_schedule(t, 0.0, 0.1, 10),
              lambda t: ref.cosine_decay(t, 0.1, 30)]
    steps = around(10, 40, 100)
    want = [ref.join_schedules(t, pieces, [10]) for t in steps]
    assert_close(lr.values(steps), want, 0.1, steps, rtol=2e-6)
    # and under the optimizer's uint64 step, where t - boundary would wrap if unsigned
    assert lr(mx.array(3, dtype=mx.uint64)).item() == pytest.approx(0.03, rel=1e-6)


def test_join_inside_mlx_join():
    # and the other way round: our schedules inside MLX's join
    lr = optim.join_schedules([ms.linear_schedule(0.0, 0.1, 4), ms.one_cycle(0.1, 20)], [4])
    for t in [0, 3, 4, 5, 23, 30]:
        want = ref.linear_schedule(t, 0.0, 0.1, 4) if t < 4 else ref.one_cycle(t - 4, 0.1, 20)
        assert_close(lr(mx.array(t, dtype=mx.uint64)).item(), want, 0.1, [t])


@pytest.mark.parametrize("init", [0.0, 0.01])
def test_warmup_matches_reference(init):
    lr = ms.warmup(ms.cosine_decay(1.0, 20, 0.1), 8, init=init)
    steps = around(8, 28, 100)
    want = [ref.warmup(t, lambda s: ref.cosine_decay(s, 1.0, 20, 0.1), 8, init) for t in steps]
    assert_close(lr.values(steps), want, 1.0, steps)


def test_warmup_reaches_peak_once():
    lr = ms.warmup(ms.cosine_decay(1.0, 10), 4)
    values = lr.values(8)
    assert (values == 1.0).sum() == 1 and values[4] == 1.0


def test_warmup_of_periodic_and_mlx_schedules():
    lr = ms.warmup(ms.cyclic_exponential_decay(0.5, 0.9, 6), 3, init=0.1)
    steps = list(range(30))
    want = [ref.warmup(t, lambda s: ref.cyclic_exponential_decay(s, 0.5, 0.9, 6), 3, 0.1)
            for t in steps]
    assert_close(lr.values(steps), want, 0.5, steps)
    builtin = ms.warmup(optim.exponential_decay(0.2, 0.9), 5)
    want = [ref.warmup(t, lambda s: ref.exponential_decay(s, 0.2, 0.9), 5) for t in steps]
    assert_close(builtin.values(steps), want, 0.2, steps, rtol=2e-6)


@pytest.mark.parametrize("init, peak, warmup_steps, decay_steps, end, exponent",
                         [(0.0, 1e-3, 100, 1000, 0.0, 1.0), (1e-5, 0.1, 10, 60, 1e-3, 1.0),
                          (0.0, 1.0, 1, 11, 0.1, 2.0)])
def test_warmup_equals_optax_warmup_cosine_decay(init, peak, warmup_steps, decay_steps, end,
                                                 exponent):
    lr = ms.warmup(ms.cosine_decay(peak, decay_steps - warmup_steps, end, exponent=exponent),
                   warmup_steps, init=init)
    steps = around(warmup_steps, decay_steps) + list(range(0, decay_steps + 20, 7))
    want = [ref.optax_warmup_cosine_decay(t, init, peak, warmup_steps, decay_steps, end,
                                          exponent) for t in steps]
    assert_close(lr.values(steps), want, peak, steps)


@pytest.mark.parametrize("decay_shape", ["linear", "cosine", "sqrt"])
@pytest.mark.parametrize("warmup_steps, init, end", [(10, 0.0, 0.0), (0, 0.0, 0.01),
                                                     (7, 0.02, 0.05)])
def test_warmup_stable_decay_matches_reference(decay_shape, warmup_steps, init, end):
    lr = ms.warmup_stable_decay(0.5, 100, warmup_steps=warmup_steps, decay_steps=30, init=init,
                                end=end, decay_shape=decay_shape)
    steps = sorted(set(around(warmup_steps, 70, 100) + list(range(60, 105)) + [10**6]))
    want = [ref.warmup_stable_decay(t, 0.5, 100, warmup_steps, 30, init, end, decay_shape)
            for t in steps]
    assert_close(lr.values(steps), want, 0.5, steps)


def test_warmup_stable_decay_whole_run_is_warmup_and_decay():
    lr = ms.warmup_stable_decay(1.0, 10, warmup_steps=4, decay_steps=6)
    steps = list(range(12))
    want = [ref.warmup_stable_decay(t, 1.0, 10, 4, 6) for t in steps]
    assert_close(lr.values(steps), want, 1.0, steps)


@pytest.mark.parametrize("mode", ["exponential", "linear"])
def test_range_sweep_matches_reference(mode):
    lr = ms.range_sweep(1e-6, 1.0, 101, mode=mode)
    steps = around(50, 100) + [1000]
    want = [ref.range_sweep(t, 1e-6, 1.0, 101, mode) for t in steps]
    assert_close(lr.values(steps), want, 1e-6 if mode == "exponential" else 1.0, steps,
                 rtol=2e-6)
    assert lr(0).item() == pytest.approx(1e-6, rel=1e-6)
    assert lr(100).item() == pytest.approx(1.0, rel=1e-6)


def test_range_sweep_exponential_is_geometric():
    values = ms.range_sweep(1e-4, 1.0, 5).values(5).astype(np.float64)
    assert_close(values[1:] / values[:-1], [10.0] * 4, 10.0, rtol=2e-6)
