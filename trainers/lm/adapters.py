"""Adapters: mlx-lm's LoRA layers on a model, and adapters saved in the layout
``mlx_lm.load(model_dir, adapter_path=...)`` reads (``adapters.safetensors`` and
``adapter_config.json``)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from ..files import atomic_path, write_json_atomic

__all__ = ["adapter_weights", "apply_lora", "read_adapter_config", "save_adapter_file",
           "save_adapters"]


def apply_lora(model: nn.Module, rank: int, *, num_layers: int | None = None,
               scale: float = 20.0, dropout: float = 0.0,
               keys: Sequence[str] | None = None, dora: bool = False) -> dict[str, Any]:
    """Freeze ``model`` and add mlx-lm's LoRA layers to its last ``num_layers`` blocks (all by
    default); returns the ``adapter_config.json`` content mlx-lm's loader reads.

    Args:
        rank: the adapters' rank.
        scale: mlx-lm's LoRA scale (the update is ``scale * B A x``; mlx-lm's default 20).
        dropout: dropout on the adapters' input.
        keys: the module paths within a block to adapt (default: every linear layer).
        dora: mlx-lm's DoRA layers instead (a trained magnitude ``m`` per output besides
            the low-rank pair; ``fine_tune_type: dora`` in the config).

    Example:
        >>> from trainers.lm import build_model, model_config
        >>> model = build_model(model_config("llama", "tiny"))
        >>> apply_lora(model, 4)["lora_parameters"]
        {'rank': 4, 'scale': 20.0, 'dropout': 0.0}
        >>> sorted({k.rsplit(".", 1)[-1] for k, _ in tree_flatten(model.trainable_parameters())})
        ['lora_a', 'lora_b']
    """
    from mlx_lm.tuner.utils import linear_to_lora_layers

    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"lora rank must be a positive int, got {rank!r}")
    blocks = len(model.layers)
    num_layers = blocks if num_layers is None else num_layers
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or \
            not 1 <= num_layers <= blocks:
        raise ValueError(f"num_layers must be an int in [1, {blocks}], got {num_layers!r}")
    parameters: dict[str, Any] = {"rank": rank, "scale": float(scale), "dropout": float(dropout)}
    if keys is not None:
        parameters["keys"] = list(keys)
    model.freeze()
    linear_to_lora_layers(model, num_layers, parameters, use_dora=bool(dora))
    return {"fine_tune_type": "dora" if dora else "lora", "num_layers": num_layers,
            "lora_parameters": parameters}


def adapter_weights(model: nn.Module) -> dict[str, mx.array]:
    """The trainable weights of a LoRA model by their dotted names (what adapters hold)."""
    return dict(tree_flatten(model.trainable_parameters()))


def save_adapter_file(weights: Mapping[str, mx.array], path: str | os.PathLike) -> str:
    """Write ``weights`` to one ``.safetensors`` file, whole or not at all (mlx-lm's numbered
    ``0000100_adapters.safetensors`` files, for instance); returns the path."""
    path = os.fspath(path)
    weights = dict(weights)
    mx.eval(weights)
    with atomic_path(path) as tmp:  # keeps the .safetensors extension mx.save_* wants
        mx.save_safetensors(tmp, weights)
    return path


def save_adapters(model: nn.Module, adapter_config: Mapping[str, Any],
                  directory: str | os.PathLike) -> str:
    """Write ``adapters.safetensors`` and ``adapter_config.json`` into ``directory`` (created),
    the layout of ``mlx_lm.load(model_dir, adapter_path=directory)``; returns the directory.
    Each file is written whole or not at all."""
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    weights = adapter_weights(model)
    mx.eval(weights)
    target = os.path.join(directory, "adapters.safetensors")
    with atomic_path(target) as tmp:  # keeps the .safetensors extension mx.save_* wants
        mx.save_safetensors(tmp, weights)
    write_json_atomic(os.path.join(directory, "adapter_config.json"), dict(adapter_config))
    return directory


def read_adapter_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The ``adapter_config.json`` of an adapters directory."""
    with open(os.path.join(os.fspath(directory), "adapter_config.json"), encoding="utf-8") as f:
        return json.load(f)
