"""Batches of token sequences for language models: length buckets, padding, exact resume.

A compiled training step is traced again for every new batch shape, so sequences of varying
length must be padded to a few lengths only. :class:`SequenceBatches` assigns each sequence to
the shortest *bucket* length that holds it and pads it there; a batch holds sequences of one
bucket, so the shapes a run can see are one per bucket, all known before training starts
(:attr:`SequenceBatches.shapes`).

A sequence of ``n`` tokens gives ``n - 1`` positions: ``inputs = tokens[:-1]`` and
``targets = tokens[1:]`` (the next token at each position). A batch is a dict::

    {"inputs": int32 [B, L], "targets": int32 [B, L], "lengths": int32 [B]}

where row ``r`` holds real positions ``0 .. lengths[r] - 1`` and padding after them (with
``prompt_lengths``, an ``offsets`` key too: positions before ``offsets[r]`` are prompt, not
trained on). The losses in :mod:`trainers.losses` (``causal_lm_loss(model, inputs, targets,
lengths, offsets=None)``) average over the counted positions only. A causal model never looks
right of a position, so the padding cannot change what it computes at a real position either.

Each epoch's order is a pure function of ``(seed, epoch)``, and ``epoch(e, start=i)`` begins at
batch ``i`` directly: a resumed run continues mid-epoch without reading the batches it already
trained on.

Batches are gathered and prefetched by an ``mlx.data`` pipeline when mlx-data is installed
(``Buffer.perm`` → ``Buffer.batch`` → ``ordered_prefetch`` in background threads), and by NumPy
indexing otherwise; both give the same arrays.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

__all__ = ["SequenceBatches", "read_byte_documents"]

_LONG = ("split", "truncate")
_BACKENDS = ("auto", "mlx.data", "numpy")


def _mlx_data() -> Any:
    try:
        import mlx.data as dx
    except ImportError:  # mlx-data is optional; NumPy gathers the batches without it
        return None
    return dx


def _check_int(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _as_tokens(seq: Any, index: int) -> np.ndarray:
    array = np.asarray(seq)
    if array.ndim != 1:
        raise ValueError(
            f"sequences[{index}] must be a 1-D array of token ids, got shape {array.shape}"
        )
    if array.size and array.dtype.kind not in "iu":
        raise TypeError(
            f"sequences[{index}] must hold integer token ids, got dtype {array.dtype}"
        )
    return array


class SequenceBatches:
    """Padded batches of token sequences, grouped by length into a fixed set of buckets.

    Args:
        sequences: token sequences (1-D integer arrays or lists), one per document or example.
            A sequence of ``n`` tokens gives ``n - 1`` positions; sequences of fewer than 2
            tokens have nothing to predict and are skipped (counted in :attr:`skipped`).
        batch_size: rows per batch.
        buckets: an int ``k`` (bucket lengths ``k, 2k, 3k, ...`` up to ``max_length``, whose
            last bucket is ``max_length`` itself), or an explicit increasing tuple of lengths
            (then ``max_length`` is its last entry).
        max_length: the longest padded length (positions). Default: the longest sequence's
            positions, rounded up to a bucket.
        long: what to do with a sequence of more than ``max_length`` positions: ``"split"``
            (default) cuts it into consecutive pieces of ``max_length`` positions that share
            one boundary token (so every target is predicted exactly once, at the cost of the
            context across a cut); ``"truncate"`` keeps its first ``max_length`` positions
            (as mlx-lm does).
        shuffle: reshuffle every epoch: the sequences within each bucket, then the order of
            the batches, both with ``numpy.random.default_rng((seed, epoch))``. Without it the
            batches come bucket by bucket (shortest first), sequences in their given order.
        seed: base seed of the shuffle (a non-negative int).
        drop_last: drop each bucket's final incomplete batch. By default it is kept and filled
            up to ``batch_size`` with empty rows (``lengths == 0``), so no sequence is lost and
            no new shape appears.
        pad_id: the token written into padding (never counted by the losses).
        vocab_size: when given, every token must lie in ``[0, vocab_size)`` (checked once
            here: an out-of-range target would read outside the logits silently).
        prompt_lengths: for prompt/completion data, the number of prompt tokens of each
            sequence. Batches then also hold ``offsets`` (int32 ``[B]``): the targets of row
            ``r`` count from position ``offsets[r]`` to ``lengths[r] - 1`` only, so the loss
            trains on the completion (mlx-lm's ``mask_prompt``). A split piece that lies wholly
            inside the prompt is kept (it counts no token).
        token_masks: instead of ``prompt_lengths``, one boolean array per sequence (its
            length) marking the tokens to train on (e.g. every assistant turn of a chat).
            Batches then also hold ``mask`` (uint8 ``[B, L]``, 1 = counted): target ``t`` of
            row ``r`` counts when it is real and its token is marked
            (:func:`trainers.losses.tokens_in` counts these).
        backend: ``"mlx.data"``, ``"numpy"`` or ``"auto"`` (mlx.data when installed).
        prefetch: batches the mlx.data backend prepares ahead in background threads (0: none).
        threads: background threads of the mlx.data prefetch.

    Attributes:
        bucket_lengths: every length a batch may be padded to (the bound on compiled shapes).
        shapes: the ``(batch_size, length)`` shapes the batches actually take, one per bucket
            that receives a batch; fixed for the whole run (no epoch adds one).
        num_tokens: counted target tokens per epoch (padding and prompts excluded).
        skipped: sequences skipped for having fewer than 2 tokens.

    Example:
        >>> data = SequenceBatches([[1, 2, 3], [4, 5, 6, 7, 8], [9, 10]], 2, buckets=2,
        ...                        shuffle=False, backend="numpy")
        >>> data.bucket_lengths, data.shapes, len(data)
        ((2, 4), ((2, 2), (2, 4)), 2)
        >>> first = next(iter(data.epoch(0)))
        >>> first["inputs"].tolist(), first["targets"].tolist(), first["lengths"].tolist()
        ([[1, 2], [9, 0]], [[2, 3], [10, 0]], [2, 1])
    """

    #: ``epoch(e, start=i)`` begins at batch ``i`` (a resumed run skips nothing).
    can_start = True

    def __init__(
        self,
        sequences: Iterable[Any],
        batch_size: int,
        *,
        buckets: int | Sequence[int] = 64,
        max_length: int | None = None,
        long: str = "split",
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        pad_id: int = 0,
        vocab_size: int | None = None,
        prompt_lengths: Sequence[int] | None = None,
        token_masks: Sequence[Any] | None = None,
        backend: str = "auto",
        prefetch: int = 2,
        threads: int = 1,
    ):
        self.batch_size = _check_int("batch_size", batch_size, minimum=1)
        self.seed = _check_int("seed", seed, minimum=0)
        self.pad_id = _check_int("pad_id", pad_id, minimum=0)
        self.prefetch = _check_int("prefetch", prefetch, minimum=0)
        self.threads = _check_int("threads", threads, minimum=1)
        if long not in _LONG:
            raise ValueError(f"long must be one of {_LONG}, got {long!r}")
        if backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
        if backend == "mlx.data" and _mlx_data() is None:
            raise ValueError("backend='mlx.data' needs mlx-data (pip install mlx-data)")
        self.backend = backend if backend != "auto" else (
            "mlx.data" if _mlx_data() is not None else "numpy")
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        if vocab_size is not None:
            vocab_size = _check_int("vocab_size", vocab_size, minimum=1)
            if self.pad_id >= vocab_size:
                raise ValueError(f"pad_id must be < vocab_size={vocab_size}, got {pad_id!r}")

        arrays = [_as_tokens(s, i) for i, s in enumerate(sequences)]
        prompts = None if prompt_lengths is None else _check_prompts(prompt_lengths, arrays)
        if token_masks is not None and prompts is not None:
            raise ValueError("give prompt_lengths or token_masks, not both")
        marks = None if token_masks is None else _check_masks(token_masks, arrays)
        self.skipped = sum(a.size < 2 for a in arrays)
        arrays = [a for a in arrays if a.size >= 2]
        if not arrays:
            raise ValueError("sequences hold no sequence of 2 or more tokens (nothing to predict)")
        self.bucket_lengths = _bucket_lengths(buckets, max_length,
                                              max(a.size - 1 for a in arrays))
        flat = np.concatenate(arrays)
        if vocab_size is not None:
            low, high = int(flat.min()), int(flat.max())
            if low < 0 or high >= vocab_size:
                bad = low if low < 0 else high
                raise ValueError(f"sequences hold token {bad}, outside [0, {vocab_size})")
        elif flat.min() < 0:
            raise ValueError(f"sequences hold a negative token id {int(flat.min())}")
        if flat.max() > np.iinfo(np.int32).max:
            raise ValueError(f"token id {int(flat.max())} does not fit in int32")
        flat = flat.astype(np.int32, copy=False)
        marked = None if marks is None else np.concatenate(marks)

        doc, within, lengths = _pieces([a.size for a in arrays], self.bucket_lengths[-1], long)
        starts = np.concatenate([[0], np.cumsum([a.size for a in arrays])[:-1]])[doc] + within
        if prompts is not None:
            # the first counted position of a piece: the prompt's last token predicts the
            # first completion token, so a prompt of p tokens leaves out positions < p - 1
            offsets = np.clip(np.maximum(prompts[doc] - 1, 0) - within, 0, lengths)
        bucket_of = np.searchsorted(np.array(self.bucket_lengths), lengths, side="left")
        # One padded [count + 1, L] block per bucket and key; its last row is the empty filler.
        self._columns = []
        for b, length in enumerate(self.bucket_lengths):
            chosen = bucket_of == b
            s = np.append(starts[chosen], 0)
            n = np.append(lengths[chosen], 0).astype(np.int32)
            positions = np.arange(length)
            real = positions[None, :] < n[:, None]
            index = np.minimum(s[:, None] + positions[None, :], flat.size - 2)
            columns = {
                "inputs": np.where(real, flat[index], self.pad_id).astype(np.int32),
                "targets": np.where(real, flat[index + 1], self.pad_id).astype(np.int32),
                "lengths": n,
            }
            if prompts is not None:
                columns["offsets"] = np.append(offsets[chosen], 0).astype(np.int32)
            if marked is not None:  # the target of position p is token p + 1
                # uint8: mlx.data stores no bool arrays
                columns["mask"] = (real & marked[index + 1]).astype(np.uint8)
            self._columns.append(columns)
        self._counts = [len(c["lengths"]) - 1 for c in self._columns]
        self.num_tokens = int(lengths.sum() - (offsets.sum() if prompts is not None else 0))
        if marked is not None:
            self.num_tokens = int(sum(c["mask"].sum() for c in self._columns))
        self.shapes = tuple(
            (self.batch_size, length)
            for length, count in zip(self.bucket_lengths, self._counts)
            if count >= self.batch_size or (count and not self.drop_last)
        )
        # an mlx.data Buffer, made on first use; mlx.data ships no type stubs
        self._buffer: Any = None
        if len(self) == 0:
            raise ValueError(
                f"no bucket holds {self.batch_size} sequences (batch_size={self.batch_size}, "
                f"drop_last=True, sequences per bucket {self._counts})"
            )

    @classmethod
    def windows(
        cls,
        tokens: Any,
        seq_len: int,
        batch_size: int,
        *,
        separator: int | None = None,
        **options: Any,
    ) -> SequenceBatches:
        """Fixed windows of a long token stream (the pre-training layout), one shape.

        The stream (or the documents joined, with ``separator`` between them when given) is
        cut into windows of ``seq_len + 1`` tokens that overlap by one, so that every token but
        the first is a target exactly once. The last window may be shorter: it is padded, so
        every batch is ``[batch_size, seq_len]``.

        Args:
            tokens: a 1-D token array, or a list of documents (1-D token arrays).
            seq_len: positions per window.
            batch_size: windows per batch.
            separator: token placed between documents (none by default).
            **options: ``shuffle``, ``seed``, ``drop_last``, ``pad_id``, ``vocab_size``,
                ``backend``, ``prefetch``, ``threads`` as for :class:`SequenceBatches`.

        Example:
            >>> data = SequenceBatches.windows(list(range(10)), 4, 2, shuffle=False,
            ...                                backend="numpy")
            >>> [b["inputs"].tolist() for b in data.epoch(0)]
            [[[0, 1, 2, 3], [4, 5, 6, 7]], [[8, 0, 0, 0], [0, 0, 0, 0]]]
        """
        for name in ("buckets", "max_length", "long"):
            if name in options:
                raise TypeError(f"windows() takes no {name!r}: windows have one length, seq_len")
        seq_len = _check_int("seq_len", seq_len, minimum=1)
        try:
            array = np.asarray(tokens)
        except ValueError:  # documents of different lengths
            array = None
        if array is not None and array.ndim == 1 and array.dtype.kind in "iu":
            stream = array
        else:
            docs = [_as_tokens(d, i) for i, d in enumerate(tokens)]
            if separator is not None:
                _check_int("separator", separator, minimum=0)
                sep = np.array([separator], dtype=np.int64)
                docs = [part for d in docs for part in (sep, d)][1:]
            stream = np.concatenate(docs) if docs else np.zeros(0, np.int64)
        return cls([stream], batch_size, buckets=(seq_len,), long="split", **options)

    def __len__(self) -> int:
        full, rest = zip(*(divmod(c, self.batch_size) for c in self._counts))
        return sum(full) + (0 if self.drop_last else sum(1 for r in rest if r))

    def __repr__(self) -> str:
        return (f"SequenceBatches({sum(self._counts)} sequences, batch_size={self.batch_size}, "
                f"shapes={list(self.shapes)}, {len(self)} batches/epoch, "
                f"backend={self.backend!r})")

    @property
    def padding_fraction(self) -> float:
        """Share of the batch positions that are padding (per epoch)."""
        total = sum(length * self.batch_size * n for (_, length), n
                    in zip(self.shapes, self._batches_per_bucket()))
        return 1.0 - self.num_tokens / total if total else 0.0

    def _batches_per_bucket(self) -> list[int]:
        per = []
        for count in self._counts:
            full, rest = divmod(count, self.batch_size)
            n = full + (1 if rest and not self.drop_last else 0)
            if n:
                per.append(n)
        return per

    def plan(self, epoch: int) -> list[tuple[int, np.ndarray]]:
        """The batches of epoch ``epoch`` as ``(bucket index, rows)``: a pure function of
        ``(seed, epoch)``. A row equal to the bucket's sequence count is an empty filler row."""
        epoch = _check_int("epoch", epoch, minimum=0)
        rng = np.random.default_rng((self.seed, epoch)) if self.shuffle else None
        batches = []
        size = self.batch_size
        for b, count in enumerate(self._counts):
            rows = rng.permutation(count) if rng is not None else np.arange(count)
            full, rest = divmod(count, size)
            batches += [(b, rows[k * size:(k + 1) * size]) for k in range(full)]
            if rest and not self.drop_last:
                filler = np.full(size - rest, count)
                batches.append((b, np.concatenate([rows[full * size:], filler])))
        if rng is not None:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def epoch(self, epoch: int, start: int = 0) -> Iterator[dict[str, np.ndarray]]:
        """Yield the batches of epoch ``epoch`` (dicts of NumPy arrays) from batch ``start`` on.

        Raises:
            ValueError: ``start`` is negative or beyond the epoch's batches.
        """
        start = _check_int("start", start, minimum=0)
        if start > len(self):
            raise ValueError(f"start must be <= {len(self)} batches per epoch, got {start}")
        batches = self.plan(epoch)[start:]
        if self.backend == "numpy":
            return self._numpy_batches(batches)
        return self._mlx_data_batches(batches)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        """The batches of epoch 0 (so an instance also serves as evaluation data)."""
        return self.epoch(0)

    def _numpy_batches(self, batches: list) -> Iterator[dict[str, np.ndarray]]:
        for b, rows in batches:
            yield {key: column[rows] for key, column in self._columns[b].items()}

    def _mlx_data_batches(self, batches: list) -> Iterator[dict[str, np.ndarray]]:
        if not batches:
            return iter(())
        if self._buffer is None:
            self._buffer = self._make_buffer()
        offsets = np.cumsum([0, *(c + 1 for c in self._counts)])
        order = np.concatenate([offsets[b] + rows for b, rows in batches])
        # Rows of one batch are consecutive in `order` and share their bucket's length, so
        # mlx.data stacks them without padding: the bucket padding was written once, here.
        selected = self._buffer.perm(order.tolist()).batch([len(r) for _, r in batches])
        if self.prefetch:
            return iter(selected.ordered_prefetch(self.prefetch, self.threads))
        return (selected[i] for i in range(len(selected)))

    def _make_buffer(self) -> Any:
        samples = [
            {key: column[r] for key, column in columns.items()}
            for columns in self._columns
            for r in range(len(columns["lengths"]))
        ]
        return _mlx_data().buffer_from_vector(samples)


def _check_prompts(prompt_lengths: Any, arrays: list[np.ndarray]) -> np.ndarray:
    """The prompt lengths of the sequences kept (those of 2 or more tokens), checked."""
    prompts = np.asarray(prompt_lengths)
    if prompts.shape != (len(arrays),) or (prompts.size and prompts.dtype.kind not in "iu"):
        raise ValueError(
            f"prompt_lengths must hold one int per sequence ({len(arrays)}), got "
            f"shape {prompts.shape} dtype {prompts.dtype}"
        )
    for i, (p, a) in enumerate(zip(prompts.tolist(), arrays)):
        if not 0 <= p <= a.size:
            raise ValueError(f"prompt_lengths[{i}] is {p}, outside [0, {a.size}] (sequence length)")
    return prompts[[a.size >= 2 for a in arrays]].astype(np.int64)


def _check_masks(token_masks: Any, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """The token masks of the sequences kept (those of 2 or more tokens), checked."""
    masks = list(token_masks)
    if len(masks) != len(arrays):
        raise ValueError(f"token_masks must hold one mask per sequence ({len(arrays)}), "
                         f"got {len(masks)}")
    kept = []
    for i, (m, a) in enumerate(zip(masks, arrays)):
        m = np.asarray(m)
        if m.shape != a.shape or (m.size and m.dtype.kind not in "bui"):
            raise ValueError(f"token_masks[{i}] must be a boolean array of the sequence's "
                             f"shape {a.shape}, got shape {m.shape} dtype {m.dtype}")
        if a.size >= 2:
            kept.append(m.astype(bool))
    return kept


def _bucket_lengths(buckets: Any, max_length: Any, longest: int) -> tuple[int, ...]:
    """The padded lengths; a positions count ``m`` goes to the first bucket ``>= m``."""
    if isinstance(buckets, (int, np.integer)) and not isinstance(buckets, bool):
        step = _check_int("buckets", buckets, minimum=1)
        if max_length is None:
            top = step * math.ceil(longest / step)
        else:
            top = _check_int("max_length", max_length, minimum=1)
        return tuple(range(step, top, step)) + (top,)
    if isinstance(buckets, (str, bytes)) or not isinstance(buckets, Sequence) or not buckets:
        raise ValueError(
            f"buckets must be an int (a bucket size) or a non-empty increasing tuple of "
            f"lengths, got {buckets!r}"
        )
    lengths = tuple(_check_int("buckets[i]", v, minimum=1) for v in buckets)
    if any(a >= b for a, b in zip(lengths, lengths[1:])):
        raise ValueError(f"buckets must be strictly increasing, got {buckets!r}")
    if max_length is not None and max_length != lengths[-1]:
        raise ValueError(
            f"max_length={max_length!r} disagrees with the largest bucket {lengths[-1]} "
            "(with explicit buckets, leave max_length out)"
        )
    return lengths


def _pieces(sizes: list[int], max_positions: int,
            long: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every piece's document, start within that document, and number of positions."""
    positions = np.asarray(sizes, dtype=np.int64) - 1
    if long == "truncate":
        return (np.arange(len(sizes)), np.zeros(len(sizes), np.int64),
                np.minimum(positions, max_positions))
    per_doc = -(-positions // max_positions)  # ceil
    doc = np.repeat(np.arange(len(sizes)), per_doc)
    k = np.arange(per_doc.sum()) - np.repeat(np.cumsum(per_doc) - per_doc, per_doc)
    within = k * max_positions
    return doc, within, np.minimum(positions[doc] - within, max_positions)


def read_byte_documents(paths: Iterable[str | os.PathLike]) -> list[np.ndarray]:
    """Read files as byte-level token sequences (one ``uint8`` array of token ids per file).

    Reads through mlx.data's ``load_file`` when mlx-data is installed (in its C++ reader),
    with Python's ``open`` otherwise; both give the same bytes.

    Raises:
        FileNotFoundError: naming the first path that does not exist.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "a.txt")
        >>> _ = open(path, "wb").write(b"hi\\n")
        >>> read_byte_documents([path])[0].tolist()
        [104, 105, 10]
    """
    names: list[str] = [os.fspath(p) for p in paths]
    for p in names:
        if not os.path.isfile(p):
            raise FileNotFoundError(f"no such file: {p}")
    dx = _mlx_data()
    if dx is None or not names:
        return [np.frombuffer(open(p, "rb").read(), dtype=np.uint8) for p in names]
    files = dx.buffer_from_vector([{"file": p.encode()} for p in names]).load_file("file")
    # load_file gives int8; viewing as uint8 restores byte values above 127.
    return [np.asarray(files[i]["file"]).view(np.uint8).copy() for i in range(len(files))]
