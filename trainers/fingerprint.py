"""What a resume compares: the optimizer's class, its fixed hyperparameters, its schedules,
the training data, and the run's identity.

A checkpoint restores the optimizer's *state* (moments, step counter, scheduled values), but
not the Python object that computes the next update. A resumed run built with another
optimizer class, another momentum or another schedule would silently continue a different
optimization. These descriptions are saved with the run and compared on resume.

A schedule from :mod:`mlx_schedules` is described by its config; any other callable (MLX's
own schedules, a lambda) by its values at a fixed set of steps, which catches a changed shape,
peak or length without needing to know how it was built.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from typing import Any, cast

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten

from mlx_schedules._mlx_compat import schedules_of

from .optimizers import optimizer_parts

__all__ = ["describe_data", "describe_hyperparameters", "describe_optimizer",
           "describe_schedules", "run_id_of", "unwrap_schedule", "weights_digest"]

# Steps at which an opaque schedule is evaluated to describe it.
_PROBE_STEPS = (0, 1, 2, 3, 5, 10, 30, 100, 300, 1000, 3000, 10**4, 10**5, 10**6, 10**7)


def unwrap_schedule(schedule: Callable) -> Callable:
    """The schedule a trainer-side wrapper (reduce-on-plateau's scaling) was built around."""
    while hasattr(schedule, "base_schedule"):
        schedule = schedule.base_schedule
    return schedule


def _plain(value: Any) -> Any:
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, list | tuple):
        items = [_plain(v) for v in value]
        return None if any(i is _SKIP for i in items) else items
    if isinstance(value, mx.array) and value.size == 1:
        return _plain(value.item())
    return _SKIP


_SKIP = object()


def describe_optimizer(optimizer: optim.Optimizer) -> str:
    """The optimizer's class name; a ``MultiOptimizer`` lists its parts' classes.

    Example:
        >>> import mlx.optimizers as optim
        >>> describe_optimizer(optim.MultiOptimizer([optim.SGD(0.1), optim.Adam(0.1)],
        ...                                         [lambda p, w: True]))
        'MultiOptimizer(SGD, Adam)'
    """
    if isinstance(optimizer, optim.MultiOptimizer):
        inner = ", ".join(type(o).__name__ for _, o in optimizer_parts(optimizer))
        return f"MultiOptimizer({inner})"
    return type(optimizer).__name__


def describe_hyperparameters(optimizer: optim.Optimizer) -> dict[str, Any]:
    """The optimizer's fixed hyperparameters: its public attributes that are plain values,
    and ``learning_rate`` when it is a constant (names suffixed ``/i`` for the parts of a
    ``MultiOptimizer``).

    Example:
        >>> import mlx.optimizers as optim
        >>> describe_hyperparameters(optim.SGD(learning_rate=0.1, momentum=0.9))
        {'dampening': 0.0, 'learning_rate': 0.10000000149011612, 'momentum': 0.9, 'nesterov': False, 'weight_decay': 0.0}
    """  # noqa: E501
    found = {}
    for suffix, part in optimizer_parts(optimizer):
        for name, value in vars(part).items():
            if name.startswith("_") or name == "state":
                continue
            plain = _plain(value)
            if plain is not _SKIP and plain is not None:
                found[name + suffix] = plain
        if "learning_rate" not in schedules_of(part) and "learning_rate" in part.state:
            found["learning_rate" + suffix] = _plain(part.state["learning_rate"])
    return dict(sorted(found.items()))


def _describe(schedule: Callable) -> Any:
    schedule = unwrap_schedule(schedule)
    to_config = getattr(schedule, "to_config", None)
    if to_config is not None:
        try:
            return {"config": to_config()}
        except (ValueError, TypeError):
            pass  # not describable as data (a custom function inside): probe it
    values = [schedule(mx.array(t, mx.uint64)) for t in _PROBE_STEPS]
    return {"values_at": list(_PROBE_STEPS),
            "values": [float(v.item()) for v in values]}  # host waits, once per run


def describe_schedules(optimizer: optim.Optimizer) -> dict[str, Any]:
    """A description of every scheduled hyperparameter of ``optimizer``, by name.

    Example:
        >>> import mlx.optimizers as optim
        >>> d = describe_schedules(optim.SGD(learning_rate=optim.linear_schedule(0.0, 1.0, 10)))
        >>> d["learning_rate"]["values"][:3]
        [0.0, 0.10000000149011612, 0.20000000298023224]
    """
    return {name + suffix: _describe(fn)
            for suffix, part in optimizer_parts(optimizer)
            for name, fn in sorted(schedules_of(part).items())}


# ------------------------------------------------------------------ data and run identity
# Rows of each array (or batches of a list) read for the data's digest: evenly spaced, first
# and last included. Small data is read whole; a change in rows the sample skips is not seen.
_SAMPLE = 1024


def _bytes_of(array: Any) -> bytes:
    """The raw bytes of a NumPy or MLX array (any dtype, bfloat16 included)."""
    if isinstance(array, mx.array):
        array = mx.contiguous(array)
        mx.eval(array)  # host waits: once per run
        return bytes(memoryview(array))
    return np.ascontiguousarray(array).tobytes()


def _spec(array: Any) -> str:
    """``dtype(shape)``, the same for a NumPy and an MLX array of the same values."""
    dtype = array.dtype.name if isinstance(array, np.ndarray) else str(array.dtype)
    return f"{dtype.rsplit('.', 1)[-1]}{tuple(array.shape)}"


def _sample_rows(n: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, _SAMPLE)).round().astype(np.int64))


def _digest_arrays(named: list[tuple[str, Any]], rows: np.ndarray | None) -> str:
    h = hashlib.sha256()
    for name, array in named:
        h.update(f"{name}:{_spec(array)};".encode())
        if rows is not None and _ndim(array):
            picked = (mx.take(array, mx.array(rows), axis=0) if isinstance(array, mx.array)
                      else np.asarray(array)[rows])
        else:
            picked = array
        h.update(_bytes_of(picked))
    return h.hexdigest()


def _ndim(array: Any) -> int:
    ndim = getattr(array, "ndim", None)
    return ndim if isinstance(ndim, int) else 0


def _named(batch: Any) -> list[tuple[str, Any]]:
    """A batch's arrays by name (dict keys, or tuple positions); other values as NumPy."""
    items = (sorted(batch.items(), key=lambda kv: str(kv[0])) if isinstance(batch, dict)
             else enumerate(batch))
    return [(str(k), v if isinstance(v, np.ndarray | mx.array) else np.asarray(v))
            for k, v in items]


def describe_data(data: Any) -> tuple[int | None, dict[str, Any]]:
    """The batch size and a fingerprint of training data, which a resume compares.

    :class:`trainers.data.ArrayBatches`: the arrays' names, dtypes and shapes, the shuffle
    settings, and a SHA-256 of up to 1024 evenly spaced rows of every array (all rows of
    smaller data). A list or tuple of batches: its length, the first batch's shapes and a
    digest of up to 1024 evenly spaced batches. Any other source (an ``mlx.data`` stream, a
    callable, an iterator): its type and, where it has one, its ``batch_size`` and length;
    such data cannot be read ahead without consuming it, so a change in it is not seen.

    Example:
        >>> import numpy as np
        >>> from trainers.data import ArrayBatches
        >>> size, d = describe_data(ArrayBatches({"x": np.zeros((8, 2), np.float32)}, 4))
        >>> size, d["type"], d["arrays"], len(d["sha256"])
        (4, 'ArrayBatches', {'x': 'float32(8, 2)'}, 64)
    """
    arrays = getattr(data, "_arrays", None)
    if type(data).__name__ == "ArrayBatches" and arrays is not None:
        named = _named(arrays)
        return data.batch_size, {
            "type": "ArrayBatches", "samples": data.num_samples, "shuffle": data.shuffle,
            "seed": data.seed, "drop_last": data.drop_last,
            "arrays": {name: _spec(a) for name, a in named},
            "sha256": _digest_arrays(named, _sample_rows(data.num_samples)),
        }
    if isinstance(data, list | tuple) and data and all(
            isinstance(b, dict | tuple | list) for b in data):
        picks = _sample_rows(len(data))
        named = [(f"{i}.{name}", a) for i in picks.tolist() for name, a in _named(data[i])]
        first = _named(data[0])
        size = first[0][1].shape[0] if first and _ndim(first[0][1]) else None
        return size, {"type": "batches", "batches": len(data),
                      "first": {name: _spec(a) for name, a in first},
                      "sha256": _digest_arrays(named, None)}
    size = getattr(data, "batch_size", None)
    try:
        length = len(data) if not callable(data) else None
    except TypeError:  # no length, or one not known in advance
        length = None
    return (size if isinstance(size, int) and not isinstance(size, bool) else None,
            {"type": type(data).__name__, "batches": length})


def weights_digest(model: nn.Module) -> str:
    """A SHA-256 of the model's trainable weights (up to 1024 evenly spaced values of each)
    and of every parameter's name, dtype and shape: what tells two initialisations apart.

    Example:
        >>> import mlx.core as mx, mlx.nn as nn
        >>> mx.random.seed(0); a = weights_digest(nn.Linear(2, 1))
        >>> mx.random.seed(1); b = weights_digest(nn.Linear(2, 1))
        >>> a != b, len(a)
        (True, 64)
    """
    h = hashlib.sha256()
    # without ``destination`` tree_flatten returns a list (its stub is the union with dict)
    everything = cast(list[tuple[str, mx.array]], tree_flatten(model.parameters()))
    trained = cast(list[tuple[str, mx.array]], tree_flatten(model.trainable_parameters()))
    for name, value in everything:
        h.update(f"{name}:{_spec(value)};".encode())
    for name, value in trained:
        flat = value.reshape(-1)
        h.update(name.encode())
        h.update(_bytes_of(mx.take(flat, mx.array(_sample_rows(flat.size)))
                           if flat.size else flat))
    return h.hexdigest()


def run_id_of(settings: dict[str, Any], weights: str) -> str:
    """The run id: a digest of the settings (the data's fingerprint included) and the initial
    weights. Two runs share it only when they would compute the same thing.

    Example:
        >>> run_id_of({"seed": 0}, "ab") == run_id_of({"seed": 0}, "ab") != run_id_of({}, "ab")
        True
    """
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    h.update(weights.encode())
    return h.hexdigest()[:16]
