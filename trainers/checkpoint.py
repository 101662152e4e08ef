"""Checkpoints: safetensors for arrays, JSON for everything else, written atomically.

A checkpoint is a directory ``<run_dir>/checkpoints/step_<8 digits>/`` holding

``model.safetensors``
    every parameter of the model (``model.parameters()``, frozen ones included);
``optimizer.safetensors``
    the flattened optimizer state: ``step`` (uint64), ``learning_rate``, every scheduled
    hyperparameter, ``lr_factor`` when reduce-on-plateau is on, and per-parameter moments;
``meta.json``
    format version, step, data position, base seed, log position, callback state, run config.

It is first written as ``step_<n>.tmp/`` and then renamed, so a run killed while writing leaves
either the complete directory or a ``.tmp`` one, which is ignored and later removed. Nothing is
pickled.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten

from .errors import CheckpointError

__all__ = [
    "FORMAT_VERSION",
    "list_checkpoints",
    "load_checkpoint",
    "prune_checkpoints",
    "save_checkpoint",
]

FORMAT_VERSION = 1
_NAME = re.compile(r"^step_(\d{8,})$")


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def list_checkpoints(root: str) -> list[tuple[int, str]]:
    """Complete checkpoints under ``root`` as ``(step, path)``, oldest first.

    Example:
        >>> list_checkpoints("/nonexistent")
        []
    """
    if not os.path.isdir(root):
        return []
    found = []
    for name in os.listdir(root):
        match = _NAME.match(name)
        if match and os.path.isdir(os.path.join(root, name)):
            found.append((int(match.group(1)), os.path.join(root, name)))
    return sorted(found)


def save_checkpoint(
    root: str, step: int, model: nn.Module, optimizer: optim.Optimizer, meta: dict[str, Any]
) -> str:
    """Write a checkpoint of ``model`` and ``optimizer`` after ``step`` updates; return its path.

    ``meta`` must be JSON-serialisable; ``step`` and ``format_version`` are added to it.

    Example:
        >>> import tempfile, mlx.nn as nn, mlx.optimizers as optim
        >>> model, opt = nn.Linear(2, 1), optim.SGD(learning_rate=0.1)
        >>> opt.init(model.trainable_parameters())
        >>> path = save_checkpoint(tempfile.mkdtemp(), 0, model, opt, {})
        >>> sorted(os.listdir(path))
        ['meta.json', 'model.safetensors', 'optimizer.safetensors']
    """
    os.makedirs(root, exist_ok=True)
    final = os.path.join(root, f"step_{step:08d}")
    tmp = final + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    weights = dict(tree_flatten(model.parameters()))
    mx.save_safetensors(os.path.join(tmp, "model.safetensors"), weights)
    mx.save_safetensors(
        os.path.join(tmp, "optimizer.safetensors"), dict(tree_flatten(optimizer.state))
    )
    meta = {"format_version": FORMAT_VERSION, "step": step, **meta}
    with open(os.path.join(tmp, "meta.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    for name in os.listdir(tmp):
        _fsync_path(os.path.join(tmp, name))
    if os.path.exists(final):  # the same step saved again (e.g. a resumed run's final save)
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_path(root)
    return final


def prune_checkpoints(root: str, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints and any leftover ``.tmp`` directories."""
    for name in os.listdir(root) if os.path.isdir(root) else []:
        if name.endswith(".tmp"):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    for _, path in list_checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(path, ignore_errors=True)


def _read_arrays(path: str) -> dict[str, mx.array]:
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint file missing: {path}")
    try:
        arrays = mx.load(path)
        mx.eval(arrays)  # host waits: read the file now, before it could be pruned
    except (RuntimeError, ValueError) as e:
        raise CheckpointError(f"corrupt checkpoint file {path}: {e}") from e
    return arrays


def _compare(what: str, path: str, expected: dict, found: dict) -> None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{what} in {path} does not match: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for key, value in expected.items():
        if value.shape != found[key].shape or value.dtype != found[key].dtype:
            raise CheckpointError(
                f"{what} in {path}: '{key}' is {found[key].dtype}{tuple(found[key].shape)}, "
                f"expected {value.dtype}{tuple(value.shape)}"
            )


def _set_leaf(tree: Any, dotted: str, value: mx.array) -> None:
    keys = dotted.split(".")
    for key in keys[:-1]:
        tree = tree[int(key)] if isinstance(tree, (list, tuple)) else tree[key]
    last = keys[-1]
    if isinstance(tree, list):
        tree[int(last)] = value
    else:
        tree[last] = value


def load_checkpoint(path: str, model: nn.Module, optimizer: optim.Optimizer) -> dict[str, Any]:
    """Load a checkpoint into ``model`` and ``optimizer`` in place; return its meta dict.

    The optimizer must be initialised (``optimizer.init(model.trainable_parameters())``) so
    that its state has the checkpoint's structure; values are replaced leaf by leaf, never the
    dict itself, so a step compiled before the load keeps seeing the right arrays.

    Raises:
        FileNotFoundError: the directory or one of its files is missing.
        CheckpointError: (a ValueError) a file is corrupt, or names, shapes or dtypes differ
            from the model / optimizer. Nothing is changed in that case.
    """
    if not os.path.isdir(path):
        raise FileNotFoundError(f"checkpoint directory not found: {path}")
    meta_path = os.path.join(path, "meta.json")
    if not os.path.exists(meta_path):
        raise FileNotFoundError(f"checkpoint file missing: {meta_path}")
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"corrupt checkpoint file {meta_path}: {e}") from e
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{meta_path}: unsupported checkpoint format "
            f"{meta.get('format_version') if isinstance(meta, dict) else meta!r}"
        )
    weights = _read_arrays(os.path.join(path, "model.safetensors"))
    opt_state = _read_arrays(os.path.join(path, "optimizer.safetensors"))
    _compare("model weights", path, dict(tree_flatten(model.parameters())), weights)
    _compare("optimizer state", path, dict(tree_flatten(optimizer.state)), opt_state)
    # Everything checked: now change the model and optimizer.
    model.load_weights(list(weights.items()), strict=True)
    for key, value in opt_state.items():
        _set_leaf(optimizer.state, key, value)
    return meta
