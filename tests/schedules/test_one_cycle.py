"""one_cycle and one_cycle_momentum against PyTorch OneCycleLR's phase table (float64)."""

from __future__ import annotations

import mlx.core as mx
import pytest
import schedule_reference as ref
from schedule_reference import around, assert_close

import mlx_schedules as ms

# (total_steps, pct_start, anneal_strategy, three_phase)
SHAPES = [
    (100, 0.3, "cos", False),
    (100, 0.3, "linear", False),
    (100, 0.3, "cos", True),
    (100, 0.3, "linear", True),
    (10, 0.25, "cos", False),     # phase 1 ends at the fractional step 1.5
    (10, 0.25, "linear", True),   # phase ends 1.5 and 3.0
    (10, 0.25, "cos", True),
    (10, 0.5, "linear", False),   # the seed's symmetric linear cycle
    (7, 0.4, "cos", True),        # ends 1.8, 3.6, 6
    (1000, 0.05, "cos", False),
]
IDS = [f"N{n}-p{p}-{s}-{'3' if three else '2'}phase" for n, p, s, three in SHAPES]


def phase_steps(total_steps, pct_start, three_phase):
    ends = [pct_start * total_steps - 1, total_steps - 1]
    if three_phase:
        ends.insert(1, 2 * pct_start * total_steps - 2)
    return around(*ends) + [total_steps, total_steps + 7, 10**6]


@pytest.mark.parametrize("total_steps, pct_start, strategy, three_phase", SHAPES, ids=IDS)
def test_one_cycle_matches_pytorch(total_steps, pct_start, strategy, three_phase):
    lr = ms.one_cycle(0.1, total_steps, pct_start=pct_start, anneal_strategy=strategy,
                      div_factor=20.0, final_div_factor=50.0, three_phase=three_phase)
    steps = sorted(set(phase_steps(total_steps, pct_start, three_phase)
                       + list(range(min(total_steps, 40)))))
    want = [ref.one_cycle(t, 0.1, total_steps, pct_start, strategy, 20.0, 50.0, three_phase)
            for t in steps]
    assert_close(lr.values(steps), want, 0.1, steps)


@pytest.mark.parametrize("total_steps, pct_start, strategy, three_phase", SHAPES, ids=IDS)
def test_one_cycle_momentum_matches_pytorch(total_steps, pct_start, strategy, three_phase):
    momentum = ms.one_cycle_momentum(total_steps, base_momentum=0.8, max_momentum=0.9,
                                     pct_start=pct_start, anneal_strategy=strategy,
                                     three_phase=three_phase)
    steps = sorted(set(phase_steps(total_steps, pct_start, three_phase)
                       + list(range(min(total_steps, 40)))))
    want = [ref.one_cycle_momentum(t, total_steps, 0.8, 0.9, pct_start, strategy, three_phase)
            for t in steps]
    assert_close(momentum.values(steps), want, 0.9, steps)


def test_one_cycle_defaults_match_pytorch_defaults():
    lr = ms.one_cycle(0.01, 500)
    steps = around(149, 499) + [1000]
    assert_close(lr.values(steps), [ref.one_cycle(t, 0.01, 500) for t in steps], 0.01, steps)
    assert lr(0).item() == pytest.approx(0.01 / 25, rel=1e-6)
    assert lr(499).item() == pytest.approx(0.01 / 25 / 1e4, rel=1e-5)


def test_one_cycle_uint64_steps_and_hold_past_horizon():
    lr = ms.one_cycle(0.1, 50, three_phase=True)
    last = ref.one_cycle(49, 0.1, 50, three_phase=True)
    for t in [0, 14, 15, 28, 29, 49, 50, 51, 10**9, 2**40]:
        want = ref.one_cycle(t, 0.1, 50, three_phase=True)
        assert_close(lr(mx.array(t, dtype=mx.uint64)).item(), want, 0.1, [t])
    assert lr(2**40).item() == pytest.approx(last, rel=1e-6)


def test_pct_start_quarter_of_ten_hand_values():
    # PyTorch: phase 1 ends at step 1.5, so step 1 is 2/3 of the way up, step 2 is 0.5/7.5
    # of the way down.
    lr = ms.one_cycle(1.0, 10, pct_start=0.25, anneal_strategy="linear", div_factor=10.0,
                      final_div_factor=10.0)
    assert lr(1).item() == pytest.approx(0.1 + 0.9 * (1 / 1.5), rel=1e-6)
    assert lr(2).item() == pytest.approx(1.0 + (0.01 - 1.0) * (0.5 / 7.5), rel=1e-6)
