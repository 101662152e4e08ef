"""The power scheduler (Shen et al. 2024): a rate that falls as a power of the tokens seen,
scaled by the batch size, with no horizon to fix in advance."""

from __future__ import annotations

import math

import mlx.core as mx

from ._math import to_float
from .base import StepFunction, bounded
from .checks import FLOAT32_MAX, MAX_STEP, check_choice, check_int, check_positive, check_real
from .config import register

POWER_DECAY_SHAPES = ("exponential", "linear")

# The paper's choices (section 4, used for every run of section 5): a = 4, b = -0.51 and
# the cap eta_max = 0.02, with muP and sequences of 4096 tokens.
PAPER_A, PAPER_B, PAPER_MAX_LR = 4.0, -0.51, 0.02


@register
def power_schedule(batch_size: int, tokens_per_step: int, *, a: float = PAPER_A,
                   b: float = PAPER_B, max_lr: float = PAPER_MAX_LR, warmup_steps: int = 0,
                   decay_steps: int = 0, total_steps: int | None = None,
                   decay_shape: str = "exponential") -> StepFunction:
    r"""The power scheduler (Shen et al. 2024, "Power Scheduler: A Batch Size and Token
    Number Agnostic Learning Rate Scheduler", IBM, arXiv:2408.13359).

    The rate depends on the number of tokens already trained, :math:`n = t\,\tau` at step
    :math:`t` with :math:`\tau` = ``tokens_per_step``, and on the batch size :math:`\beta`
    (``batch_size``, sequences per step), not on the run's length (the paper's eq. 7):

    .. math::
        \eta_{power}(n) = \min\bigl(\eta_{max},\ \beta\, a\, n^{b}\bigr)

    with a linear warmup over :math:`w` steps and a final decay over the last :math:`D` of
    :math:`N` steps (the paper's eq. 8, in steps):

    .. math::
        \eta_t = \begin{cases}
            (t/w)\, \eta_{power}(w\tau) & t < w \\
            \eta_{power}(t\tau) & w \le t \le N - D \\
            f\bigl((N - t)/D\bigr)\, \eta_{power}\bigl((N - D)\tau\bigr) & N - D < t
        \end{cases}

    The paper decays exponentially to 0 without writing :math:`f` down; this follows the
    exponential decay of IBM's training code (dolomite-engine's ``ExponentialScheduler``
    with decay factor 0): :math:`f(r) = (e^{r} - 1)/(e - 1)`, which is 1 where the decay
    starts and exactly 0 at step :math:`N` (``decay_shape="exponential"``);
    ``decay_shape="linear"`` is :math:`f(r) = r`. From step :math:`N` on the value is 0.
    Without ``decay_steps`` the power law runs for ever. At step 0 without warmup
    (:math:`n = 0`, where :math:`n^b` is infinite) the value is the cap ``max_lr``.

    The defaults are the paper's: :math:`a = 4`, :math:`b = -0.51`,
    :math:`\eta_{max} = 0.02`, tuned with muP on 4096-token sequences (the paper warms up
    over 1B tokens and decays over the last 10%); outside muP, ``a`` must be tuned anew.

    Args:
        batch_size: :math:`\beta`, sequences per optimizer step.
        tokens_per_step: :math:`\tau`, tokens per optimizer step (``batch_size`` times the
            sequence length); at least ``batch_size``.
        a: the amplitude, > 0.
        b: the exponent, < 0.
        max_lr: the cap :math:`\eta_{max}`, > 0.
        warmup_steps: :math:`w`, linear warmup from 0 (0: none).
        decay_steps: :math:`D`, the final decay (0: none); needs ``total_steps``.
        total_steps: :math:`N`, the step at which the decay reaches 0.
        decay_shape: ``"exponential"`` (the paper's) or ``"linear"``.

    Float32 values are within about :math:`(1 + |b|)\cdot 2\cdot10^{-6}` (relative) of the
    formula at every step up to ``2**62``, and closer at the steps of a real run.

    Example:
        >>> # 8 sequences of 1024 tokens per step
        >>> lr = power_schedule(8, 8 * 1024, a=0.5, b=-0.5, max_lr=0.1, warmup_steps=2)
        >>> [round(v, 5) for v in lr.values([0, 1, 2, 4, 100]).tolist()]
        [0.0, 0.01562, 0.03125, 0.0221, 0.00442]
        >>> lr = power_schedule(8, 8 * 1024, a=0.5, b=-0.5, max_lr=0.1, decay_steps=2,
        ...                     total_steps=6)
        >>> [round(v, 5) for v in lr.values([0, 1, 4, 5, 6, 7]).tolist()]
        [0.1, 0.04419, 0.0221, 0.00834, 0.0, 0.0]
    """
    batch_size = check_int("batch_size", batch_size)
    tokens_per_step = check_int("tokens_per_step", tokens_per_step)
    if tokens_per_step < batch_size:
        raise ValueError(f"tokens_per_step must be >= batch_size (each of the {batch_size} "
                         f"sequences holds at least one token), got tokens_per_step="
                         f"{tokens_per_step}")
    a = check_positive("a", a)
    b = check_real("b", b, high=0.0, high_open=True)
    max_lr = check_positive("max_lr", max_lr)
    warmup_steps = check_int("warmup_steps", warmup_steps, minimum=0)
    decay_steps = check_int("decay_steps", decay_steps, minimum=0)
    decay_shape = check_choice("decay_shape", decay_shape, POWER_DECAY_SHAPES)
    if total_steps is not None:
        total_steps = check_int("total_steps", total_steps)
        if not decay_steps:
            raise ValueError(f"total_steps is where the final decay ends: give decay_steps > 0 "
                             f"with it (total_steps={total_steps} given with no decay)")
        if warmup_steps + decay_steps > total_steps:
            raise ValueError(f"warmup_steps + decay_steps must be <= total_steps, got "
                             f"{warmup_steps} + {decay_steps} > {total_steps}")
    elif decay_steps:
        raise ValueError(f"decay_steps={decay_steps} needs total_steps, the step at which the "
                         "decay reaches 0")

    # ln(beta·a·n^b) = scale + b·ln n, in float64: the cap ends where this is ln(max_lr),
    # at n* tokens, and past it the rate is max_lr·(n/n*)^b = max_lr·(t/t*)^b per step.
    scale = math.log(batch_size) + math.log(a)
    log_t_star = (math.log(max_lr) - scale) / b - math.log(tokens_per_step)

    def rate_at(step: int) -> float:
        """eta_power at a step, in float64 (the warmup's peak and the decay's start)."""
        if step == 0:
            return max_lr
        return min(max_lr, math.exp(scale + b * (math.log(step) + math.log(tokens_per_step))))

    if log_t_star > math.log(MAX_STEP):
        def power(t):   # the cap holds at every step
            return mx.full(t.shape, max_lr, dtype=mx.float32)
    elif -log_t_star < math.log(FLOAT32_MAX / MAX_STEP):
        inverse_t_star = math.exp(-log_t_star)

        def power(t):
            # t/t* formed as one product (two roundings), so that the logarithm, and the
            # power, keep float32's relative precision
            ratio = mx.maximum(to_float(t) * inverse_t_star, 1.0)
            return max_lr * mx.exp(b * mx.log(ratio))
    else:
        def power(t):   # t* so small that t/t* would overflow float32: subtract logarithms
            return max_lr * mx.exp(b * mx.maximum(mx.log(to_float(t)) - log_t_star, 0.0))

    warmup_peak = rate_at(warmup_steps)
    decay_start = None if total_steps is None else total_steps - decay_steps
    decay_peak = None if decay_start is None else rate_at(decay_start)

    def body(t):
        value = power(t)
        if decay_start is not None:
            left = to_float(mx.clip(total_steps - t, 0, decay_steps)) / decay_steps
            shape = (mx.expm1(left) / mx.expm1(mx.ones_like(left))
                     if decay_shape == "exponential" else left)
            value = mx.where(t > decay_start, decay_peak * shape, value)
        if warmup_steps:
            value = mx.where(t < warmup_steps, warmup_peak * (to_float(t) / warmup_steps),
                             value)
        return value

    return bounded(body, max_lr)
