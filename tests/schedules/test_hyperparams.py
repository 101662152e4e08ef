"""Scheduling momentum, beta1 and weight decay: the values follow their schedules in a
compiled step, are used by the update (checked against float64 NumPy), and are saved with
``optimizer.state``."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_unflatten

import mlx_schedules as ms
from trainers.step import make_train_step

UPDATES = 3
LR = ms.cosine_decay(0.1, 5, 0.01)


def _model():
    model = nn.Linear(4, 3, bias=False)
    model.weight = mx.array(np.linspace(-1.0, 1.0, 12).reshape(3, 4), dtype=mx.float32)
    return model


TARGET = np.arange(12, dtype=np.float32).reshape(3, 4) / 10


def _loss(model):
    # gradient: weight - TARGET
    return 0.5 * mx.sum(mx.square(model.weight - mx.array(TARGET)))


def _train(model, optimizer, updates=UPDATES, watch=()):
    """Run compiled updates; return each watched state entry after each update."""
    optimizer.init(model.trainable_parameters())
    train_step = make_train_step(model, _loss, optimizer, grad_norm=False)
    seen = {name: [] for name in watch}
    for _ in range(updates):
        loss, _ = train_step(())   # _loss takes no batch: an empty tuple
        mx.eval(loss, model.state, optimizer.state)
        for name in watch:
            seen[name].append(optimizer.state[name].item())
    return seen


def _at(schedule, k):
    return float(schedule(mx.array(k, dtype=mx.uint64)).item())


def _follows(seen, schedule):
    want = [_at(schedule, k) for k in range(len(seen))]
    assert seen == pytest.approx(want, rel=1e-7)


def test_sgd_momentum_and_weight_decay_are_scheduled_and_used():
    momentum = ms.linear_schedule(0.5, 0.9, 2)
    decay = ms.step_decay(0.1, 0.5, 1)
    model = _model()
    optimizer = optim.SGD(learning_rate=LR, momentum=0.0)
    ms.schedule_hyperparameters(optimizer, momentum=momentum, weight_decay=decay)
    seen = _train(model, optimizer, watch=("momentum", "weight_decay", "learning_rate"))
    _follows(seen["momentum"], momentum)
    _follows(seen["weight_decay"], decay)
    _follows(seen["learning_rate"], LR)

    w = np.linspace(-1.0, 1.0, 12).reshape(3, 4)
    velocity = np.zeros_like(w)
    for k in range(UPDATES):
        gradient = (w - TARGET) + _at(decay, k) * w
        velocity = _at(momentum, k) * velocity + gradient
        w = w - _at(LR, k) * velocity
    np.testing.assert_allclose(np.asarray(model.weight), w, rtol=2e-6, atol=1e-7)


def test_adamw_beta1_and_weight_decay_are_scheduled_and_used():
    beta1 = ms.linear_schedule(0.5, 0.9, 2)
    decay = ms.linear_schedule(0.3, 0.0, 2)
    model = _model()
    optimizer = optim.AdamW(learning_rate=LR, betas=[0.9, 0.99], weight_decay=0.05)
    ms.schedule_hyperparameters(optimizer, beta1=beta1, weight_decay=decay)
    seen = _train(model, optimizer, watch=("beta1", "weight_decay"))
    _follows(seen["beta1"], beta1)
    _follows(seen["weight_decay"], decay)

    w = np.linspace(-1.0, 1.0, 12).reshape(3, 4)
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for k in range(UPDATES):
        gradient = w - TARGET
        lr, b1 = _at(LR, k), _at(beta1, k)
        w = w * (1 - lr * _at(decay, k))
        m = b1 * m + (1 - b1) * gradient
        v = 0.99 * v + 0.01 * gradient**2
        w = w - lr * m / (np.sqrt(v) + 1e-8)
    np.testing.assert_allclose(np.asarray(model.weight), w, rtol=2e-6, atol=1e-7)


def test_lion_weight_decay_is_scheduled_and_used():
    decay = ms.linear_schedule(0.8, 0.2, 2)
    model = _model()
    optimizer = optim.Lion(learning_rate=LR, betas=[0.9, 0.99], weight_decay=0.0)
    ms.schedule_hyperparameters(optimizer, weight_decay=decay)
    seen = _train(model, optimizer, watch=("weight_decay",))
    _follows(seen["weight_decay"], decay)

    w = np.linspace(-1.0, 1.0, 12).reshape(3, 4)
    m = np.zeros_like(w)
    for k in range(UPDATES):
        gradient = w - TARGET
        direction = 0.9 * m + 0.1 * gradient
        m = 0.99 * m + 0.01 * gradient
        lr = _at(LR, k)
        w = (1 - lr * _at(decay, k)) * w - lr * np.sign(direction)
    np.testing.assert_allclose(np.asarray(model.weight), w, rtol=2e-6, atol=1e-7)


def _eager_updates(optimizer, model, count):
    for _ in range(count):
        grads = nn.value_and_grad(model, _loss)(model)[1]
        optimizer.update(model, grads)
        mx.eval(model.parameters(), optimizer.state)


@pytest.mark.parametrize("name, kwargs", [
    ("Adam", {"beta1": ms.linear_schedule(0.8, 0.9, 3), "beta2": ms.constant(0.95)}),
    ("Adamax", {"beta1": ms.one_cycle_momentum(4)}),
    ("Lion", {"beta1": ms.linear_schedule(0.5, 0.9, 2), "beta2": 0.97}),
    ("Muon", {"momentum": ms.linear_schedule(0.9, 0.95, 3)}),
    ("SGD", {"momentum": ms.cyclic_momentum(0.8, 0.9, 1)}),
])
def test_eager_state_follows_schedules(name, kwargs):
    optimizer = ms.schedule_hyperparameters(getattr(optim, name)(learning_rate=LR), **kwargs)
    model = _model()
    for k in range(1, 4):
        _eager_updates(optimizer, model, 1)
        for key, schedule in kwargs.items():
            want = _at(schedule, k - 1) if callable(schedule) else schedule
            assert optimizer.state[key].item() == pytest.approx(want, rel=1e-7)
    if "beta1" in kwargs:
        assert float(optimizer.betas[0]) == optimizer.state["beta1"].item()


def test_scheduled_values_are_saved_and_restored(tmp_path):
    momentum = ms.linear_schedule(0.5, 0.9, 4)
    decay = ms.constant(0.01)

    def build():
        optimizer = optim.SGD(learning_rate=LR, momentum=0.5)
        return ms.schedule_hyperparameters(optimizer, momentum=momentum, weight_decay=decay)

    model, optimizer = _model(), build()
    _eager_updates(optimizer, model, 2)
    flat = dict(tree_flatten(optimizer.state))
    assert {"momentum", "weight_decay", "learning_rate", "step"} <= set(flat)
    path = str(tmp_path / "optimizer.safetensors")
    mx.save_safetensors(path, flat)
    mx.save_safetensors(str(tmp_path / "model.safetensors"), dict(tree_flatten(model.parameters())))

    restored_model, restored = _model(), build()
    restored.state = tree_unflatten(list(mx.load(path).items()))
    restored_model.load_weights(str(tmp_path / "model.safetensors"))
    assert restored.state["momentum"].item() == pytest.approx(_at(momentum, 1), rel=1e-7)
    assert restored.state["step"].item() == 2
    # both continue identically
    _eager_updates(optimizer, model, 2)
    _eager_updates(restored, restored_model, 2)
    assert restored.state["momentum"].item() == optimizer.state["momentum"].item()
    np.testing.assert_array_equal(np.asarray(restored_model.weight), np.asarray(model.weight))


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError,
                       match=r"cannot schedule 'beta1'.*\['momentum', 'weight_decay'\]"):
        ms.schedule_hyperparameters(optim.SGD(0.1), beta1=ms.constant(0.9))
    with pytest.raises(ValueError, match=r"cannot schedule 'momentum'.*\['beta1', 'beta2', "
                                         r"'weight_decay'\]"):
        ms.schedule_hyperparameters(optim.AdamW(0.1), momentum=ms.constant(0.9))


def test_unsupported_optimizer_and_bad_values():
    with pytest.raises(ValueError, match="supported optimizers are"):
        ms.schedule_hyperparameters(optim.RMSprop(0.1), momentum=ms.constant(0.9))
    with pytest.raises(ValueError, match="momentum must be finite"):
        ms.schedule_hyperparameters(optim.SGD(0.1), momentum=float("nan"))
    with pytest.raises(TypeError, match="momentum must be a real number"):
        ms.schedule_hyperparameters(optim.SGD(0.1), momentum="0.9")
    with pytest.raises(TypeError, match="optimizer must be"):
        ms.schedule_hyperparameters("SGD", momentum=0.9)


def test_supported_hyperparameters():
    assert ms.supported_hyperparameters(optim.SGD(0.1)) == ("momentum", "weight_decay")
    assert ms.supported_hyperparameters(optim.Adam(0.1)) == ("beta1", "beta2")
    assert ms.supported_hyperparameters(optim.RMSprop(0.1)) == ()
