"""Rate noise (timm's ``noise_range_t``/``noise_pct``/``noise_std``): a schedule scaled by
a random factor near 1 that is a pure function of the seed and the step."""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx

from ._math import counter_normal, splitmix64_host
from .base import StepFunction, body_of, bounded, magnitude_of
from .checks import FLOAT32_MAX, check_int, check_real
from .config import register


@register
def with_noise(schedule: Callable, std: float, *, pct: float = 0.67, start: int = 0,
               end: int | None = None, seed: int = 42) -> StepFunction:
    r"""``schedule`` times a random factor near 1 on steps ``start <= t < end``.

    .. math::
        \eta_t = s(t)\,\bigl(1 + \mathrm{clip}(\sigma\,\varepsilon_t, -p, p)\bigr)
        \quad (t_{start} \le t < t_{end}), \qquad \eta_t = s(t) \text{ otherwise}

    with :math:`\sigma` = ``std``, :math:`p` = ``pct`` and :math:`\varepsilon_t` a
    standard normal number that is a pure function of ``(seed, t)``: the step's 32-bit
    words hashed (Wellons's lowbias32) under a 64-bit key that splitmix64 derives from the
    seed, turned into a normal number by Box-Muller.
    The same step gives the same noise on every call, eagerly or compiled, after a
    resume and on every rank of a distributed run, and ``values()`` draws it for many
    steps at once. This is timm's rate noise (``noise_range_t=(start, end)``,
    ``noise_std``, ``noise_pct``), with the draw clipped to :math:`\pm p` rather than
    redrawn. ``end=None`` adds noise for ever.

    The noise multiplies values by up to ``1 + pct``: for a schedule of this package,
    whose largest magnitude is known, that product must stay within float32's range
    (about 3.4e38), or building raises ``ValueError``.

    Example:
        >>> from mlx_schedules import constant
        >>> lr = with_noise(constant(1.0), 0.1, start=2, end=4)
        >>> values = lr.values(6).tolist()
        >>> values[:2], values[4:]
        ([1.0, 1.0], [1.0, 1.0])
        >>> all(0.33 <= v <= 1.67 and v != 1.0 for v in values[2:4])
        True
        >>> lr.values(6).tolist() == values   # the same noise on every call
        True
    """
    if not callable(schedule):
        raise TypeError(f"schedule must be a callable of the step, got {schedule!r}")
    std = check_real("std", std, low=0.0)
    pct = check_real("pct", pct, low=0.0, low_open=True, high=1.0)
    start = check_int("start", start, minimum=0)
    if end is not None:
        end = check_int("end", end)
        if end <= start:
            raise ValueError(f"end must be > start (noise on start <= t < end), got "
                             f"start={start} and end={end}")
    seed = check_int("seed", seed, minimum=0)
    magnitude = magnitude_of(schedule)
    if magnitude is not None and std > 0:
        if magnitude * (1.0 + pct) > FLOAT32_MAX:
            raise ValueError(
                f"schedule: its values reach {magnitude:.4g} in magnitude and the noise "
                f"multiplies them by up to 1 + pct = {1.0 + pct:.4g}, giving "
                f"{magnitude * (1.0 + pct):.4g}, beyond float32's range (about "
                f"{FLOAT32_MAX:.3g})")
        magnitude *= 1.0 + pct
    inner = body_of(schedule)
    # Neighbouring seeds give unrelated streams: the seed is spread over 64 bits first.
    key = splitmix64_host(seed)

    def body(t):
        value = inner(t)
        noisy = value * (1.0 + mx.clip(std * counter_normal(t, key), -pct, pct))
        inside = None if start == 0 else t >= start
        if end is not None:
            inside = t < end if inside is None else inside & (t < end)
        return noisy if inside is None else mx.where(inside, noisy, value)

    return bounded(body, magnitude)
