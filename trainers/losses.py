"""Masked losses and metrics for causal language models over padded batches.

A batch from :class:`trainers.sequences.SequenceBatches` holds ``inputs`` and ``targets``
(``[B, L]``) and ``lengths`` (``[B]``): row ``r`` has real positions ``0 .. lengths[r] - 1``.
Every function here counts real positions only, so padding never reaches a loss or a
gradient: the mean is the sum of per-token losses over real positions divided by their number
(not a mean of per-row means, which would weigh a short row like a long one).

Everything stays on the device (no ``.item()``, no host wait), so these run inside a compiled
training step and :func:`tokens_in` can be summed per step for a tokens-per-second figure.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any, cast

import mlx.core as mx
import mlx.nn as nn

__all__ = [
    "bits_per_byte",
    "causal_lm_loss",
    "evaluate_lm",
    "length_mask",
    "masked_cross_entropy",
    "tokens_in",
]

LN2 = math.log(2.0)


def length_mask(lengths: mx.array, length: int, offsets: mx.array | None = None) -> mx.array:
    """``[B, length]`` boolean mask, true at the counted positions ``offsets[r] .. lengths[r] - 1``
    (``offsets`` default to 0).

    Example:
        >>> length_mask(mx.array([2, 0, 3]), 3).tolist()
        [[True, True, False], [False, False, False], [True, True, True]]
        >>> length_mask(mx.array([3]), 3, offsets=mx.array([1])).tolist()
        [[False, True, True]]
    """
    positions = mx.arange(length)[None, :]
    mask = positions < mx.array(lengths)[:, None]
    if offsets is not None:
        mask = mask & (positions >= mx.array(offsets)[:, None])
    return mask


def _mask_of(targets: mx.array, lengths: Any, mask: Any, offsets: Any = None) -> mx.array:
    if (lengths is None) == (mask is None):
        raise ValueError("give exactly one of lengths ([B] real positions) or mask ([B, L])")
    if mask is not None:
        if offsets is not None:
            raise ValueError("offsets go with lengths, not with a mask")
        mask = mx.array(mask)
        if mask.shape != targets.shape:
            raise ValueError(f"mask shape {mask.shape} differs from targets shape {targets.shape}")
        return mask.astype(mx.bool_)
    lengths = mx.array(lengths)
    if lengths.shape != targets.shape[:1]:
        raise ValueError(
            f"lengths shape {lengths.shape} must be [B] = {targets.shape[:1]} (one per row)"
        )
    if offsets is not None and mx.array(offsets).shape != lengths.shape:
        raise ValueError(f"offsets shape {mx.array(offsets).shape} must be [B] like lengths")
    return length_mask(lengths, targets.shape[1], offsets)


def masked_cross_entropy(
    logits: mx.array,
    targets: mx.array,
    lengths: mx.array | None = None,
    offsets: mx.array | None = None,
    *,
    mask: mx.array | None = None,
    reduction: str = "mean",
) -> mx.array:
    r"""Cross-entropy over the real positions only (float32, whatever the logits' dtype).

    .. math::
        \frac{1}{\sum_{b,t} m_{bt}} \sum_{b,t} m_{bt}
        \Bigl(\log\sum_v e^{z_{btv}} - z_{b t y_{bt}}\Bigr)

    Args:
        logits: ``[B, L, V]``.
        targets: ``[B, L]`` integer token ids.
        lengths: ``[B]`` real positions per row;
        offsets: ``[B]`` first counted position per row (a prompt before it is left out); or
        mask: ``[B, L]`` (true/1 = counted) instead of lengths and offsets.
        reduction: ``"mean"`` (per real token; 0 for a batch without one) or ``"sum"``.

    Example:
        >>> logits = mx.zeros((1, 3, 4))          # uniform over 4 tokens
        >>> round(masked_cross_entropy(logits, mx.array([[1, 2, 0]]), mx.array([2])).item(), 6)
        1.386294
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    if logits.ndim != 3 or logits.shape[:2] != targets.shape:
        raise ValueError(
            f"logits must be [B, L, V] matching targets [B, L], got {logits.shape} and "
            f"{targets.shape}"
        )
    real = _mask_of(targets, lengths, mask, offsets)
    # float32 for the reduction: bf16/fp16 logits lose the loss's low digits otherwise.
    logits = logits.astype(mx.float32)
    picked = mx.take_along_axis(logits, targets[..., None], axis=-1).squeeze(-1)
    per_token = mx.logsumexp(logits, axis=-1) - picked
    # where() rather than a product: a padded position's value (even inf/nan) cannot leak.
    total = mx.sum(mx.where(real, per_token, 0.0))
    if reduction == "sum":
        return total
    return total / mx.maximum(mx.sum(real), 1).astype(mx.float32)


def causal_lm_loss(model: Callable[[mx.array], mx.array], inputs: mx.array, targets: mx.array,
                   lengths: mx.array, offsets: mx.array | None = None) -> mx.array:
    """The training loss for a :class:`~trainers.sequences.SequenceBatches` batch: mean
    next-token cross-entropy over the counted tokens. ``model(inputs)`` returns ``[B, L, V]``
    logits (as mlx-lm's models do). Pass it to the trainer as ``loss_fn``.

    Example:
        >>> model = lambda x: mx.zeros((*x.shape, 8))
        >>> round(causal_lm_loss(model, mx.zeros((2, 3), mx.int32), mx.ones((2, 3), mx.int32),
        ...                      mx.array([3, 1])).item(), 6)     # log 8
        2.079442
    """
    return masked_cross_entropy(model(inputs), targets, lengths, offsets)


def bits_per_byte(model: Callable[[mx.array], mx.array], inputs: mx.array, targets: mx.array,
                  lengths: mx.array, offsets: mx.array | None = None) -> mx.array:
    """The loss in bits per token, ``loss / ln 2``: bits per byte when tokens are bytes.

    An eval metric (``metrics={"bits_per_byte": bits_per_byte}``).

    Example:
        >>> model = lambda x: mx.zeros((*x.shape, 256))   # uniform over bytes: 8 bits
        >>> round(bits_per_byte(model, mx.zeros((1, 2), mx.int32), mx.zeros((1, 2), mx.int32),
        ...                     mx.array([2])).item(), 5)
        8.0
    """
    return causal_lm_loss(model, inputs, targets, lengths, offsets) / LN2


def tokens_in(batch: Mapping[str, Any]) -> mx.array:
    """The number of counted target tokens of a batch, as an int32 device array (no host wait).

    Reads ``mask`` (``[B, L]``) when the batch has one (it already leaves out padding, as in
    :class:`~trainers.sequences.SequenceBatches` with ``token_masks``), else ``lengths``
    (``[B]``, less ``offsets`` when the batch has them).

    Raises:
        TypeError: the batch is not a dict.
        KeyError: it holds neither ``lengths`` nor ``mask``.

    Example:
        >>> tokens_in({"lengths": mx.array([3, 0, 2])}).item()
        5
    """
    if not isinstance(batch, Mapping):
        raise TypeError(f"tokens_in takes a dict batch, got {type(batch).__name__}")
    if "mask" in batch:
        return mx.sum(mx.array(batch["mask"]).astype(mx.int32))
    if "lengths" in batch:
        count = mx.array(batch["lengths"]).astype(mx.int32)
        if "offsets" in batch:
            count = count - mx.array(batch["offsets"]).astype(mx.int32)
        return mx.sum(count)
    raise KeyError(f"batch holds neither 'lengths' nor 'mask' (keys: {sorted(batch)})")


def evaluate_lm(
    model: nn.Module,
    batches: Iterable[Mapping[str, Any]],
    *,
    byte_level: bool = False,
) -> dict[str, float]:
    """Per-token loss over a whole evaluation set, each real token weighing the same.

    Sums token losses and token counts over the batches on the device and divides once at the
    end (one host wait), so batches with more real tokens weigh more, as they should.

    Returns:
        ``{"loss": nats per token, "tokens": count}`` and, with ``byte_level=True``,
        ``"bits_per_byte"`` (``loss / ln 2``).

    Example:
        >>> import mlx.nn as nn
        >>> class Uniform(nn.Module):
        ...     def __call__(self, x):
        ...         return mx.zeros((*x.shape, 256))
        >>> batches = [{"inputs": mx.zeros((2, 4), mx.int32), "targets": mx.zeros((2, 4), mx.int32),
        ...             "lengths": mx.array([4, 1])}]
        >>> out = evaluate_lm(Uniform(), batches, byte_level=True)
        >>> out["tokens"], round(out["bits_per_byte"], 5)
        (5, 8.0)
    """

    @partial(mx.compile, inputs=model.state)
    def sums(inputs, targets, lengths, offsets):
        return masked_cross_entropy(model(inputs), targets, lengths, offsets, reduction="sum")

    was_training = model.training
    model.train(False)
    total, count = mx.array(0.0), mx.array(0)
    try:
        for batch in batches:
            inputs, targets, lengths = (mx.array(batch[k]) for k in ("inputs", "targets",
                                                                     "lengths"))
            offsets = mx.array(batch["offsets"]) if "offsets" in batch else mx.zeros_like(lengths)
            total = total + sums(inputs, targets, lengths, offsets)
            count = count + tokens_in({"lengths": lengths, "offsets": offsets})
    finally:
        model.train(was_training)
    # item() is typed int | float | complex whatever the dtype: count is an integer array
    tokens = int(cast(int, count.item()))  # host waits for the whole evaluation
    if tokens == 0:
        raise ValueError("evaluation batches hold no real token")
    loss = cast(float, total.item()) / tokens  # total is a float32 scalar
    out: dict[str, float] = {"loss": loss, "tokens": tokens}
    if byte_level:
        out["bits_per_byte"] = loss / LN2
    return out
