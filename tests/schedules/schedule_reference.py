"""Closed-form float64 references for every schedule, written plainly from the formulas.

Each function takes one integer step ``t`` and returns a Python float. They follow the
published definitions (PyTorch, Keras, optax, MLX) as directly as possible, and do not
import ``mlx_schedules``, so that a test comparing the two compares independent code.
Where a library's own formula is itself numerically fragile (a float ``log`` to locate
restarts), the reference walks the cycles in exact integer or float64 arithmetic instead.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence

# MLX drop-ins -----------------------------------------------------------------------------

def exponential_decay(t, init, decay_rate, decay_steps=1, staircase=False, begin=0,
                      end=None):
    elapsed = max(t - begin, 0)
    exponent = elapsed // decay_steps if staircase else elapsed / decay_steps
    value = init * decay_rate ** exponent
    if end is None:
        return value
    return max(value, end) if decay_rate < 1 else min(value, end)


def step_decay(t, init, decay_rate, step_size):
    return init * decay_rate ** (t // step_size)


def cosine_decay(t, init, decay_steps, end=0.0, exponent=1.0):
    shape = 0.5 * (1.0 + math.cos(math.pi * min(t, decay_steps) / decay_steps))
    return end + (init - end) * shape ** exponent


def linear_schedule(t, init, end, steps):
    return init + (end - init) * min(t, steps) / steps


def join_schedules(t, schedules: Sequence[Callable[[int], float]], boundaries):
    index = bisect.bisect_right(boundaries, t)
    offset = boundaries[index - 1] if index else 0
    return schedules[index](t - offset)


# The seed's schedules ---------------------------------------------------------------------

def cyclic_exponential_decay(t, init, decay_rate, cycle_length, end=0.0, decay_steps=1):
    wave = 0.5 * (1.0 + math.cos(2.0 * math.pi * (t % cycle_length) / cycle_length))
    return end + (init - end) * decay_rate ** (t / decay_steps) * wave


def _torch_one_cycle_phases(total_steps, pct_start, three_phase, levels):
    """PyTorch OneCycleLR's phase table: (end_step, start_value, end_value)."""
    if three_phase:
        ends = [float(pct_start * total_steps) - 1, float(2 * pct_start * total_steps) - 2,
                total_steps - 1]
    else:
        ends = [float(pct_start * total_steps) - 1, total_steps - 1]
    return [(ends[i], levels[i], levels[i + 1]) for i in range(len(ends))]


def _torch_anneal(start, end, pct, strategy):
    if strategy == "cos":
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
    return (end - start) * pct + start


def _torch_one_cycle(t, total_steps, pct_start, strategy, phases):
    step = min(t, total_steps - 1)  # PyTorch stops at total_steps - 1; we hold that value
    start_step = 0.0
    for i, (end_step, start_value, end_value) in enumerate(phases):
        if step <= end_step or i == len(phases) - 1:
            pct = (step - start_step) / (end_step - start_step)
            return _torch_anneal(start_value, end_value, pct, strategy)
        start_step = end_step
    raise AssertionError("unreachable")


def one_cycle(t, max_lr, total_steps, pct_start=0.3, anneal_strategy="cos", div_factor=25.0,
              final_div_factor=1e4, three_phase=False):
    initial = max_lr / div_factor
    final = initial / final_div_factor
    levels = [initial, max_lr, initial, final] if three_phase else [initial, max_lr, final]
    phases = _torch_one_cycle_phases(total_steps, pct_start, three_phase, levels)
    return _torch_one_cycle(t, total_steps, pct_start, anneal_strategy, phases)


def one_cycle_momentum(t, total_steps, base_momentum=0.85, max_momentum=0.95, pct_start=0.3,
                       anneal_strategy="cos", three_phase=False):
    levels = ([max_momentum, base_momentum, max_momentum, max_momentum] if three_phase
              else [max_momentum, base_momentum, max_momentum])
    phases = _torch_one_cycle_phases(total_steps, pct_start, three_phase, levels)
    return _torch_one_cycle(t, total_steps, pct_start, anneal_strategy, phases)


# Cyclical and restarts --------------------------------------------------------------------

def _torch_cyclic_scale(t, step_size_up, step_size_down, mode, gamma):
    """PyTorch CyclicLR: the triangle height in [0, 1] times the mode's scale."""
    step_size_down = step_size_up if step_size_down is None else step_size_down
    total_size = step_size_up + step_size_down
    step_ratio = step_size_up / total_size
    cycle = math.floor(1 + t / total_size)
    x = 1.0 + t / total_size - cycle
    scale_factor = x / step_ratio if x <= step_ratio else (x - 1) / (step_ratio - 1)
    if mode == "triangular":
        scale = 1.0
    elif mode == "triangular2":
        scale = 1 / (2.0 ** (cycle - 1))
    else:
        scale = gamma ** t
    return scale_factor * scale


def cyclic_lr(t, base_lr, max_lr, step_size_up=2000, step_size_down=None, mode="triangular",
              gamma=1.0):
    return base_lr + (max_lr - base_lr) * _torch_cyclic_scale(t, step_size_up, step_size_down,
                                                              mode, gamma)


def cyclic_momentum(t, base_momentum, max_momentum, step_size_up=2000, step_size_down=None,
                    mode="triangular", gamma=1.0):
    return max_momentum - (max_momentum - base_momentum) * _torch_cyclic_scale(
        t, step_size_up, step_size_down, mode, gamma)


def cosine_restarts(t, init, first_decay_steps, t_mul=2.0, m_mul=1.0, end=0.0):
    """Keras CosineDecayRestarts (alpha = end/init), locating the cycle by walking."""
    start, length, cycle = 0.0, float(first_decay_steps), 0
    while t >= start + length:
        start += length
        length *= t_mul
        cycle += 1
    fraction = (t - start) / length
    return end + (init - end) * m_mul ** cycle * 0.5 * (1 + math.cos(math.pi * fraction))


def keras_cosine_decay_restarts(t, initial_learning_rate, first_decay_steps, t_mul=2.0,
                                m_mul=1.0, alpha=0.0):
    """Keras's own formula, with the restart located through a logarithm."""
    completed = t / first_decay_steps
    if t_mul == 1.0:
        restart = math.floor(completed)
        completed -= restart
    else:
        restart = math.floor(math.log(1 - completed * (1 - t_mul)) / math.log(t_mul))
        sum_r = (1 - t_mul ** restart) / (1 - t_mul)
        completed = (completed - sum_r) / t_mul ** restart
    cosine = 0.5 * m_mul ** restart * (1 + math.cos(math.pi * completed))
    return initial_learning_rate * ((1 - alpha) * cosine + alpha)


def torch_cosine_annealing_warm_restarts(t, base_lr, T_0, T_mult=1, eta_min=0.0):  # noqa: N803
    """PyTorch CosineAnnealingWarmRestarts stepped t times (integer T_cur, T_i)."""
    t_cur, t_i = 0, T_0
    for _ in range(t):
        t_cur += 1
        if t_cur >= t_i:
            t_cur -= t_i
            t_i *= T_mult
    return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * t_cur / t_i)) / 2


# Other families ---------------------------------------------------------------------------

def constant(t, value):
    return value


def multistep_decay(t, init, milestones, gamma=0.1):
    return init * gamma ** bisect.bisect_right(milestones, t)


def polynomial_decay(t, init, decay_steps, end=0.0, power=1.0, cycle=False):
    """Keras PolynomialDecay."""
    if cycle:
        multiplier = 1.0 if t == 0 else math.ceil(t / decay_steps)
        decay_steps = decay_steps * multiplier
    else:
        t = min(t, decay_steps)
    return (init - end) * (1 - t / decay_steps) ** power + end


def inverse_time_decay(t, init, decay_steps, decay_rate, staircase=False):
    ratio = t // decay_steps if staircase else t / decay_steps
    return init / (1 + decay_rate * ratio)


def piecewise_constant(t, boundaries, values):
    """Keras PiecewiseConstantDecay: values[i] while t <= boundaries[i]."""
    for boundary, value in zip(boundaries, values):
        if t <= boundary:
            return value
    return values[-1]


def warmup(t, schedule: Callable[[int], float], steps, init=0.0):
    if t < steps:
        return init + (schedule(0) - init) * t / steps
    return schedule(t - steps)


def optax_warmup_cosine_decay(t, init_value, peak_value, warmup_steps, decay_steps,
                              end_value=0.0, exponent=1.0):
    """optax.warmup_cosine_decay_schedule: a linear ramp joined to cosine_decay_schedule."""
    if t < warmup_steps:
        fraction = 1 - min(t, warmup_steps) / warmup_steps
        return (init_value - peak_value) * fraction + peak_value
    count = min(t - warmup_steps, decay_steps - warmup_steps)
    alpha = end_value / peak_value
    cosine = 0.5 * (1 + math.cos(math.pi * count / (decay_steps - warmup_steps)))
    return peak_value * ((1 - alpha) * cosine ** exponent + alpha)


def warmup_stable_decay(t, peak, total_steps, warmup_steps, decay_steps, init=0.0, end=0.0,
                        decay_shape="linear"):
    if t < warmup_steps:
        return init + (peak - init) * t / warmup_steps
    decay_start = total_steps - decay_steps
    if t < decay_start:
        return peak
    progress = min((t - decay_start) / decay_steps, 1.0)   # 0 -> 1 through the decay
    if decay_shape == "linear":
        shape = 1 - progress
    elif decay_shape == "cosine":
        shape = 0.5 * (1 + math.cos(math.pi * progress))
    else:
        shape = 1 - math.sqrt(progress)
    return end + (peak - end) * shape


def range_sweep(t, min_lr, max_lr, steps, mode="exponential"):
    x = min(t, steps - 1) / (steps - 1)
    if mode == "exponential":
        return min_lr * (max_lr / min_lr) ** x
    return min_lr + (max_lr - min_lr) * x


# Helpers for the tests --------------------------------------------------------------------

def around(*points: float) -> list[int]:
    """Step 0 and the integer steps at and next to each point (floor and ceil, +-1)."""
    steps = {0}
    for point in points:
        for base in {math.floor(point), math.ceil(point)}:
            steps.update(s for s in (base - 1, base, base + 1) if s >= 0)
    return sorted(steps)


def reference_values(reference: Callable[[int], float], steps: Sequence[int]) -> list[float]:
    return [reference(int(t)) for t in steps]


RTOL = 1e-6     # about 8 float32 ulps
ATOL = 2e-7     # times the schedule's scale, for values that pass through zero


def assert_close(got, expected, scale: float, steps=None, rtol: float = RTOL) -> None:
    """Elementwise float32-level agreement; the message names the failing steps."""
    import numpy as np

    got = np.asarray(got, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    bad = ~np.isclose(got, expected, rtol=rtol, atol=ATOL * abs(scale))
    if bad.any():
        where = np.flatnonzero(bad)[:8]
        labels = [int(np.asarray(steps).reshape(-1)[i]) if steps is not None else int(i)
                  for i in where]
        detail = ", ".join(f"t={s}: got {got.reshape(-1)[i]!r}, want {expected.reshape(-1)[i]!r}"
                           for s, i in zip(labels, where))
        raise AssertionError(f"{bad.sum()} of {bad.size} values differ: {detail}")
