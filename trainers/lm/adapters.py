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

from ..files import atomic_path, ensure_dir, write_json_atomic

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

    Raises:
        ValueError: a bad rank or ``num_layers``, or a rank larger than an adapted layer's
            smaller width (names the layer and its widths).

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
    _check_rank(model, rank, num_layers, keys)  # before the model is changed
    model.freeze()
    linear_to_lora_layers(model, num_layers, parameters, use_dora=bool(dora))
    return {"fine_tune_type": "dora" if dora else "lora", "num_layers": num_layers,
            "lora_parameters": parameters}


def _widths(module: nn.Module) -> tuple[int, int] | None:
    """``(inputs, outputs)`` of a layer LoRA adapts (linear, quantized linear, a stack of
    experts' linears, an embedding), from its weight; None for other modules."""
    weight = getattr(module, "weight", None) if isinstance(module, nn.Module) else None
    if not isinstance(weight, mx.array) or weight.ndim < 2:
        return None
    if isinstance(module, nn.Embedding | nn.QuantizedEmbedding):
        rows, width = weight.shape[-2], weight.shape[-1]
        if isinstance(module, nn.QuantizedEmbedding):
            width = width * 32 // module.bits
        return rows, width  # LoRA maps a token's one-hot row to the embedding's width
    inputs, outputs = weight.shape[-1], weight.shape[-2]
    bits = getattr(module, "bits", None)
    if isinstance(bits, int) and bits > 0 and weight.dtype == mx.uint32:
        inputs = inputs * 32 // bits  # quantized: 32 // bits values packed per uint32
    return inputs, outputs


def _check_rank(model: nn.Module, rank: int, num_layers: int, keys: Sequence[str] | None
                ) -> None:
    """Refuse a rank above a layer's smaller width: ``B A`` of a layer mapping ``n`` inputs
    to ``m`` outputs has rank at most ``min(n, m)``, so a larger rank adds parameters that
    can change nothing."""
    blocks = len(model.layers)
    chosen = None if keys is None else set(keys)
    narrowest: tuple[int, str, tuple[int, int]] | None = None
    for index in range(blocks - num_layers, blocks):
        for name, module in model.layers[index].named_modules():
            if chosen is not None and name not in chosen:
                continue
            widths = _widths(module)
            if widths is None or (chosen is None and not _adaptable(module)):
                continue
            if narrowest is None or min(widths) < narrowest[0]:
                narrowest = (min(widths), f"model.layers.{index}.{name}", widths)
    if narrowest is not None and rank > narrowest[0]:
        bound, name, (inputs, outputs) = narrowest
        raise ValueError(
            f"lora rank {rank} is larger than layer {name} allows: it maps {inputs} inputs to "
            f"{outputs} outputs, so its update has rank at most {bound} (choose a rank "
            f"<= {bound})")


def _adaptable(module: nn.Module) -> bool:
    """A layer mlx-lm adapts when no keys are given (its linears and embeddings)."""
    return hasattr(module, "to_lora") or isinstance(
        module, nn.Linear | nn.QuantizedLinear | nn.Embedding | nn.QuantizedEmbedding) or \
        type(module).__name__ in ("SwitchLinear", "QuantizedSwitchLinear")


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
                  directory: str | os.PathLike, *, root: str | os.PathLike | None = None
                  ) -> str:
    """Write ``adapters.safetensors`` and ``adapter_config.json`` into ``directory`` (created),
    the layout of ``mlx_lm.load(model_dir, adapter_path=directory)``; returns the directory.
    The files are written as :func:`trainers.lm.models.save_model_dir` writes its own (whole
    or not at all, the user's umask, never through a link below ``root``), and it raises as
    that does.
    """
    directory = os.fspath(directory)
    ensure_dir(directory, root=root)
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
