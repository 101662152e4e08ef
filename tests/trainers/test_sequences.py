"""Token-sequence batches (length buckets, padding, exact resume) and the masked LM losses."""

from __future__ import annotations

import math
import os
from collections import Counter

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from helpers_trainer import flat_weights, train_rows

from trainers import Trainer, list_checkpoints
from trainers.data import BatchStream, as_source
from trainers.losses import (
    bits_per_byte,
    causal_lm_loss,
    evaluate_lm,
    length_mask,
    masked_cross_entropy,
    tokens_in,
)
from trainers.sequences import SequenceBatches, read_byte_documents

try:
    import mlx.data  # noqa: F401

    HAVE_MLX_DATA = True
except ImportError:
    HAVE_MLX_DATA = False

BACKENDS = ["numpy", pytest.param("mlx.data", marks=pytest.mark.skipif(
    not HAVE_MLX_DATA, reason="mlx-data not installed"))]


def random_sequences(n=60, low=1, high=40, vocab=50, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, vocab, size=int(rng.integers(low, high + 1))) for _ in range(n)]


def rows_of(batch):
    """The real (inputs, targets) of every non-empty row, as tuples."""
    out = []
    for inp, tgt, n in zip(batch["inputs"], batch["targets"], batch["lengths"]):
        if n:
            out.append((tuple(inp[:n].tolist()), tuple(tgt[:n].tolist())))
    return out


# ---------------------------------------------------------------- buckets and shapes
@pytest.mark.parametrize("backend", BACKENDS)
def test_bucket_multiples_bound_the_shapes_over_several_epochs(backend):
    seqs = random_sequences(n=80, high=45)  # up to 44 positions
    data = SequenceBatches(seqs, 4, buckets=8, max_length=48, seed=1, backend=backend)
    assert data.bucket_lengths == (8, 16, 24, 32, 40, 48)
    # which buckets hold a sequence, computed here from the positions count n - 1
    used = {8 * math.ceil((len(s) - 1) / 8) for s in seqs if len(s) >= 2}
    assert used == {8, 16, 24, 32, 40, 48}  # every bucket is populated here
    assert data.shapes == tuple((4, length) for length in sorted(used))
    seen = Counter()
    for epoch in range(4):
        for batch in data.epoch(epoch):
            assert batch["inputs"].dtype == batch["targets"].dtype == np.int32
            assert batch["lengths"].dtype == np.int32
            seen[batch["inputs"].shape] += 1
            assert batch["targets"].shape == batch["inputs"].shape
    assert set(seen) == set(data.shapes)
    assert len(seen) == len(data.bucket_lengths) == math.ceil(48 / 8)
    cells = sum(batch["inputs"].size for batch in data.epoch(0))
    real = sum(int(batch["lengths"].sum()) for batch in data.epoch(0))
    assert data.padding_fraction == pytest.approx(1 - real / cells, rel=1e-12)


def test_explicit_buckets_and_a_max_length_that_is_not_a_multiple():
    seqs = [np.arange(n) for n in (2, 3, 5, 9, 11, 12)]  # positions 1, 2, 4, 8, 10, 11
    data = SequenceBatches(seqs, 2, buckets=(3, 8, 11), shuffle=False, backend="numpy")
    assert data.shapes == ((2, 3), (2, 8), (2, 11))
    assert [b["lengths"].tolist() for b in data.epoch(0)] == [[1, 2], [4, 8], [10, 11]]
    data = SequenceBatches(seqs, 2, buckets=4, max_length=10, shuffle=False, backend="numpy")
    assert data.bucket_lengths == (4, 8, 10)
    # 11 positions split into 10 + 1 (the 1 joins bucket 4)
    assert [b["inputs"].shape[1] for b in data.epoch(0)] == [4, 4, 8, 10]
    assert [b["lengths"].tolist() for b in data.epoch(0)] == [[1, 2], [4, 1], [8, 0], [10, 10]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_sequence_appears_once_per_epoch_with_next_token_targets(backend):
    seqs = random_sequences(n=37, high=20)
    data = SequenceBatches(seqs, 5, buckets=6, seed=4, backend=backend)
    expected = Counter((tuple(s[:-1].tolist()), tuple(s[1:].tolist())) for s in seqs
                       if len(s) >= 2)
    assert data.skipped == sum(len(s) < 2 for s in seqs)
    for epoch in (0, 3):
        got = Counter(r for b in data.epoch(epoch) for r in rows_of(b))
        assert got == expected
    # padding and filler rows hold pad_id only
    for b in data.epoch(0):
        pad = np.arange(b["inputs"].shape[1])[None, :] >= b["lengths"][:, None]
        assert (b["inputs"][pad] == 0).all() and (b["targets"][pad] == 0).all()
    assert data.num_tokens == sum(len(s) - 1 for s in seqs if len(s) >= 2)


def test_long_sequences_are_split_so_every_target_is_predicted_once():
    seq = np.arange(100, 123)  # 22 positions, max_length 8 -> pieces of 8, 8, 6
    data = SequenceBatches([seq, np.arange(3)], 4, buckets=8, max_length=8, shuffle=False,
                           backend="numpy")
    rows = [r for b in data.epoch(0) for r in rows_of(b)]
    long_rows = [r for r in rows if r[0][0] >= 100]
    assert [len(i) for i, _ in long_rows] == [8, 8, 6]
    assert sum((list(t) for _, t in long_rows), []) == list(range(101, 123))
    assert sum((list(i) for i, _ in long_rows), []) == list(range(100, 122))
    truncated = SequenceBatches([seq], 1, buckets=8, max_length=8, long="truncate",
                                backend="numpy")
    (batch,) = list(truncated.epoch(0))
    assert batch["inputs"].tolist() == [list(range(100, 108))]
    assert batch["targets"].tolist() == [list(range(101, 109))]


def test_drop_last_drops_incomplete_batches_and_the_default_fills_them():
    seqs = [np.arange(5)] * 7  # 7 sequences of 4 positions, one bucket
    kept = SequenceBatches(seqs, 3, buckets=4, backend="numpy", seed=2)
    dropped = SequenceBatches(seqs, 3, buckets=4, backend="numpy", drop_last=True, seed=2)
    assert (len(kept), len(dropped)) == (3, 2)
    lengths = sorted(n for b in kept.epoch(0) for n in b["lengths"].tolist())
    assert lengths == [0, 0] + [4] * 7  # two empty filler rows, same shape as the rest
    assert all(b["lengths"].tolist() == [4, 4, 4] for b in dropped.epoch(0))


@pytest.mark.parametrize("backend", BACKENDS)
def test_windows_cover_the_stream_once_in_one_shape(backend):
    docs = [np.arange(1, 30), np.arange(40, 52)]
    stream = np.concatenate([docs[0], [0], docs[1]])  # 42 tokens, 41 targets
    ordered = SequenceBatches.windows(docs, 8, 2, separator=0, shuffle=False, backend=backend)
    assert ordered.shapes == ((2, 8),) and len(ordered) == math.ceil(math.ceil(41 / 8) / 2)
    rows = [r for b in ordered.epoch(0) for r in rows_of(b)]
    assert [len(i) for i, _ in rows] == [8, 8, 8, 8, 8, 1]
    assert sum((list(i) for i, _ in rows), []) == stream[:-1].tolist()
    assert sum((list(t) for _, t in rows), []) == stream[1:].tolist()
    shuffled = SequenceBatches.windows(docs, 8, 2, separator=0, seed=1, backend=backend)
    assert Counter(r for b in shuffled.epoch(3) for r in rows_of(b)) == Counter(rows)
    assert shuffled.num_tokens == 41
    single = SequenceBatches.windows(stream, 8, 2, shuffle=False, backend=backend)
    assert batches_equal(list(single.epoch(0)), list(ordered.epoch(0)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_prompt_lengths_count_only_completion_targets_even_across_splits(backend):
    rng = np.random.default_rng(5)
    seqs = [rng.integers(1, 50, size=n) for n in (2, 6, 9, 15, 23, 4)]
    prompts = [0, 3, 9, 12, 4, 1]  # 9 of 9: no completion; 12 of 15 splits inside the prompt
    data = SequenceBatches(seqs, 2, buckets=4, max_length=8, prompt_lengths=prompts, seed=1,
                           backend=backend)
    counted = []
    for batch in data.epoch(0):
        assert set(batch) == {"inputs", "targets", "lengths", "offsets"}
        assert batch["offsets"].dtype == np.int32
        assert (batch["offsets"] <= batch["lengths"]).all()
        for tgt, off, n in zip(batch["targets"], batch["offsets"], batch["lengths"]):
            counted.append(tuple(tgt[off:n].tolist()))
        assert tokens_in(batch).item() == int((batch["lengths"] - batch["offsets"]).sum())
    # the completion of each sequence: its tokens from index max(p, 1) on
    expected = Counter(t for s, p in zip(seqs, prompts) for t in s[max(p, 1):].tolist())
    assert Counter(t for row in counted for t in row) == expected
    assert data.num_tokens == sum(len(s) - max(p, 1) for s, p in zip(seqs, prompts))
    # the prompt-masked loss matches a float64 reference over the counted positions
    logits = rng.normal(size=(2, 8, 50)).astype(np.float32)
    batch = max(data.epoch(0), key=lambda b: int(tokens_in(b).item()))
    length = batch["inputs"].shape[1]
    total = count = 0.0
    for r in range(2):
        for t in range(batch["offsets"][r], batch["lengths"][r]):
            row = logits[r, t].astype(np.float64)
            total += math.log(np.exp(row).sum()) - row[batch["targets"][r, t]]
            count += 1
    got = masked_cross_entropy(mx.array(logits[:, :length]), mx.array(batch["targets"]),
                               mx.array(batch["lengths"]), mx.array(batch["offsets"]))
    assert got.item() == pytest.approx(total / count, rel=1e-6)
    with pytest.raises(ValueError, match=r"prompt_lengths\[1\] is 7, outside \[0, 6\]"):
        SequenceBatches(seqs, 2, prompt_lengths=[0, 7, 0, 0, 0, 0])
    with pytest.raises(ValueError, match=r"prompt_lengths must hold one int per sequence \(6\)"):
        SequenceBatches(seqs, 2, prompt_lengths=[0, 1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_token_masks_count_exactly_the_marked_targets_even_across_splits(backend):
    rng = np.random.default_rng(6)
    seqs = [rng.integers(1, 50, size=n) for n in (2, 6, 9, 15, 23, 1)]
    # tokens are marked by value (odd ones), so the marked multiset is known without batches
    marks = [s % 2 == 1 for s in seqs]
    data = SequenceBatches(seqs, 2, buckets=4, max_length=8, token_masks=marks, seed=1,
                           backend=backend)
    counted = []
    for batch in data.epoch(0):
        assert set(batch) == {"inputs", "targets", "lengths", "mask"}
        counted += batch["targets"][batch["mask"].astype(bool)].tolist()
        assert tokens_in(batch).item() == int(batch["mask"].sum())  # the mask, not lengths
        # padding is never marked
        width = batch["mask"].shape[1]
        assert not (batch["mask"] * (np.arange(width) >= batch["lengths"][:, None])).any()
    # each sequence's marked tokens from index 1 on (token 0 is never a target); the
    # one-token sequence is skipped
    expected = Counter(t for s in seqs[:-1] for t in s[1:].tolist() if t % 2 == 1)
    assert Counter(counted) == expected
    assert data.num_tokens == sum(expected.values())
    with pytest.raises(ValueError, match="prompt_lengths or token_masks"):
        SequenceBatches(seqs, 2, token_masks=marks, prompt_lengths=[0] * 6)
    with pytest.raises(ValueError, match=r"token_masks\[2\] must be a boolean array"):
        SequenceBatches(seqs, 2, token_masks=[*marks[:2], marks[2][:3], *marks[3:]])


# ---------------------------------------------------------------- order and resume
def batches_equal(a, b):
    return len(a) == len(b) and all(
        set(x) == set(y) and all(np.array_equal(x[k], y[k]) for k in x) for x, y in zip(a, b))


@pytest.mark.parametrize("backend", BACKENDS)
def test_order_is_a_function_of_seed_and_epoch(backend):
    seqs = random_sequences(n=50)
    one = SequenceBatches(seqs, 4, buckets=8, seed=7, backend=backend)
    two = SequenceBatches(seqs, 4, buckets=8, seed=7, backend=backend)
    other = SequenceBatches(seqs, 4, buckets=8, seed=8, backend=backend)
    assert batches_equal(list(one.epoch(2)), list(two.epoch(2)))
    assert batches_equal(list(one.epoch(2)), list(one.epoch(2)))  # replayable
    assert not batches_equal(list(one.epoch(0)), list(one.epoch(1)))
    assert not batches_equal(list(one.epoch(0)), list(other.epoch(0)))
    # a shuffle moves batches between buckets, not only rows within one
    shapes = [[b["inputs"].shape for b in one.epoch(e)] for e in range(3)]
    assert shapes[0] != shapes[1] or shapes[1] != shapes[2]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("start", [0, 1, 6, 14])
def test_start_mid_epoch_gives_exactly_the_remaining_batches(backend, start):
    seqs = random_sequences(n=50)
    data = SequenceBatches(seqs, 4, buckets=8, seed=3, backend=backend)
    full = list(data.epoch(5))
    per_bucket = Counter(math.ceil((len(s) - 1) / 8) for s in seqs if len(s) >= 2)
    assert len(full) == len(data) == sum(math.ceil(c / 4) for c in per_bucket.values()) == 14
    assert batches_equal(list(data.epoch(5, start=start)), full[start:])


def test_batch_stream_restores_a_position_and_runs_into_the_next_epoch():
    data = SequenceBatches(random_sequences(n=50), 4, buckets=8, seed=3, backend="numpy")
    stream = BatchStream(as_source(data), epoch=1, index=len(data) - 2)
    rest = [stream.next() for _ in range(3)]
    assert batches_equal(rest[:2], list(data.epoch(1))[-2:])
    assert batches_equal(rest[2:], list(data.epoch(2))[:1])
    assert (stream.epoch, stream.index) == (2, 1)


def test_a_source_that_honours_can_start_resumes_without_replaying():
    from trainers.data import _Source

    data = SequenceBatches(random_sequences(n=50), 4, buckets=8, seed=3, backend="numpy")
    calls = []

    def epoch(e, start=0):
        calls.append((e, start))
        return data.epoch(e, start)

    stream = BatchStream(_Source(epoch, len(data), can_start=data.can_start), epoch=1, index=5)
    assert batches_equal([stream.next()], list(data.epoch(1))[5:6])
    assert calls == [(1, 5)]  # opened at batch 5; batches 0-4 were never built


@pytest.mark.skipif(not HAVE_MLX_DATA, reason="mlx-data not installed")
def test_mlx_data_and_numpy_backends_give_the_same_batches():
    seqs = random_sequences(n=70, high=60)
    args = dict(buckets=16, max_length=32, seed=9)
    a = SequenceBatches(seqs, 4, backend="numpy", **args)
    b = SequenceBatches(seqs, 4, backend="mlx.data", prefetch=3, threads=2, **args)
    c = SequenceBatches(seqs, 4, backend="mlx.data", prefetch=0, **args)
    for epoch in (0, 1):
        ref = list(a.epoch(epoch))
        assert batches_equal(list(b.epoch(epoch)), ref)
        assert batches_equal(list(c.epoch(epoch, start=4)), ref[4:])


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=0), r"batch_size must be an int >= 1, got 0"),
    (dict(buckets=0), r"buckets must be an int >= 1, got 0"),
    (dict(buckets=(8, 4)), r"buckets must be strictly increasing, got \(8, 4\)"),
    (dict(buckets=()), r"buckets must be an int .* got \(\)"),
    (dict(buckets=(4, 8), max_length=16), r"max_length=16 disagrees with the largest bucket 8"),
    (dict(long="wrap"), r"long must be one of \('split', 'truncate'\), got 'wrap'"),
    (dict(backend="torch"), r"backend must be one of .* got 'torch'"),
    (dict(seed=-1), r"seed must be an int >= 0, got -1"),
    (dict(vocab_size=5), r"sequences hold token 7, outside \[0, 5\)"),
    (dict(batch_size=5, drop_last=True), r"no bucket holds 5 sequences"),
])
def test_bad_arguments_name_the_parameter_and_value(kwargs, match):
    args = dict(batch_size=2, buckets=8, backend="numpy")
    args.update(kwargs)
    batch_size = args.pop("batch_size")
    with pytest.raises(ValueError, match=match):
        SequenceBatches([np.arange(8), np.arange(3)], batch_size, **args)


def test_bad_sequences_are_named_by_index():
    with pytest.raises(ValueError, match=r"sequences\[1\] must be a 1-D array .* shape \(2, 2\)"):
        SequenceBatches([np.arange(3), np.zeros((2, 2), int)], 1)
    with pytest.raises(TypeError, match=r"sequences\[0\] must hold integer token ids, .*float"):
        SequenceBatches([np.array([0.5, 1.5])], 1)
    with pytest.raises(ValueError, match="no sequence of 2 or more tokens"):
        SequenceBatches([[1], []], 1)
    with pytest.raises(ValueError, match="negative token id -3"):
        SequenceBatches([[1, -3]], 1)
    data = SequenceBatches([np.arange(5)], 1, backend="numpy")
    with pytest.raises(ValueError, match=r"start must be <= 1 batches per epoch, got 2"):
        data.epoch(0, start=2)


def test_read_byte_documents_keeps_bytes_above_127(tmp_path):
    content = bytes(range(256)) + "héllo".encode()
    (tmp_path / "a.bin").write_bytes(content)
    (tmp_path / "b.txt").write_bytes(b"")
    docs = read_byte_documents([tmp_path / "a.bin", tmp_path / "b.txt"])
    assert docs[0].dtype == np.uint8 and docs[0].tolist() == list(content)
    assert docs[1].size == 0
    with pytest.raises(FileNotFoundError, match="no such file: .*missing"):
        read_byte_documents([tmp_path / "missing"])


# ---------------------------------------------------------------- losses
def reference_masked_nll(logits, targets, lengths):
    """Float64 mean negative log-likelihood over the real positions only, written plainly."""
    total, count = 0.0, 0
    logits = np.asarray(logits, dtype=np.float64)
    for b in range(logits.shape[0]):
        for t in range(int(lengths[b])):
            row = logits[b, t]
            top = row.max()
            log_z = top + math.log(np.exp(row - top).sum())
            total += log_z - row[targets[b, t]]
            count += 1
    return total / count, total, count


def test_masked_loss_equals_float64_reference_and_ignores_padding():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 5, 7)).astype(np.float32)
    targets = rng.integers(0, 7, size=(3, 5)).astype(np.int32)
    lengths = np.array([5, 2, 0], np.int32)
    mean, total, count = reference_masked_nll(logits, targets, lengths)
    got = masked_cross_entropy(mx.array(logits), mx.array(targets), mx.array(lengths))
    assert got.item() == pytest.approx(mean, rel=1e-6)
    got_sum = masked_cross_entropy(mx.array(logits), mx.array(targets), mx.array(lengths),
                                   reduction="sum")
    assert got_sum.item() == pytest.approx(total, rel=1e-6)
    # garbage (even inf/nan) at padded positions changes neither the loss nor the gradient
    dirty = logits.copy()
    dirty[1, 2:] = np.inf
    dirty[2] = np.nan
    assert masked_cross_entropy(mx.array(dirty), mx.array(targets),
                                mx.array(lengths)).item() == pytest.approx(mean, rel=1e-6)
    grad = mx.grad(lambda z: masked_cross_entropy(z, mx.array(targets), mx.array(lengths)))(
        mx.array(logits))
    grad = np.array(grad)
    assert (grad[1, 2:] == 0).all() and (grad[2] == 0).all()
    assert np.abs(grad[0]).sum() > 0
    # the mask form agrees with the lengths form
    mask = np.arange(5)[None, :] < lengths[:, None]
    assert masked_cross_entropy(mx.array(logits), mx.array(targets),
                                mask=mx.array(mask)).item() == pytest.approx(mean, rel=1e-6)
    assert length_mask(mx.array(lengths), 5).tolist() == mask.tolist()


def test_masked_loss_of_bfloat16_logits_is_reduced_in_float32():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 4, 9)).astype(np.float32)
    rounded = np.array(mx.array(logits).astype(mx.bfloat16).astype(mx.float32))
    targets = rng.integers(0, 9, size=(2, 4)).astype(np.int32)
    lengths = np.array([4, 3])
    got = masked_cross_entropy(mx.array(logits).astype(mx.bfloat16), mx.array(targets),
                               mx.array(lengths))
    assert got.dtype == mx.float32
    assert got.item() == pytest.approx(reference_masked_nll(rounded, targets, lengths)[0],
                                       rel=1e-6)


def test_loss_argument_errors():
    z, t = mx.zeros((2, 3, 4)), mx.zeros((2, 3), mx.int32)
    with pytest.raises(ValueError, match="exactly one of lengths"):
        masked_cross_entropy(z, t)
    with pytest.raises(ValueError, match=r"lengths shape \(3,\) must be \[B\]"):
        masked_cross_entropy(z, t, mx.array([1, 2, 3]))
    with pytest.raises(ValueError, match=r"logits must be \[B, L, V\]"):
        masked_cross_entropy(mx.zeros((2, 3)), t, mx.array([1, 2]))
    with pytest.raises(ValueError, match="reduction must be 'mean' or 'sum', got 'none'"):
        masked_cross_entropy(z, t, mx.array([1, 2]), reduction="none")
    with pytest.raises(KeyError, match="neither 'lengths' nor 'mask'"):
        tokens_in({"inputs": t})


def test_tokens_in_counts_real_targets_inside_a_compiled_function():
    data = SequenceBatches(random_sequences(n=30), 4, buckets=8, backend="numpy")
    counted = mx.compile(lambda lengths: tokens_in({"lengths": lengths}))
    total = 0
    for batch in data.epoch(0):
        n = tokens_in(batch)
        assert n.dtype == mx.int32
        assert n.item() == int(np.sum(batch["lengths"])) == counted(mx.array(batch["lengths"]))
        total += n.item()
    assert total == data.num_tokens
    assert tokens_in({"mask": np.array([[1, 0], [1, 1]])}).item() == 3


class Bigram(nn.Module):
    """A next-token model that sees one position at a time (causal by construction)."""

    def __init__(self, vocab: int, dim: int = 16):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.out = nn.Linear(dim, vocab)

    def __call__(self, x):
        return self.out(self.embed(x))


def test_evaluate_lm_weighs_every_real_token_equally():
    mx.random.seed(0)
    model = Bigram(11)
    data = SequenceBatches(random_sequences(n=25, vocab=11, high=30), 3, buckets=8,
                           backend="numpy", shuffle=False)
    total = count = 0
    for batch in data.epoch(0):
        logits = np.array(model(mx.array(batch["inputs"])))
        _, t, c = reference_masked_nll(logits, batch["targets"], batch["lengths"])
        total, count = total + t, count + c
    out = evaluate_lm(model, data, byte_level=True)
    assert out["tokens"] == count == data.num_tokens
    assert out["loss"] == pytest.approx(total / count, rel=1e-5)
    assert out["bits_per_byte"] == pytest.approx(total / count / math.log(2), rel=1e-5)
    batch = next(iter(data))
    args = [mx.array(batch[k]) for k in ("inputs", "targets", "lengths")]
    assert bits_per_byte(model, *args).item() == pytest.approx(
        causal_lm_loss(model, *args).item() / math.log(2), rel=1e-6)


class TinyCausalAttention(nn.Module):
    """One causal self-attention layer: each position sees itself and the positions left of it."""

    def __init__(self, vocab: int, dim: int = 16):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.attention = nn.MultiHeadAttention(dim, 2)
        self.out = nn.Linear(dim, vocab)

    def __call__(self, x):
        h = self.embed(x)
        mask = nn.MultiHeadAttention.create_additive_causal_mask(x.shape[1])
        return self.out(h + self.attention(h, h, h, mask))


def test_padding_content_changes_nothing_for_a_causal_model():
    mx.random.seed(1)
    model = TinyCausalAttention(20)
    seqs = random_sequences(n=12, vocab=20, high=15, seed=2)
    losses = []
    for pad_id in (0, 7, 19):
        data = SequenceBatches(seqs, 4, buckets=8, seed=0, pad_id=pad_id, backend="numpy")
        losses.append([causal_lm_loss(model, *(mx.array(b[k]) for k in
                                              ("inputs", "targets", "lengths"))).item()
                       for b in data.epoch(0)])
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-6)
    np.testing.assert_allclose(losses[2], losses[0], rtol=1e-6)
    # and the padded loss is the float64 loss of each sequence run on its own, unpadded
    data = SequenceBatches(seqs, 4, buckets=8, seed=0, backend="numpy")
    for batch, got in zip(data.epoch(0), losses[0]):
        total = count = 0
        for inp, tgt, n in zip(batch["inputs"], batch["targets"], batch["lengths"]):
            if n:
                logits = np.array(model(mx.array(inp[None, :n])))
                _, t, c = reference_masked_nll(logits, tgt[None, :n], [n])
                total, count = total + t, count + c
        assert got == pytest.approx(total / count, rel=1e-5)


# ---------------------------------------------------------------- with the trainer
def repeating_sequences(n=48, period=5, vocab=8, seed=0):
    """Sequences of a repeating pattern with random phase and length: a bigram can learn it."""
    rng = np.random.default_rng(seed)
    pattern = np.array([3, 1, 4, 1 + 5, 2][:period]) % vocab
    out = []
    for _ in range(n):
        phase, length = int(rng.integers(period)), int(rng.integers(2, 30))
        out.append(np.resize(np.roll(pattern, -phase), length))
    return out


def test_trainer_learns_a_repeating_sequence_and_traces_once_per_shape(tmp_path):
    # pattern 3 1 4 6 2: the token after 1 is ambiguous (4 or 2), so the best loss is
    # 2/5 * ln 2 per token, not zero.
    data = SequenceBatches(repeating_sequences(), 4, buckets=8, max_length=32, seed=0)
    traces = []

    def loss_fn(model, inputs, targets, lengths):
        traces.append(inputs.shape)  # runs once per trace under mx.compile
        return causal_lm_loss(model, inputs, targets, lengths)

    mx.random.seed(0)
    model = Bigram(8)
    trainer = Trainer(model, loss_fn, optim.Adam(learning_rate=0.05), data,
                      run_dir=tmp_path / "run", max_steps=3 * len(data), log_every=10,
                      report_every=0, compile=True)
    trainer.fit()
    losses = [r["loss"] for r in train_rows(str(tmp_path / "run" / "log.jsonl"))]
    assert len(losses) == 3 * len(data)
    assert losses[0] > math.log(8) - 0.2  # starts near uniform
    floor = 2 / 5 * math.log(2)
    assert np.mean(losses[-5:]) < floor + 0.15
    assert len(traces) == len(data.shapes) == len(set(traces)) == 4
    assert set(traces) == set(data.shapes)
    out = evaluate_lm(model, data)
    assert out["loss"] < floor + 0.15


def test_trainer_resumes_sequence_batches_exactly(tmp_path):
    def run(run_dir, steps, resume=False):
        mx.random.seed(0)
        model = Bigram(8)
        data = SequenceBatches(repeating_sequences(seed=1), 4, buckets=8, max_length=32,
                               seed=2)
        trainer = Trainer(model, causal_lm_loss, optim.Adam(learning_rate=0.02), data,
                          run_dir=run_dir, max_steps=steps, checkpoint_every=7,
                          report_every=0, log_every=5)
        assert len(data) == 14
        trainer.fit(resume=resume, allow_changes=("max_steps",) if resume else ())
        return flat_weights(model)

    straight = run(tmp_path / "a", 20)
    run(tmp_path / "b", 7)  # stops mid-epoch (14 batches per epoch)
    assert [s for s, _ in list_checkpoints(tmp_path / "b" / "checkpoints")] == [7]
    resumed = run(tmp_path / "b", 20, resume=True)
    for key, value in straight.items():
        np.testing.assert_array_equal(resumed[key], value, err_msg=key)
    logs = [(tmp_path / d / "log.jsonl").read_bytes() for d in ("a", "b")]
    assert os.path.getsize(tmp_path / "a" / "log.jsonl") > 0 and logs[0] == logs[1]


def test_the_trainer_resumes_sequence_batches_without_replay():
    from trainers.data import BatchStream, as_source

    data = SequenceBatches(random_sequences(n=40), 4, buckets=8, backend="numpy", seed=3)
    source = as_source(data)
    assert source.can_start  # SequenceBatches declares epoch(e, start=i)
    calls = []
    original = data.epoch
    data.epoch = lambda e, start=0: calls.append((e, start)) or original(e, start)
    stream = BatchStream(as_source(data), epoch=1, index=3)
    assert calls == [(1, 3)]  # opened at the saved batch, nothing replayed
    assert batches_equal([stream.next()], [list(original(1))[3]])
