"""The shapes the peers have: each against the peer's documented formula, written out in
float64 in ``schedule_reference`` (Hugging Face's inverse square root, timm's tanh,
k-decay and cycle limit, Hugging Face's and DeepSpeed's warmups, optax's piecewise
interpolation, PyTorch's ``ChainedScheduler`` and ``CyclicLR`` with a custom ``scale_fn``),
at every step of a few cycles, vectorised and one ``uint64`` step at a time, and at step
counts beyond float32's exact integers."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest
import schedule_reference as ref
from schedule_reference import around, assert_close

import mlx_schedules as ms

BIG_STEPS = [2**24 + 1, 2**24 + 3, 10**8 + 5, 10**9 + 7]


def pc(torch_factor, *args, **kwargs):
    return lambda t: torch_factor(t, *args, **kwargs)


# (id, schedule, reference of t, steps, scale)
CASES = [
    # Hugging Face get_inverse_sqrt_schedule
    ("inverse_sqrt", ms.inverse_sqrt(0.1, 10), lambda t: ref.hf_inverse_sqrt(t, 0.1, 10),
     list(range(40)) + [1000, 10**6], 0.1),
    ("inverse_sqrt-timescale", ms.inverse_sqrt(1.0, 4, timescale=100),
     lambda t: ref.hf_inverse_sqrt(t, 1.0, 4, 100), list(range(20)) + [500, 10**7], 1.0),
    ("inverse_sqrt-no-warmup", ms.inverse_sqrt(1.0, 0),
     lambda t: ref.hf_inverse_sqrt(t, 1.0, 0), [0, 1, 2, 9999, 10000, 10001, 10**6], 1.0),
    # timm TanhLRScheduler, one cycle
    ("tanh", ms.tanh_decay(0.1, 20), lambda t: ref.timm_tanh(t, 0.1, 20), list(range(25)), 0.1),
    ("tanh-end-bounds", ms.tanh_decay(1.0, 13, 0.05, lower=-6.0, upper=4.0),
     lambda t: ref.timm_tanh(t, 1.0, 13, 0.05, -6.0, 4.0), list(range(16)), 1.0),
    # timm k-decay (CosineLRScheduler / PolyLRScheduler with k_decay)
    ("cosine-k_decay", ms.cosine_decay(0.1, 20, 0.001, k_decay=2.0),
     lambda t: ref.timm_cosine(t, 0.1, 20, 0.001, k_decay=2.0), list(range(24)), 0.1),
    ("cosine-k_decay-below-one", ms.cosine_decay(1.0, 17, k_decay=0.5),
     lambda t: ref.timm_cosine(t, 1.0, 17, k_decay=0.5), list(range(20)), 1.0),
    ("polynomial-k_decay", ms.polynomial_decay(1.0, 15, 0.01, power=2.0, k_decay=1.5),
     lambda t: ref.timm_poly(t, 1.0, 15, 0.01, 2.0, 1.5), list(range(18)), 1.0),
    ("polynomial-k_decay-cycle", ms.polynomial_decay(1.0, 5, 0.1, cycle=True, k_decay=3.0),
     lambda t: ref.polynomial_decay(t, 1.0, 5, 0.1, 1.0, True, 3.0), list(range(32)), 1.0),
    # timm CosineLRScheduler(cycle_limit=...), m_mul = 1
    ("restarts-cycle_limit", ms.cosine_restarts(0.1, 10, t_mul=1.0, end=0.001, cycle_limit=3),
     lambda t: ref.timm_cosine(t, 0.1, 10, 0.001, 1.0, 1.0, 3), list(range(45)), 0.1),
    ("restarts-cycle_limit-t_mul2", ms.cosine_restarts(1.0, 4, t_mul=2.0, cycle_limit=3),
     lambda t: ref.timm_cosine(t, 1.0, 4, 0.0, 2.0, 1.0, 3), list(range(35)), 1.0),
    ("restarts-cycle_limit-t_mul1.5", ms.cosine_restarts(1.0, 5, t_mul=1.5, end=0.1,
                                                         cycle_limit=4),
     lambda t: ref.timm_cosine(t, 1.0, 5, 0.1, 1.5, 1.0, 4), list(range(45)), 1.0),
    # and the restarts of Keras with m_mul, limited
    ("restarts-cycle_limit-m_mul", ms.cosine_restarts(1.0, 4, m_mul=0.5, cycle_limit=2),
     lambda t: ref.cosine_restarts(t, 1.0, 4, 2.0, 0.5, 0.0, 2), list(range(16)), 1.0),
    # warmup shapes: the contract's ramps, DeepSpeed's WarmupLR, Hugging Face's WSD warmup
    ("warmup-cosine", ms.warmup(ms.cosine_decay(1.0, 20), 8, init=0.1, shape="cosine"),
     lambda t: ref.warmup_shaped(t, lambda s: ref.cosine_decay(s, 1.0, 20), 8, 0.1, "cosine"),
     list(range(32)), 1.0),
    ("warmup-log", ms.warmup(ms.constant(0.5), 9, shape="log"),
     lambda t: ref.warmup_shaped(t, lambda s: 0.5, 9, 0.0, "log"), list(range(12)), 0.5),
    # DeepSpeed WarmupLR(min, max, w, "log") reaches 1 at w - 1: our warmup over w - 1 steps
    ("deepspeed-log", ms.warmup(ms.constant(0.01), 99, init=0.001, shape="log"),
     lambda t: ref.deepspeed_warmup_lr(t, 0.001, 0.01, 100, "log"), list(range(105)), 0.01),
    ("deepspeed-linear", ms.warmup(ms.constant(0.01), 100, init=0.001),
     lambda t: ref.deepspeed_warmup_lr(t, 0.001, 0.01, 100, "linear"), list(range(105)), 0.01),
    ("hf-wsd-cosine-warmup", ms.warmup_stable_decay(0.1, 100, warmup_steps=10, decay_steps=20,
                                                    warmup_shape="cosine"),
     lambda t: ref.hf_wsd_warmup(t, 0.1, 10, "cosine"), list(range(11)), 0.1),
    ("wsd-log-warmup", ms.warmup_stable_decay(1.0, 30, warmup_steps=7, decay_steps=10,
                                              init=0.01, end=0.02, decay_shape="cosine",
                                              warmup_shape="log"),
     lambda t: ref.warmup_stable_decay(t, 1.0, 30, 7, 10, 0.01, 0.02, "cosine", "log"),
     list(range(33)), 1.0),
    # optax piecewise_interpolate_schedule
    ("piecewise_interpolate-linear", ms.piecewise_interpolate(0.1, {5: 2.0, 12: 0.1, 20: 0.5}),
     lambda t: ref.optax_piecewise_interpolate(t, "linear", 0.1, {5: 2.0, 12: 0.1, 20: 0.5}),
     list(range(25)), 0.2),
    ("piecewise_interpolate-cosine", ms.piecewise_interpolate(
        1.0, {3: 0.5, 10: 0.0, 11: 1.0}, interpolate="cosine"),
     lambda t: ref.optax_piecewise_interpolate(t, "cosine", 1.0, {3: 0.5, 10: 0.0, 11: 1.0}),
     list(range(14)), 1.0),
    ("piecewise_interpolate-many", ms.piecewise_interpolate(
        1.0, {b: 0.9 for b in range(2, 60, 3)}),
     lambda t: ref.optax_piecewise_interpolate(t, "linear", 1.0, {b: 0.9 for b in range(2, 60, 3)}),
     list(range(65)), 1.0),
    ("piecewise_interpolate-none", ms.piecewise_interpolate(0.3, None),
     lambda t: ref.optax_piecewise_interpolate(t, "linear", 0.3, {}), [0, 1, 10**9], 0.3),
    # PyTorch ChainedScheduler of multiplicative schedulers, base rate 0.5
    ("chained-constant-exponential", ms.multiply(
        0.5, ms.piecewise_constant([1], [0.1, 1.0]), ms.exponential_decay(1.0, 0.9)),
     lambda t: ref.torch_chained(t, 0.5, [pc(ref.torch_constant_lr, 0.1, 2),
                                          pc(ref.torch_exponential_lr, 0.9)]),
     list(range(10)), 0.5),
    ("chained-linear-step", ms.multiply(
        ms.linear_schedule(0.25, 1.0, 4), ms.step_decay(1.0, 0.5, 3), 0.2),
     lambda t: ref.torch_chained(t, 0.2, [pc(ref.torch_linear_lr, 0.25, 1.0, 4),
                                          pc(ref.torch_step_lr, 3, 0.5)]),
     list(range(15)), 0.2),
    # PyTorch CyclicLR with a custom scale_fn, by cycle and by iteration
    ("cyclic-scale_fn-cycle", ms.cyclic_lr(0.01, 0.1, 4, step_size_down=3,
                                           scale_fn=lambda c: 1.0 / (2.0 ** (c - 1))),
     lambda t: ref.torch_cyclic_custom(t, 0.01, 0.1, 4, 3, lambda c: 1 / (2.0 ** (c - 1))),
     list(range(30)), 0.1),
    ("cyclic-scale_fn-sine", ms.cyclic_lr(0.0, 1.0, 5,
                                          scale_fn=lambda c: 0.5 * (1 + mx.sin(c * math.pi / 2))),
     lambda t: ref.torch_cyclic_custom(t, 0.0, 1.0, 5, None,
                                       lambda c: 0.5 * (1 + math.sin(c * math.pi / 2))),
     list(range(42)), 1.0),
    ("cyclic-scale_fn-iterations", ms.cyclic_lr(0.01, 0.1, 3, scale_fn=lambda t: 0.97 ** t,
                                                scale_mode="iterations"),
     lambda t: ref.torch_cyclic_custom(t, 0.01, 0.1, 3, None, lambda x: 0.97 ** x,
                                       "iterations"),
     list(range(25)), 0.1),
]


@pytest.mark.parametrize("schedule, reference, steps, scale", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_values_match_the_peer(schedule, reference, steps, scale):
    assert_close(schedule.values(steps), ref.reference_values(reference, steps), scale, steps)


@pytest.mark.parametrize("schedule, reference, steps, scale", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_uint64_step_matches_the_peer(schedule, reference, steps, scale):
    for t in steps[:12]:
        got = schedule(mx.array(t, dtype=mx.uint64))
        assert got.dtype == mx.float32 and got.shape == ()
        assert_close(got.item(), reference(t), scale, [t])


# Far beyond 2**24: horizons long enough that these steps are mid-phase.
LARGE = [
    ("inverse_sqrt", ms.inverse_sqrt(1.0, 3 * 10**8 + 1),
     lambda t: ref.hf_inverse_sqrt(t, 1.0, 3 * 10**8 + 1)),
    ("inverse_sqrt-timescale", ms.inverse_sqrt(1.0, 2**24 + 5, timescale=10**7 + 3),
     lambda t: ref.hf_inverse_sqrt(t, 1.0, 2**24 + 5, 10**7 + 3)),
    ("tanh", ms.tanh_decay(1.0, 2 * 10**9, 0.01),
     lambda t: ref.timm_tanh(t, 1.0, 2 * 10**9, 0.01)),
    ("cosine-k_decay", ms.cosine_decay(1.0, 2 * 10**9, k_decay=1.7),
     lambda t: ref.cosine_decay(t, 1.0, 2 * 10**9, 0.0, 1.0, 1.7)),
    ("polynomial-k_decay", ms.polynomial_decay(1.0, 2 * 10**9, 0.01, power=2.0, k_decay=0.6),
     lambda t: ref.polynomial_decay(t, 1.0, 2 * 10**9, 0.01, 2.0, False, 0.6)),
    ("restarts-cycle_limit", ms.cosine_restarts(1.0, 10**8 + 1, t_mul=1.0, cycle_limit=9),
     lambda t: ref.cosine_restarts(t, 1.0, 10**8 + 1, 1.0, 1.0, 0.0, 9)),
    ("restarts-short-cycles", ms.cosine_restarts(1.0, 999, t_mul=1.0, cycle_limit=10**7),
     lambda t: ref.cosine_restarts(t, 1.0, 999, 1.0, 1.0, 0.0, 10**7)),
    ("warmup-log", ms.warmup(ms.constant(1.0), 2 * 10**9, shape="log"),
     lambda t: ref.warmup_shaped(t, lambda s: 1.0, 2 * 10**9, 0.0, "log")),
    ("warmup-cosine", ms.warmup(ms.constant(1.0), 2 * 10**9, init=0.1, shape="cosine"),
     lambda t: ref.warmup_shaped(t, lambda s: 1.0, 2 * 10**9, 0.1, "cosine")),
    ("piecewise_interpolate", ms.piecewise_interpolate(1.0, {2**24: 0.5, 10**9 + 6: 0.1}),
     lambda t: ref.optax_piecewise_interpolate(t, "linear", 1.0, {2**24: 0.5, 10**9 + 6: 0.1})),
    ("multiply", ms.multiply(ms.cosine_decay(1.0, 3 * 10**9), ms.linear_schedule(1.0, 0.5,
                                                                               2 * 10**9)),
     lambda t: ref.cosine_decay(t, 1.0, 3 * 10**9) * ref.linear_schedule(t, 1.0, 0.5, 2 * 10**9)),
    ("cyclic-scale_fn-cycle", ms.cyclic_lr(0.01, 0.1, 10**8 + 3,
                                           scale_fn=lambda c: 1.0 / c),
     lambda t: ref.torch_cyclic_custom(t, 0.01, 0.1, 10**8 + 3, None, lambda c: 1.0 / c)),
    # short cycles far out: the cycle number must be exact
    ("cyclic-scale_fn-short", ms.cyclic_lr(0.01, 0.1, 7, step_size_down=6,
                                           scale_fn=lambda c: 0.5 + 0.5 * (c % 2)),
     lambda t: ref.torch_cyclic_custom(t, 0.01, 0.1, 7, 6, lambda c: 0.5 + 0.5 * (c % 2))),
]


@pytest.mark.parametrize("schedule, reference", [c[1:] for c in LARGE],
                         ids=[c[0] for c in LARGE])
def test_large_steps_match_float64(schedule, reference):
    got = schedule.values(BIG_STEPS)
    want = [reference(t) for t in BIG_STEPS]
    assert len(set(want)) > 1 or reference(0) != want[0]   # not a held end value only
    for t, value, expected in zip(BIG_STEPS, got.tolist(), want):
        assert value == pytest.approx(expected, rel=1e-5, abs=1e-7), f"t={t}"
        assert schedule(mx.array(t, dtype=mx.uint64)).item() == value


# Behaviours beyond the values ---------------------------------------------------------------

def test_cosine_restarts_cycle_limit_holds_end_to_the_headroom():
    lr = ms.cosine_restarts(1.0, 10, t_mul=2.0, end=0.25, cycle_limit=2)   # cycles end at 30
    assert lr.values([29, 30, 31, 10**9, 2**62]).tolist()[1:] == [0.25] * 4
    assert lr.values([29]).tolist()[0] > 0.25
    assert lr(mx.array(0, dtype=mx.uint64) - 1).item() == 0.25       # saturated 2**64 - 1


def test_cycle_limit_beyond_the_headroom_never_ends():
    lr = ms.cosine_restarts(1.0, 2**61, t_mul=1.0, cycle_limit=3)      # limit at 3·2**61
    want = ref.cosine_restarts(2**62, 1.0, 2**61, 1.0)
    assert lr.values([2**62]).tolist() == [pytest.approx(want, abs=1e-7)]


def test_scale_fn_gets_exact_int64_cycle_numbers():
    seen = []

    def scale(cycle):
        seen.append(cycle.dtype)
        return mx.where(cycle == 10**8 + 1, 1.0, 0.0)

    lr = ms.cyclic_lr(0.0, 1.0, 5, scale_fn=scale)
    # step 10**9 lies in cycle 10**8 + 1 (period 10): only an exact cycle number matches
    assert lr.values([10**9 + 5, 10**9 + 15]).tolist() == [1.0, 0.0]
    assert set(seen) == {mx.int64}


def test_scale_fn_schedule_is_not_data():
    lr = ms.cyclic_lr(0.01, 0.1, scale_fn=lambda c: 1.0 / c)
    with pytest.raises(ValueError, match=r"cyclic_lr: scale_fn=.* is a function, not a "
                                         r"schedule of this package, and cannot be described"):
        lr.to_config()
    with pytest.raises(ValueError, match=r"cannot be described as data"):
        ms.multiply(lr, 0.5).to_config()


def test_scale_fn_inside_a_compiled_optimizer_step():

    lr = ms.cyclic_lr(0.01, 0.1, 2, scale_fn=lambda c: 1.0 / c)
    rates = ref.rates_used(lr, 9)
    want = [ref.torch_cyclic_custom(t, 0.01, 0.1, 2, None, lambda c: 1.0 / c) for t in range(9)]
    assert_close(rates, want, 0.1)


def test_piecewise_interpolate_keys_survive_json():
    import json

    lr = ms.piecewise_interpolate(1.0, {20: 0.1, 5: 0.5})
    config = json.loads(json.dumps(lr.to_config()))
    assert config["boundaries_and_scales"] == {"20": 0.1, "5": 0.5}
    rebuilt = ms.from_config(config)
    np.testing.assert_array_equal(rebuilt.values(30), lr.values(30))


def test_multiply_of_numbers_only_and_of_mlx_schedules():
    import mlx.optimizers as optim

    assert ms.multiply(0.5, 0.2).values(3).tolist() == [np.float32(0.1)] * 3
    lr = ms.multiply(optim.cosine_decay(1.0, 10), 0.5)          # any callable of the step
    assert_close(lr.values([0, 5, 10]), [0.5, 0.25, 0.0], 0.5)


@pytest.mark.parametrize("steps", [range(6), around(1, 10, 100)])
def test_with_no_noise_window_the_schedule_is_unchanged(steps):
    inner = ms.cosine_decay(0.1, 100)
    steps = list(steps)
    lr = ms.with_noise(inner, 0.5, start=10**9)
    np.testing.assert_array_equal(lr.values(steps), inner.values(steps))
    np.testing.assert_array_equal(ms.with_noise(inner, 0.0).values(steps), inner.values(steps))


# cosine_restarts finds a step's cycle three ways, by the number of cycles before 2**62:
# fused selects (<= 8), a search of the table (<= 16), the closed form corrected (more).
@pytest.mark.parametrize("first, t_mul, limit", [
    (10, 1e10, None), (10, 2.0, 5), (10**12, 4.0, None), (10**12, 4.0, 12), (1000, 2.0, None),
    (7, 1.001, None), (7, 1.3, 40)])
def test_restart_cycle_located_on_every_path(first, t_mul, limit):
    lr = ms.cosine_restarts(1.0, first, t_mul=t_mul, end=0.01, cycle_limit=limit)
    steps = {0, 1, 2**62}
    for cycle in range(1, 61):     # at, before and after the first 60 restarts
        start = ref.cycle_start_exact(cycle, first, t_mul)
        if start > 2**62:
            break
        steps.update((start - 1, start, start + 1))
    steps = sorted(s for s in steps if 0 <= s <= 2**62)
    # exact starts: float64 sums of the lengths are off by steps beyond 2**53
    want = [ref.cosine_restarts_exact(t, 1.0, first, t_mul, 1.0, 0.01, limit) for t in steps]
    assert_close(lr.values(steps), want, 1.0, steps)
