"""Using a trained language model: its validation metrics and samples from it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from ..losses import evaluate_lm

__all__ = ["generate_tokens", "validation_metrics"]


def validation_metrics(model: nn.Module, batches: Any, *, byte_level: bool) -> dict[str, float]:
    """``{"val_loss": nats per token, "val_tokens": n}`` and, for byte-level data,
    ``"val_bits_per_byte"``, over every token of ``batches`` (each token weighs the same).

    Example:
        >>> import numpy as np
        >>> from trainers.lm import build_model, model_config, validation_batches
        >>> model = build_model(model_config("llama", "tiny"))
        >>> out = validation_metrics(model, validation_batches([np.arange(64)], 8, 2, windows=2),
        ...                          byte_level=True)
        >>> sorted(out), out["val_tokens"]
        (['val_bits_per_byte', 'val_loss', 'val_tokens'], 16)
    """
    out = evaluate_lm(model, batches, byte_level=byte_level)
    metrics = {"val_loss": out["loss"], "val_tokens": out["tokens"]}
    if byte_level:
        metrics["val_bits_per_byte"] = out["bits_per_byte"]
    return metrics


def generate_tokens(model: nn.Module, prompt: Sequence[int], count: int, *,
                    temperature: float = 0.8, seed: int = 0) -> list[int]:
    """``count`` tokens sampled from ``model`` after ``prompt`` (mlx-lm's generation loop with
    its key-value cache); ``temperature=0`` takes the most likely token.

    Example:
        >>> from trainers.lm import build_model, model_config
        >>> model = build_model(model_config("llama", "tiny"))
        >>> len(generate_tokens(model, [35, 32], 5))
        5
    """
    from mlx_lm.generate import generate_step
    from mlx_lm.sample_utils import make_sampler

    if not prompt:
        raise ValueError("prompt must hold at least one token")
    mx.random.seed(seed)
    was_training = model.training
    model.train(False)
    try:
        steps = generate_step(mx.array(list(prompt), mx.int32), model, max_tokens=count,
                              sampler=make_sampler(temp=temperature))
        return [int(token) for token, _ in steps]
    finally:
        model.train(was_training)
