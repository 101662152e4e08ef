r"""Schedule-free SGD and AdamW (Defazio et al., "The Road Less Scheduled", 2024).

No decay schedule: the method keeps two sequences, ``z`` (the base optimizer's iterate) and
``x`` (an average of the ``z``), and evaluates gradients at their interpolation ``y``. With
``t`` counting updates from 1, rate :math:`\gamma`, interpolation :math:`\beta`
(``momentum`` / ``betas[0]``) and weight decay :math:`\lambda`, one update is (the paper's
published equations):

.. math::
    y_t &= (1-\beta)\, z_t + \beta\, x_t, \qquad g_t = \nabla f(y_t) \\
    \gamma_t &= \gamma \cdot \min(1, t / T_{warmup}) \quad
        (\text{AdamW: also} \cdot \sqrt{1-\beta_2^t}) \\
    z_{t+1} &= z_t - \gamma_t\, (g_t + \lambda y_t) \\
    z_{t+1} &= z_t - \gamma_t\, g_t / (\sqrt{v_t} + \epsilon) - \gamma_t \lambda y_t,
        \ v_t = \beta_2 v_{t-1} + (1-\beta_2)\, g_t^2 \quad (\text{AdamW}) \\
    c_{t+1} &= \gamma_t^2 / \textstyle\sum_{i=1}^{t} \gamma_i^2, \qquad
    x_{t+1} = (1 - c_{t+1})\, x_t + c_{t+1}\, z_{t+1}

starting from :math:`z_1 = x_1 = y_1` (the initial weights). Without warmup :math:`c_{t+1} =
1/t`, a uniform average.

The model's weights hold ``y`` (where the gradient is taken); ``z``, ``x`` (and ``v``) and the
running sum of :math:`\gamma_i^2` live in the optimizer state, so a checkpoint resumes exactly.
The method's answer is ``x``: evaluate and export :meth:`ScheduleFreeSGD.averaged_parameters`
(:class:`trainers.Trainer` does so for every evaluation and for ``restore_best``). A model
with batch normalisation needs its statistics recomputed at ``x`` (the paper's note); the MLPs
and CNNs of this project's scripts have none by default.

``learning_rate`` may be a schedule (a warmup, say) as for any MLX optimizer; the weights
:math:`\gamma_t^2` then follow it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mlx.core as mx
import mlx.optimizers as optim
from mlx.utils import tree_map

from mlx_schedules.checks import check_int, check_real

__all__ = ["ScheduleFreeAdamW", "ScheduleFreeSGD", "is_schedule_free"]


class ScheduleFreeSGD(optim.Optimizer):
    r"""Schedule-free SGD (module docs for the update).

    Args:
        learning_rate: :math:`\gamma` (a number or a schedule).
        momentum: :math:`\beta`, the interpolation of ``y`` between ``z`` and ``x`` (0.9).
        weight_decay: :math:`\lambda`, applied at ``y``.
        warmup_steps: :math:`T_{warmup}`, the linear ramp of :math:`\gamma_t` (0: none).

    Example:
        >>> import mlx.core as mx
        >>> opt = ScheduleFreeSGD(learning_rate=0.5, momentum=0.5)
        >>> params = {"w": mx.array([1.0])}
        >>> for _ in range(2):  # f(w) = w^2 / 2: the gradient is w
        ...     params = opt.apply_gradients(params, params)
        >>> y, x = params["w"].item(), opt.averaged_parameters(params)["w"].item()
        >>> y, x    # z: 1, 0.5, 0.25; x: 1, 0.5, (0.5 + 0.25) / 2; y = (z + x) / 2
        (0.3125, 0.375)
    """

    def __init__(self, learning_rate: float | Callable[[mx.array], mx.array],
                 momentum: float = 0.9, weight_decay: float = 0.0, warmup_steps: int = 0):
        super().__init__()
        if not callable(learning_rate):
            check_real("learning_rate", learning_rate, low=0.0)
        self.momentum = check_real("momentum", momentum, low=0.0, high=1.0, high_open=True)
        self.weight_decay = check_real("weight_decay", weight_decay, low=0.0)
        self.warmup_steps = check_int("warmup_steps", warmup_steps, minimum=0)
        self._maybe_schedule("learning_rate", learning_rate)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["z"] = parameter
        state["x"] = parameter
        state["weight_sum"] = mx.zeros((), mx.float32)

    def _gamma(self) -> mx.array:
        """:math:`\\gamma_t` of this update (``self.step`` is already ``t``)."""
        gamma = self.learning_rate.astype(mx.float32)
        if self.warmup_steps:
            t = self.step.astype(mx.float32)
            gamma = gamma * mx.minimum(1.0, t / self.warmup_steps)
        return gamma

    def _direction(self, gradient: mx.array, state: dict) -> mx.array:
        return gradient

    def apply_single(self, gradient: mx.array, parameter: mx.array, state: dict) -> mx.array:
        gamma = self._gamma()
        step = self._direction(gradient, state)
        if self.weight_decay:
            step = step + self.weight_decay * parameter  # decay at y, as the paper does
        z = state["z"] - gamma.astype(parameter.dtype) * step
        weight = gamma * gamma
        total = state["weight_sum"] + weight
        # 0/0 before the first non-zero rate: x stays where it is
        c = mx.where(total > 0, weight / mx.maximum(total, 1e-38), 0.0)
        x = state["x"] + c.astype(parameter.dtype) * (z - state["x"])
        state["z"], state["x"], state["weight_sum"] = z, x, total
        beta = self.momentum
        return (1 - beta) * z + beta * x

    def averaged_parameters(self, parameters: Any) -> Any:
        """``x`` for every parameter of ``parameters`` (a tree like the model's trainable
        parameters): the weights to evaluate and export."""
        return tree_map(lambda p, s: s["x"] if isinstance(s, dict) and "x" in s else p,
                        parameters, self.state)


class ScheduleFreeAdamW(ScheduleFreeSGD):
    r"""Schedule-free AdamW (the paper's Algorithm 1; module docs for the update).

    Args:
        learning_rate: :math:`\gamma` (a number or a schedule).
        betas: :math:`(\beta_1, \beta_2)`: the interpolation of ``y`` and the second-moment
            decay (0.9, 0.999).
        eps: :math:`\epsilon`, added to :math:`\sqrt{v_t}`.
        weight_decay: :math:`\lambda`, applied at ``y`` and scaled by :math:`\gamma_t`.
        warmup_steps: :math:`T_{warmup}`.

    Example:
        >>> import mlx.core as mx
        >>> opt = ScheduleFreeAdamW(learning_rate=0.1)
        >>> params = {"w": mx.array([1.0])}
        >>> params = opt.apply_gradients(params, params)  # g / sqrt(v) = 1 / sqrt(0.001)
        >>> round(opt.state["w"]["z"].item(), 5)  # 1 - 0.1 sqrt(1 - 0.999) / sqrt(0.001)
        0.9
    """

    def __init__(self, learning_rate: float | Callable[[mx.array], mx.array],
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, warmup_steps: int = 0):
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        super().__init__(learning_rate, momentum=check_real("betas[0]", betas[0], low=0.0,
                                                             high=1.0, high_open=True),
                         weight_decay=weight_decay, warmup_steps=warmup_steps)
        self.betas = (self.momentum, check_real("betas[1]", betas[1], low=0.0, high=1.0,
                                                high_open=True))
        self.eps = check_real("eps", eps, low=0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        super().init_single(parameter, state)
        state["v"] = mx.zeros_like(parameter)

    def _gamma(self) -> mx.array:
        t = self.step.astype(mx.float32)
        return super()._gamma() * mx.sqrt(1.0 - mx.power(self.betas[1], t))

    def _direction(self, gradient: mx.array, state: dict) -> mx.array:
        beta2 = self.betas[1]
        v = beta2 * state["v"] + (1 - beta2) * mx.square(gradient)
        state["v"] = v
        return gradient / (mx.sqrt(v) + self.eps)


def is_schedule_free(optimizer: optim.Optimizer) -> bool:
    """Whether ``optimizer`` is one of this module's (its answer is the averaged weights)."""
    return isinstance(optimizer, ScheduleFreeSGD)
