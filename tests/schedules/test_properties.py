"""Properties that hold for all parameters, checked eagerly with hypothesis."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, reject, settings
from hypothesis import strategies as st

import mlx_schedules as ms

SETTINGS = settings(max_examples=50, deadline=None)
rates = st.floats(1e-6, 10.0)
steps = st.lists(st.integers(0, 10**10), min_size=1, max_size=20)


@SETTINGS
@given(max_lr=rates, total=st.integers(100, 10**9), pct=st.floats(0.05, 0.45),
       strategy=st.sampled_from(["cos", "linear"]), three_phase=st.booleans(),
       div=st.floats(1.0, 1e3), final_div=st.floats(1.0, 1e5), ts=steps)
def test_one_cycle_within_bounds(max_lr, total, pct, strategy, three_phase, div, final_div, ts):
    lr = ms.one_cycle(max_lr, total, pct_start=pct, anneal_strategy=strategy, div_factor=div,
                      final_div_factor=final_div, three_phase=three_phase)
    values = lr.values(ts + [0, total - 1, total]).astype(np.float64)
    initial = max_lr / div
    low = min(initial / final_div, initial)
    assert values.min() >= low * (1 - 1e-6) and values.max() <= max_lr * (1 + 1e-6)


@SETTINGS
@given(base=st.floats(0.0, 1.0), span=st.floats(1e-4, 1.0), up=st.integers(1, 50),
       down=st.integers(1, 50), mode=st.sampled_from(["triangular", "triangular2", "exp_range"]),
       gamma=st.floats(0.9, 1.0), start=st.integers(0, 10**9))
def test_triangular_cycle_is_continuous(base, span, up, down, mode, gamma, start):
    lr = ms.cyclic_lr(base, base + span, up, step_size_down=down, mode=mode, gamma=gamma)
    values = lr.values(np.arange(start, start + 2 * (up + down) + 2)).astype(np.float64)
    jumps = np.abs(np.diff(values))
    assert jumps.max() <= span / min(up, down) + 1e-6 * (base + span)
    assert values.min() >= base - 1e-6 * (base + span)
    assert values.max() <= base + span + 1e-6 * (base + span)


@SETTINGS
@given(init=rates, end_fraction=st.one_of(st.just(0.0), st.floats(1e-3, 0.9)),
       rate=st.floats(0.5, 0.99999),
       cycle=st.integers(1, 10**6), decay_steps=st.integers(1, 10**4), ts=steps)
def test_ced_below_its_envelope(init, end_fraction, rate, cycle, decay_steps, ts):
    end = init * end_fraction
    lr = ms.cyclic_exponential_decay(init, rate, cycle, end=end, decay_steps=decay_steps)
    t = np.array(ts, dtype=np.float64)
    envelope = end + (init - end) * rate ** (t / decay_steps)
    values = lr.values(ts).astype(np.float64)
    assert np.all(values <= envelope * (1 + 1e-6) + 1e-12)
    assert np.all(values >= end * (1 - 1e-6))


@SETTINGS
@given(init=rates, end_fraction=st.floats(0.0, 1.0), decay=st.integers(1, 10**9),
       exponent=st.floats(0.1, 5.0), start=st.integers(0, 10**9), stride=st.integers(1, 10**7))
def test_cosine_decay_is_non_increasing(init, end_fraction, decay, exponent, start, stride):
    lr = ms.cosine_decay(init, decay, init * end_fraction, exponent=exponent)
    values = lr.values(start + stride * np.arange(64))
    assert np.all(np.diff(values) <= 0)
    assert values[0] <= init * (1 + 1e-6) and values[-1] >= init * end_fraction * (1 - 1e-6)


def _any_schedule(draw):
    length = st.integers(1, 10**9)
    rate = st.floats(1e-6, 10.0)
    name = draw(st.sampled_from(ms.schedule_names()))
    if name == "constant":
        return ms.constant(draw(rate))
    if name == "exponential_decay":
        # a growing exponential is finite only with its ceiling
        init, decay_rate = draw(rate), draw(st.floats(1e-3, 2.0))
        return ms.exponential_decay(init, decay_rate, decay_steps=draw(length),
                                    staircase=draw(st.booleans()),
                                    begin=draw(st.integers(0, 10**6)),
                                    end=init * 100 if decay_rate > 1 else None)
    if name == "step_decay":
        return ms.step_decay(draw(rate), draw(st.floats(1e-3, 1.0)), draw(length))
    if name == "multistep_decay":
        marks = sorted(set(draw(st.lists(st.integers(0, 10**9), min_size=1, max_size=40))))
        return ms.multistep_decay(draw(rate), marks, draw(st.floats(1e-3, 1.0)))
    if name == "cosine_decay":
        return ms.cosine_decay(draw(rate), draw(length), draw(rate) / 10,
                               exponent=draw(st.floats(0.1, 4.0)))
    if name == "linear_schedule":
        return ms.linear_schedule(draw(rate), draw(rate), draw(length))
    if name == "polynomial_decay":
        return ms.polynomial_decay(draw(rate), draw(length), power=draw(st.floats(0.1, 4.0)),
                                   cycle=draw(st.booleans()))
    if name == "inverse_time_decay":
        return ms.inverse_time_decay(draw(rate), draw(length), draw(st.floats(0.0, 10.0)),
                                     staircase=draw(st.booleans()))
    if name == "piecewise_constant":
        marks = sorted(set(draw(st.lists(st.integers(0, 10**9), min_size=1, max_size=20))))
        return ms.piecewise_constant(marks, [draw(rate) for _ in range(len(marks) + 1)])
    if name == "cyclic_exponential_decay":
        return ms.cyclic_exponential_decay(draw(rate), draw(st.floats(0.5, 1.0)), draw(length),
                                           decay_steps=draw(length))
    if name == "one_cycle":
        return ms.one_cycle(draw(rate), draw(st.integers(10, 10**9)),
                            pct_start=draw(st.floats(0.1, 0.45)),
                            three_phase=draw(st.booleans()))
    if name == "one_cycle_momentum":
        return ms.one_cycle_momentum(draw(st.integers(10, 10**9)),
                                     anneal_strategy=draw(st.sampled_from(["cos", "linear"])))
    if name == "cyclic_lr":
        return ms.cyclic_lr(0.001, draw(rate) + 0.001, draw(length),
                            mode=draw(st.sampled_from(["triangular", "triangular2", "exp_range"])),
                            gamma=draw(st.floats(0.5, 1.0)))
    if name == "cyclic_momentum":
        return ms.cyclic_momentum(0.8, 0.95, draw(length), step_size_down=draw(length))
    if name == "cosine_restarts":
        try:
            return ms.cosine_restarts(draw(rate), draw(length),
                                      t_mul=draw(st.floats(1.0, 4.0)),
                                      m_mul=draw(st.floats(0.0, 1.0)))
        except ValueError as error:
            # a t_mul just above 1 needs more restart cycles than a table holds: refused
            assert "cycles before step 2**62" in str(error)
            reject()
    if name == "warmup":
        return ms.warmup(ms.cosine_decay(draw(rate), draw(length)), draw(length))
    if name == "warmup_stable_decay":
        total = draw(st.integers(2, 10**9))
        decay = draw(st.integers(1, total))
        return ms.warmup_stable_decay(draw(rate), total, warmup_steps=total - decay,
                                      decay_steps=decay,
                                      decay_shape=draw(st.sampled_from(["linear", "cosine",
                                                                        "sqrt"])))
    if name == "join_schedules":
        return ms.join_schedules([ms.constant(draw(rate)), ms.step_decay(1.0, 0.5, 3)],
                                 [draw(length)])
    if name == "inverse_sqrt":
        return ms.inverse_sqrt(draw(rate), draw(st.integers(0, 10**9)),
                               timescale=draw(st.one_of(st.none(), length)))
    if name == "tanh_decay":
        return ms.tanh_decay(draw(rate), draw(length), draw(rate) / 10,
                             lower=draw(st.floats(-10.0, 0.0)), upper=draw(st.floats(0.0, 10.0)))
    if name == "piecewise_interpolate":
        marks = sorted(set(draw(st.lists(st.integers(1, 10**9), max_size=20))))
        return ms.piecewise_interpolate(draw(rate), {m: draw(st.floats(0.0, 2.0)) for m in marks},
                                        interpolate=draw(st.sampled_from(["linear", "cosine"])))
    if name == "multiply":
        return ms.multiply(draw(rate), ms.cosine_decay(1.0, draw(length),
                                                       k_decay=draw(st.floats(0.2, 5.0))),
                           ms.step_decay(1.0, 0.5, draw(length)))
    if name == "with_noise":
        return ms.with_noise(ms.inverse_sqrt(draw(rate), draw(length)), draw(st.floats(0, 10)),
                             pct=draw(st.floats(0.01, 1.0)), seed=draw(st.integers(0, 2**62)))
    if name == "power_schedule":
        batch = draw(st.integers(1, 4096))
        decay = draw(st.integers(0, 10**6))
        total = draw(st.integers(decay, 10**9)) if decay else None
        return ms.power_schedule(batch, batch * draw(st.integers(1, 10**5)),
                                 a=draw(st.floats(1e-3, 1e3)), b=draw(st.floats(-2.0, -0.05)),
                                 max_lr=draw(rate), warmup_steps=draw(st.integers(0, 10**4))
                                 if not total or total >= 10**4 + decay else 0,
                                 decay_steps=decay, total_steps=total,
                                 decay_shape=draw(st.sampled_from(["exponential", "linear"])))
    assert name == "range_sweep"
    return ms.range_sweep(1e-7, draw(rate) + 1e-7, draw(st.integers(2, 10**9)),
                            mode=draw(st.sampled_from(["exponential", "linear"])))


@settings(max_examples=100, deadline=None)
@given(data=st.data(), ts=steps)
def test_every_schedule_returns_finite_float32(data, ts):
    schedule = _any_schedule(data.draw)
    values = schedule.values(ts + [0, 2**24 + 1, 2**62])
    assert values.dtype == np.float32 and np.all(np.isfinite(values)), schedule
    assert all(math.isfinite(v) for v in values.tolist())


@settings(max_examples=100, deadline=None)
@given(data=st.data(), ts=steps)
def test_every_schedule_stays_within_its_stated_magnitude(data, ts):
    # max_magnitude bounds |value| at every step; multiply and with_noise rely on it to
    # refuse products beyond float32 when they are built
    schedule = _any_schedule(data.draw)
    assert schedule.max_magnitude is not None, schedule
    values = np.abs(schedule.values(ts + [0, 1, 2, 2**24 + 1, 2**62]).astype(np.float64))
    # float32 rounding of a value at the bound may exceed it by a few ulps
    assert values.max() <= schedule.max_magnitude * (1 + 2**-21), (schedule, values.max())


@SETTINGS
@given(init=rates, end_fraction=st.floats(0.0, 1.0), decay=st.integers(2, 10**9),
       shape=st.sampled_from(["linear", "polynomial", "cosine-k", "tanh", "wsd-cosine",
                              "wsd-sqrt"]),
       k=st.floats(0.2, 5.0), near_end=st.booleans(), stride=st.integers(1, 10**5))
def test_decays_are_monotone_next_to_their_exact_ends(init, end_fraction, decay, shape, k,
                                                      near_end, stride):
    # The ends are exact (pinned) and the values next to them must not overshoot them.
    end = init * end_fraction
    lr = {"linear": lambda: ms.linear_schedule(init, end, decay),
          "polynomial": lambda: ms.polynomial_decay(init, decay, end, power=k, k_decay=k),
          "cosine-k": lambda: ms.cosine_decay(init, decay, end, k_decay=k),
          "tanh": lambda: ms.tanh_decay(init, decay, end),
          "wsd-cosine": lambda: ms.warmup_stable_decay(init, decay, warmup_steps=0,
                                                       decay_steps=decay, end=end,
                                                       decay_shape="cosine"),
          "wsd-sqrt": lambda: ms.warmup_stable_decay(init, decay, warmup_steps=0,
                                                     decay_steps=decay, end=end,
                                                     decay_shape="sqrt")}[shape]()
    steps = np.arange(64) * stride
    steps = np.clip(decay - steps[::-1] if near_end else steps, 0, None)
    values = lr.values(steps)
    assert np.all(np.diff(values) <= 0), (steps, values)
    assert values.max() <= np.float32(init) and values.min() >= np.float32(end)
