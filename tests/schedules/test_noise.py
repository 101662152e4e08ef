"""with_noise: the noise is a pure function of (seed, step), standard normal, clipped,
and the same eagerly, compiled, vectorised, rebuilt from its config and inside an
optimizer's compiled step. The reference generator is written here in plain Python from
the published splitmix64, lowbias32 and Box-Muller definitions."""

from __future__ import annotations

import json
import math

import mlx.core as mx
import numpy as np
import pytest
import schedule_reference as ref

import mlx_schedules as ms

MASK64, MASK32 = (1 << 64) - 1, (1 << 32) - 1


def splitmix64(state: int) -> int:
    """splitmix64's output for a state (Steele, Lea & Flood 2014)."""
    z = (state + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def lowbias32(x: int) -> int:
    """Chris Wellons's 32-bit integer hash "lowbias32"."""
    x &= MASK32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & MASK32
    x ^= x >> 15
    x = (x * 0x846CA68B) & MASK32
    return x ^ (x >> 16)


def reference_normal(t: int, seed: int) -> float:
    """The documented draw: the step's 32-bit words hashed under the seed's key, the top
    24 bits of two hashes as uniforms, then Box-Muller."""
    key = splitmix64(seed)
    key_hi, key_lo = key >> 32, key & MASK32
    a = lowbias32((t >> 32) ^ key_hi)
    b = lowbias32((t & MASK32) ^ a ^ key_lo)
    c = lowbias32(b ^ key_hi)
    u1 = ((b >> 8) + 1) / 2**24
    u2 = (c >> 8) / 2**24
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def reference(t, inner, std, pct=0.67, start=0, end=None, seed=42):
    value = inner(t)
    if start <= t and (end is None or t < end):
        value *= 1.0 + min(max(std * reference_normal(t, seed), -pct), pct)
    return value


STEPS = [0, 1, 2, 3, 17, 999, 2**24 + 1, 10**9 + 7, 2**40 + 3, 2**62 - 1, 2**62]


@pytest.mark.parametrize("seed", [0, 42, 2**62])
def test_noise_matches_the_documented_generator(seed):
    lr = ms.with_noise(ms.constant(0.1), 0.2, seed=seed)
    want = [reference(t, lambda s: 0.1, 0.2, seed=seed) for t in STEPS]
    np.testing.assert_allclose(lr.values(STEPS), want, rtol=2e-6)


def test_noise_window_and_clip():
    inner = ms.linear_schedule(1.0, 0.5, 100)
    lr = ms.with_noise(inner, 10.0, pct=0.3, start=20, end=60, seed=7)
    steps = np.arange(100)
    got = lr.values(steps).astype(np.float64)
    base = inner.values(steps).astype(np.float64)
    outside = (steps < 20) | (steps >= 60)
    np.testing.assert_array_equal(got[outside], base[outside])
    ratio = got[~outside] / base[~outside]
    # std 10: almost every draw is clipped to 1 ± 0.3
    assert np.all(np.abs(ratio - 1) <= 0.3 + 1e-6)
    assert np.sum(np.isclose(ratio, 1.3, rtol=1e-6)) > 10
    assert np.sum(np.isclose(ratio, 0.7, rtol=1e-6)) > 10
    want = [reference(int(t), lambda s: 1.0 + (0.5 - 1.0) * s / 100, 10.0, 0.3, 20, 60, 7)
            for t in steps]
    np.testing.assert_allclose(got, want, rtol=2e-6)


def test_draws_are_standard_normal():
    n = 100_000
    # a tiny std reads eps itself: 1 + 1e-3·eps never reaches the clip
    eps = (ms.with_noise(ms.constant(1.0), 1e-3, seed=3).values(n).astype(np.float64) - 1) / 1e-3
    assert abs(eps.mean()) < 0.01
    assert abs(eps.std() - 1.0) < 0.01
    # quantiles of the standard normal: 2.5%, 16%, 50%, 84%, 97.5%
    np.testing.assert_allclose(np.quantile(eps, [0.025, 0.1587, 0.5, 0.8413, 0.975]),
                               [-1.96, -1.0, 0.0, 1.0, 1.96], atol=0.03)
    # neighbouring steps are uncorrelated, and so are neighbouring seeds
    assert abs(np.corrcoef(eps[:-1], eps[1:])[0, 1]) < 0.01
    # steps 2**32 apart (the same low word) are unrelated too
    far = (ms.with_noise(ms.constant(1.0), 1e-3, seed=3).values(np.arange(n) + 2**32)
           .astype(np.float64) - 1) / 1e-3
    assert abs(np.corrcoef(eps, far)[0, 1]) < 0.01
    other = (ms.with_noise(ms.constant(1.0), 1e-3, seed=4).values(n).astype(np.float64) - 1)
    assert abs(np.corrcoef(eps, other)[0, 1]) < 0.01


def test_same_noise_on_every_call_compiled_and_rebuilt():
    lr = ms.with_noise(ms.cosine_decay(0.1, 1000), 0.1, start=5, end=900, seed=11)
    steps = [0, 4, 5, 6, 100, 899, 900, 2**24 + 1]
    first = lr.values(steps)
    np.testing.assert_array_equal(lr.values(steps), first)
    # one step at a time, as the optimizer calls it, and the stand-alone compiled function
    for t, value in zip(steps, first.tolist()):
        assert lr(mx.array(t, dtype=mx.uint64)).item() == value
        assert lr.compiled(mx.array(t, dtype=mx.uint64)).item() == value
    # a step's noise does not depend on which other steps are evaluated with it
    np.testing.assert_array_equal(lr.values(np.arange(1000))[steps[:-1]], first[:-1])
    # a resumed run rebuilds the schedule from its saved config: the same noise
    rebuilt = ms.from_config(json.loads(json.dumps(lr.to_config())))
    np.testing.assert_array_equal(rebuilt.values(steps), first)


def test_noise_inside_a_compiled_training_step():
    lr = ms.with_noise(ms.constant(0.1), 0.5, seed=5)
    rates = ref.rates_used(lr, 6, "Adam")
    np.testing.assert_array_equal(np.float32(rates), lr.values(6))
    assert len(set(rates)) == 6
