"""Scheduled hyperparameters run MLX's own update rules, pinned bit for bit.

For every optimizer whose hyperparameters can be scheduled, a run with those
hyperparameters on *constant* schedules must give exactly the weights of MLX's unmodified
optimizer given the same values, step after step, eagerly and compiled. An MLX release
that changes an update rule, or the Python branches ``mlx_schedules._mlx_compat`` answers,
fails here instead of making scheduled runs drift from MLX's.

Scheduled values are float32 arrays, so the values used are exact in float32: MLX then
computes with the same numbers whether they arrive as Python floats or as state arrays.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from mlx.utils import tree_flatten

import mlx_schedules as ms
from trainers.step import make_train_step

STEPS = 4
F32_0_9 = float(np.float32(0.9))
F32_0_999 = float(np.float32(0.999))

# (id, optimizer class, constructor keywords, {hyperparameter: its constant value})
CASES = [
    ("SGD-momentum", optim.SGD, {"momentum": 0.5}, {"momentum": 0.5}),
    ("SGD-nesterov", optim.SGD, {"momentum": 0.75, "nesterov": True}, {"momentum": 0.75}),
    ("SGD-dampening", optim.SGD, {"momentum": 0.5, "dampening": 0.25}, {"momentum": 0.5}),
    ("SGD-weight_decay", optim.SGD, {"momentum": F32_0_9, "weight_decay": 0.125},
     {"momentum": F32_0_9, "weight_decay": 0.125}),
    # a scheduled value of 0 takes the rule's general path, which must agree bit for bit
    ("SGD-zero", optim.SGD, {"momentum": 0.0, "weight_decay": 0.0},
     {"momentum": 0.0, "weight_decay": 0.0}),
    ("Adam", optim.Adam, {"betas": [F32_0_9, F32_0_999]},
     {"beta1": F32_0_9, "beta2": F32_0_999}),
    ("Adam-bias_correction", optim.Adam, {"betas": [0.75, 0.875], "bias_correction": True},
     {"beta1": 0.75, "beta2": 0.875}),
    ("AdamW", optim.AdamW, {"betas": [0.75, F32_0_999], "weight_decay": 0.125},
     {"beta1": 0.75, "beta2": F32_0_999, "weight_decay": 0.125}),
    ("Adamax", optim.Adamax, {"betas": [0.5, 0.875]}, {"beta1": 0.5, "beta2": 0.875}),
    ("Lion", optim.Lion, {"betas": [0.75, 0.875], "weight_decay": 0.125},
     {"beta1": 0.75, "beta2": 0.875, "weight_decay": 0.125}),
    ("Lion-zero-decay", optim.Lion, {"betas": [0.75, 0.875], "weight_decay": 0.0},
     {"weight_decay": 0.0}),
]
if hasattr(optim, "Muon"):
    CASES.append(("Muon", optim.Muon, {"momentum": 0.75, "weight_decay": 0.125},
                  {"momentum": 0.75, "weight_decay": 0.125}))
    CASES.append(("Muon-plain", optim.Muon, {"momentum": 0.5, "nesterov": False,
                                             "weight_decay": 0.0},
                  {"momentum": 0.5, "weight_decay": 0.0}))

RNG = np.random.default_rng(7)
X = mx.array(RNG.normal(size=(8, 5)).astype(np.float32))
Y = mx.array(RNG.normal(size=(8, 3)).astype(np.float32))
WEIGHT = RNG.normal(size=(3, 5)).astype(np.float32)
BIAS = RNG.normal(size=(3,)).astype(np.float32)


def _model() -> nn.Linear:
    model = nn.Linear(5, 3)
    model.weight, model.bias = mx.array(WEIGHT), mx.array(BIAS)
    return model


def _loss(model, x, y):
    return nn.losses.mse_loss(model(x), y)


def _run(optimizer, compile):
    model = _model()
    optimizer.init(model.trainable_parameters())
    step = make_train_step(model, _loss, optimizer, grad_norm=False, compile=compile)
    weights = []
    for _ in range(STEPS):
        loss, _ = step((X, Y))
        mx.eval(loss, model.state, optimizer.state)
        weights.append({k: np.array(v) for k, v in tree_flatten(model.parameters())})
    return weights


def test_every_supported_optimizer_is_pinned():
    pinned = {cls for _, cls, _, _ in CASES}
    for name in dir(optim):
        cls = getattr(optim, name)
        if isinstance(cls, type) and issubclass(cls, optim.Optimizer) and \
                cls is not optim.MultiOptimizer and cls is not optim.Optimizer:
            instance = cls(learning_rate=0.1) if cls is not optim.Adafactor else cls()
            if ms.supported_hyperparameters(instance):
                assert cls in pinned, name
    for _, cls, kwargs, values in CASES:
        assert set(values) <= set(ms.supported_hyperparameters(cls(0.1, **kwargs)))


@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("cls, kwargs, values", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_constant_schedules_equal_mlx_bit_for_bit(cls, kwargs, values, compile):
    reference = _run(cls(learning_rate=0.05, **kwargs), compile)
    scheduled = cls(learning_rate=0.05, **kwargs)
    ms.schedule_hyperparameters(scheduled, **{k: ms.constant(v) for k, v in values.items()})
    got = _run(scheduled, compile)
    for step, (want, have) in enumerate(zip(reference, got)):
        for name in want:
            np.testing.assert_array_equal(have[name], want[name],
                                          err_msg=f"{name} after update {step + 1}")
    # the run moved the weights, so equality is not that of two idle runs
    assert not np.array_equal(got[-1]["weight"], WEIGHT)
    for name, value in values.items():
        assert scheduled.state[name].item() == value


@pytest.mark.parametrize("cls, kwargs, values", [c[1:] for c in CASES[:1] + CASES[5:6]],
                         ids=[CASES[0][0], CASES[5][0]])
def test_fixed_numbers_equal_mlx_bit_for_bit(cls, kwargs, values):
    # a hyperparameter given as a number lives in the state too, without a schedule
    reference = _run(cls(learning_rate=0.05, **kwargs), False)
    got = _run(ms.schedule_hyperparameters(cls(learning_rate=0.05, **kwargs), **values), False)
    np.testing.assert_array_equal(got[-1]["weight"], reference[-1]["weight"])


def test_only_the_compat_module_touches_mlx_private_attributes():
    import pathlib
    import re

    sgd = optim.SGD(0.1, momentum=0.5)
    private = {name for name in [*dir(optim.Optimizer), *vars(sgd)]
               if name.startswith("_") and not name.startswith("__")}
    assert {"_schedulers", "_maybe_schedule"} <= private
    pattern = re.compile(r"\.(" + "|".join(sorted(map(re.escape, private))) + r")\b")
    package = pathlib.Path(ms.__file__).parent
    users = {path.name for path in package.glob("*.py") if pattern.search(path.read_text())}
    assert users == {"_mlx_compat.py"}


def test_compat_schedules_of_is_a_copy_and_set_remove_work():
    from mlx_schedules import _mlx_compat as compat

    rate = ms.cosine_decay(0.1, 10)
    optimizer = optim.SGD(learning_rate=rate)
    copy = compat.schedules_of(optimizer)
    assert copy == {"learning_rate": rate}
    copy.clear()
    assert compat.schedules_of(optimizer) == {"learning_rate": rate}

    half = ms.constant(0.5)
    compat.set_schedule(optimizer, "momentum", half)
    assert compat.schedules_of(optimizer) == {"learning_rate": rate, "momentum": half}
    model = _model()
    grads = nn.value_and_grad(model, _loss)(model, X, Y)[1]
    optimizer.update(model, grads)   # MLX writes each scheduled state entry at the update
    assert optimizer.state["momentum"].item() == 0.5
    compat.remove_schedule(optimizer, "momentum")
    compat.remove_schedule(optimizer, "momentum")      # absent: nothing to do
    assert compat.schedules_of(optimizer) == {"learning_rate": rate}
    with pytest.raises(TypeError, match=r"schedule for 'beta1' must be a callable"):
        compat.set_schedule(optimizer, "beta1", 0.9)


class _MySGD(optim.SGD):
    """A user's subclass: found through the class hierarchy."""


def test_supported_classes_follow_the_class_hierarchy():
    assert ms.supported_hyperparameters(_MySGD(0.1)) == ("momentum", "weight_decay")
    assert ms.supported_hyperparameters(optim.AdamW(0.1)) == ("beta1", "beta2",
                                                              "weight_decay")
    reference = _run(optim.SGD(learning_rate=0.05, momentum=0.5), False)
    mine = ms.schedule_hyperparameters(_MySGD(learning_rate=0.05, momentum=0.5),
                                       momentum=ms.constant(0.5))
    assert isinstance(mine, _MySGD)
    np.testing.assert_array_equal(_run(mine, False)[-1]["weight"], reference[-1]["weight"])
