"""Token batches for language models: pre-training windows, a fixed validation set and length
buckets for fine-tuning examples, all as :class:`trainers.SequenceBatches` (the one
sequence-batching module; these only choose its settings)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..sequences import SequenceBatches

__all__ = ["corpus_batches", "example_batches", "validation_batches"]


def corpus_batches(documents: Sequence[np.ndarray], seq_len: int, batch_size: int, *,
                   seed: int = 0, shuffle: bool = True, **options: Any) -> SequenceBatches:
    """Pre-training batches: the documents joined and cut into windows of ``seq_len``
    positions, every batch ``[batch_size, seq_len]`` (one compiled shape).

    ``options`` go to :meth:`trainers.SequenceBatches.windows` (``vocab_size``, ``backend``,
    ``prefetch``, ...).

    Example:
        >>> data = corpus_batches([np.arange(9), np.arange(8)], 4, 2, shuffle=False)
        >>> data.shapes, len(data)
        (((2, 4),), 2)
    """
    return SequenceBatches.windows(list(documents), seq_len, batch_size, seed=seed,
                                   shuffle=shuffle, **options)


def validation_batches(documents: Sequence[np.ndarray], seq_len: int, batch_size: int, *,
                       windows: int | None = 256, **options: Any) -> SequenceBatches:
    """A fixed validation set: ``windows`` windows of ``seq_len`` positions spread evenly over
    the joined documents (all of them with ``windows=None``), in order.

    Evenly spread windows sample every validation document rather than the first ones, at a
    fixed cost per evaluation.

    Example:
        >>> data = validation_batches([np.arange(100)], 9, 2, windows=4)
        >>> [b["inputs"][:, 0].tolist() for b in data]
        [[0, 30], [60, 90]]
    """
    stream = np.concatenate([np.asarray(d) for d in documents])
    if windows is None:
        return SequenceBatches.windows(stream, seq_len, batch_size, shuffle=False, **options)
    if stream.size < seq_len + 1:
        raise ValueError(f"validation data holds {stream.size} tokens, fewer than one window "
                         f"of {seq_len + 1}")
    starts = np.linspace(0, stream.size - seq_len - 1, windows).round().astype(np.int64)
    pieces = [stream[s:s + seq_len + 1] for s in starts]
    return SequenceBatches(pieces, batch_size, buckets=(seq_len,), shuffle=False, **options)


def example_batches(sequences: Sequence[np.ndarray], batch_size: int, *, max_length: int,
                    prompt_lengths: Sequence[int] | None = None, bucket: int = 32,
                    seed: int = 0, shuffle: bool = True, **options: Any) -> SequenceBatches:
    """Fine-tuning batches: one example per row, in length buckets of ``bucket`` positions up
    to ``max_length`` (longer examples are truncated, as mlx-lm does); with
    ``prompt_lengths`` the prompt tokens are left out of the loss.

    Example:
        >>> data = example_batches([np.arange(5), np.arange(40)], 2, max_length=64)
        >>> data.shapes
        ((2, 32), (2, 64))
    """
    return SequenceBatches(list(sequences), batch_size, buckets=bucket,
                           max_length=max_length, long="truncate",
                           prompt_lengths=prompt_lengths, seed=seed, shuffle=shuffle, **options)
