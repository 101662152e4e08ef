"""Every ``mlx.optimizers`` optimizer runs a schedule inside a compiled training step, and
its ``learning_rate`` follows the schedule step for step."""

from __future__ import annotations

import inspect
from functools import partial

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import pytest

import mlx_schedules as ms

# One schedule object for every optimizer: its values differ at every step.
SCHEDULE = ms.one_cycle(0.05, 8, pct_start=0.4, three_phase=True)

# What an optimizer needs beyond learning_rate to use the scheduled rate as given.
EXTRA = {"Adafactor": {"relative_step": False, "scale_parameter": False}}

OPTIMIZERS = sorted(
    name for name, cls in vars(optim).items()
    if inspect.isclass(cls) and issubclass(cls, optim.Optimizer)
    and cls not in (optim.Optimizer, optim.MultiOptimizer)
)


def test_every_optimizer_is_covered():
    assert {"SGD", "RMSprop", "Adagrad", "AdaDelta", "Adam", "AdamW", "Adamax", "Lion",
            "Adafactor", "Muon"} <= set(OPTIMIZERS)


def _loss(model, x, y):
    return nn.losses.mse_loss(model(x), y)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_rate_follows_schedule_in_compiled_step(name):
    mx.random.seed(0)
    model = nn.Linear(4, 3, bias=False)
    optimizer = getattr(optim, name)(learning_rate=SCHEDULE, **EXTRA.get(name, {}))
    optimizer.init(model.trainable_parameters())
    state = [model.state, optimizer.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def train_step(x, y):
        loss, grads = nn.value_and_grad(model, _loss)(model, x, y)
        optimizer.update(model, grads)
        return loss

    x, y = mx.random.normal((16, 4)), mx.random.normal((16, 3))
    before = model.weight
    for k in range(1, 11):
        loss = train_step(x, y)
        mx.eval(state, loss)
        assert optimizer.step.item() == k
        want = SCHEDULE(mx.array(k - 1, dtype=mx.uint64)).item()
        assert optimizer.learning_rate.item() == pytest.approx(want, rel=1e-6), k
    assert optimizer.learning_rate.dtype == mx.float32
    assert mx.any(model.weight != before).item()


def test_schedule_is_called_with_uint64_step_eagerly():
    seen = []

    def spy(step):
        seen.append(step.dtype)
        return SCHEDULE(step)

    optimizer = optim.Adam(learning_rate=spy)
    model = nn.Linear(2, 1)
    grads = nn.value_and_grad(model, _loss)(model, mx.ones((1, 2)), mx.ones((1, 1)))[1]
    optimizer.update(model, grads)
    assert set(seen) == {mx.uint64}
    assert optimizer.learning_rate.item() == pytest.approx(SCHEDULE(0).item(), rel=1e-7)
