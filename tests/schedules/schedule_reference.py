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


def cosine_decay(t, init, decay_steps, end=0.0, exponent=1.0, k_decay=1.0):
    x = min(t, decay_steps) ** k_decay / decay_steps ** k_decay
    shape = 0.5 * (1.0 + math.cos(math.pi * x))
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


def cosine_restarts(t, init, first_decay_steps, t_mul=2.0, m_mul=1.0, end=0.0,
                    cycle_limit=None):
    """Keras CosineDecayRestarts (alpha = end/init), locating the cycle by walking."""
    start, length, cycle = 0.0, float(first_decay_steps), 0
    if t_mul == 1.0:
        cycle = t // first_decay_steps
        start = float(first_decay_steps * cycle)
    while t >= start + length:
        start += length
        length *= t_mul
        cycle += 1
    if cycle_limit is not None and cycle >= cycle_limit:
        return end
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


def polynomial_decay(t, init, decay_steps, end=0.0, power=1.0, cycle=False, k_decay=1.0):
    """Keras PolynomialDecay (with timm's k-decay: t/D becomes t**k/D**k)."""
    if cycle:
        multiplier = 1.0 if t == 0 else math.ceil(t / decay_steps)
        decay_steps = decay_steps * multiplier
    else:
        t = min(t, decay_steps)
    return (init - end) * (1 - t ** k_decay / decay_steps ** k_decay) ** power + end


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
                        decay_shape="linear", warmup_shape="linear"):
    if t < warmup_steps:
        return warmup_shaped(t, lambda s: peak, warmup_steps, init, warmup_shape)
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


# More shapes, as each peer documents them -------------------------------------------------

def hf_inverse_sqrt(t, init, num_warmup_steps, timescale=None):
    """Hugging Face get_inverse_sqrt_schedule's factor times the base rate."""
    if timescale is None:
        timescale = num_warmup_steps or 10_000
    if t < num_warmup_steps:
        return init * float(t) / float(max(1, num_warmup_steps))
    shift = timescale - num_warmup_steps
    return init * (1.0 / math.sqrt((t + shift) / timescale))


def timm_tanh(t, lr_max, t_initial, lr_min=0.0, lb=-7.0, ub=3.0, cycle_limit=1):
    """timm TanhLRScheduler (cycle_mul=1, cycle_decay=1, no warmup), stepped per update."""
    i = t // t_initial
    t_curr = t - t_initial * i
    if i >= cycle_limit:
        return lr_min
    tr = t_curr / t_initial
    return lr_min + 0.5 * (lr_max - lr_min) * (1 - math.tanh(lb * (1.0 - tr) + ub * tr))


def timm_cosine(t, lr_max, t_initial, lr_min=0.0, cycle_mul=1.0, cycle_decay=1.0,
                cycle_limit=1, k_decay=1.0):
    """timm CosineLRScheduler (no warmup), stepped per update; the cycle found by walking
    the cycle lengths in float64 (timm's own formula takes a logarithm)."""
    start, length, i = 0.0, float(t_initial), 0
    if cycle_mul == 1.0:
        i = t // t_initial
        start = float(t_initial * i)
    else:
        while t >= start + length:
            start += length
            length *= cycle_mul
            i += 1
    if i >= cycle_limit:
        return lr_min
    t_curr, t_i = t - start, length
    peak = lr_max * cycle_decay ** i
    return lr_min + 0.5 * (peak - lr_min) * (1 + math.cos(math.pi * t_curr ** k_decay
                                                           / t_i ** k_decay))


def timm_poly(t, lr_max, t_initial, lr_min=0.0, power=1.0, k_decay=1.0):
    """timm PolyLRScheduler (one cycle, no warmup), stepped per update."""
    if t >= t_initial:
        return lr_min
    return lr_min + (lr_max - lr_min) * (1 - t ** k_decay / t_initial ** k_decay) ** power


def warmup_shaped(t, schedule: Callable[[int], float], steps, init=0.0, shape="linear"):
    """The contract's warmup ramps: linear t/w, cosine ½(1-cos(πt/w)), log ln(t+1)/ln(w+1)."""
    if t >= steps:
        return schedule(t - steps)
    if shape == "linear":
        f = t / steps
    elif shape == "cosine":
        f = 0.5 * (1 - math.cos(math.pi * t / steps))
    else:
        f = math.log(t + 1) / math.log(steps + 1)
    return init + (schedule(0) - init) * f


def deepspeed_warmup_lr(t, warmup_min_lr, warmup_max_lr, warmup_num_steps, warmup_type="log"):
    """DeepSpeed WarmupLR: min + (max - min)·gamma, gamma = ln(t+1)/ln(w) or t/w, then 1."""
    if t < warmup_num_steps:
        if warmup_type == "log":
            gamma = math.log(t + 1) / math.log(warmup_num_steps)
        else:
            gamma = t / warmup_num_steps
    else:
        gamma = 1.0
    return warmup_min_lr + (warmup_max_lr - warmup_min_lr) * gamma


def hf_wsd_warmup(t, peak, num_warmup_steps, warmup_type="linear"):
    """Hugging Face get_wsd_schedule's warmup factor (linear or cosine) times the peak."""
    progress = t / max(1, num_warmup_steps)
    if warmup_type == "linear":
        factor = progress
    else:
        factor = 0.5 * (1.0 - math.cos(math.pi * progress))
    return peak * factor


def optax_piecewise_interpolate(t, interpolate_type, init_value, boundaries_and_scales):
    """optax piecewise_interpolate_schedule: levels are running products of the scales."""
    boundaries = sorted(boundaries_and_scales)
    bounds = [0] + boundaries
    values = [init_value]
    for b in boundaries:
        values.append(values[-1] * boundaries_and_scales[b])
    if t >= bounds[-1]:
        return values[-1]
    i = bisect.bisect_right(bounds, t) - 1
    start, end = values[i], values[i + 1]
    pct = (t - bounds[i]) / (bounds[i + 1] - bounds[i])
    if interpolate_type == "linear":
        return (end - start) * pct + start
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


# PyTorch's multiplicative schedulers, in their documented closed forms (factor of the base)
def torch_constant_lr(t, factor=1.0 / 3, total_iters=5):
    return factor if t < total_iters else 1.0


def torch_linear_lr(t, start_factor=1.0 / 3, end_factor=1.0, total_iters=5):
    return start_factor + (end_factor - start_factor) * min(t, total_iters) / total_iters


def torch_exponential_lr(t, gamma):
    return gamma ** t


def torch_step_lr(t, step_size, gamma=0.1):
    return gamma ** (t // step_size)


def torch_chained(t, base_lr, factors: Sequence[Callable[[int], float]]):
    """ChainedScheduler of multiplicative schedulers: the base rate times every factor."""
    value = base_lr
    for factor in factors:
        value *= factor(t)
    return value


def torch_cyclic_custom(t, base_lr, max_lr, step_size_up, step_size_down, scale_fn,
                        scale_mode="cycle"):
    """PyTorch CyclicLR.get_lr with a custom scale_fn."""
    step_size_down = step_size_up if step_size_down is None else step_size_down
    total_size = step_size_up + step_size_down
    step_ratio = step_size_up / total_size
    cycle = math.floor(1 + t / total_size)
    x = 1.0 + t / total_size - cycle
    scale_factor = x / step_ratio if x <= step_ratio else (x - 1) / (step_ratio - 1)
    base_height = (max_lr - base_lr) * scale_factor
    return base_lr + base_height * scale_fn(cycle if scale_mode == "cycle" else t)


def power_scheduler(t, batch_size, tokens_per_step, a=4.0, b=-0.51, max_lr=0.02,
                    warmup_steps=0, decay_steps=0, total_steps=None,
                    decay_shape="exponential"):
    """Shen et al. 2024 (arXiv:2408.13359), eqs. 7 and 8, with n the tokens already
    trained (t steps of tokens_per_step) and the exponential decay to 0 of IBM's
    dolomite-engine, f(r) = (e^r - 1)/(e - 1) of the fraction r of the decay still to go."""
    def eta_power(n):
        return max_lr if n == 0 else min(max_lr, batch_size * a * n ** b)

    n = t * tokens_per_step
    n_warmup = warmup_steps * tokens_per_step
    if n < n_warmup:
        return n / n_warmup * eta_power(n_warmup)
    if total_steps is None or t <= total_steps - decay_steps:
        return eta_power(n)
    r = max(total_steps - t, 0) / decay_steps
    f = (math.exp(r) - 1) / (math.e - 1) if decay_shape == "exponential" else r
    return f * eta_power((total_steps - decay_steps) * tokens_per_step)


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


def rates_used(learning_rate: Callable, steps: int, optimizer: str = "SGD") -> list[float]:
    """The rate each of ``steps`` compiled training steps used (read back from
    ``optimizer.learning_rate``), with the trainer's own compiled step."""
    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim

    from trainers.step import make_train_step

    model = nn.Linear(2, 1)
    opt = getattr(optim, optimizer)(learning_rate=learning_rate)
    opt.init(model.trainable_parameters())
    step = make_train_step(model, lambda m, x: m(x).sum(), opt, grad_norm=False)
    rates = []
    for _ in range(steps):
        loss, _ = step((mx.ones((1, 2)),))
        mx.eval(model.state, opt.state, loss)
        rates.append(opt.learning_rate.item())
    return rates
