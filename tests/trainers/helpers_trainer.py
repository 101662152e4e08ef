"""Shared pieces of the trainer tests: tiny models, data, and float64 references."""

from __future__ import annotations

import json
import math
import os

import mlx.core as mx
import mlx.nn as nn
import numpy as np


def regression_data(n: int = 64, d_in: int = 4, d_out: int = 2, seed: int = 0):
    """A noisy linear regression problem as float32 numpy arrays (x, y)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d_in)).astype(np.float32)
    w = rng.normal(size=(d_in, d_out)).astype(np.float32)
    y = (x @ w + 0.1 * rng.normal(size=(n, d_out))).astype(np.float32)
    return x, y


def classification_data(n: int = 128, d_in: int = 6, seed: int = 0):
    """Two classes split by the sign of the first feature."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d_in)).astype(np.float32)
    y = (x[:, 0] + 0.3 * x[:, 1] > 0).astype(np.int32)
    return x, y


class MLP(nn.Module):
    """A two-layer perceptron with optional dropout (to exercise the random state)."""

    def __init__(self, d_in: int = 6, hidden: int = 16, d_out: int = 2, dropout: float = 0.0):
        super().__init__()
        self.l1 = nn.Linear(d_in, hidden)
        self.drop = nn.Dropout(dropout) if dropout else None
        self.l2 = nn.Linear(hidden, d_out)

    def __call__(self, x):
        h = nn.relu(self.l1(x))
        if self.drop is not None:
            h = self.drop(h)
        return self.l2(h)


def mse(model, x, y):
    return nn.losses.mse_loss(model(x), y, reduction="mean")


def xent(model, x, y):
    return nn.losses.cross_entropy(model(x), y, reduction="mean")


def linear_model(d_in: int, d_out: int, seed: int = 0) -> nn.Linear:
    mx.random.seed(seed)
    return nn.Linear(d_in, d_out)


def sgd_linear_reference(weight, bias, batches, lrs, momenta=None, clip_norm=None):
    """Float64 SGD (MLX semantics: v = m v + g; p -= lr v) on y = x W^T + b with mean MSE.

    Returns the final (weight, bias) and the per-step losses and gradient norms.
    """
    w, b = np.array(weight, np.float64), np.array(bias, np.float64)
    vw, vb = np.zeros_like(w), np.zeros_like(b)
    losses, norms = [], []
    for t, (x, y) in enumerate(batches):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        err = x @ w.T + b - y
        losses.append(float(np.mean(err**2)))
        gw = 2.0 / err.size * err.T @ x
        gb = 2.0 / err.size * err.sum(axis=0)
        norm = math.sqrt(float(np.sum(gw**2) + np.sum(gb**2)))
        norms.append(norm)
        if clip_norm is not None:
            scale = min(clip_norm / (norm + 1e-6), 1.0)
            gw, gb = gw * scale, gb * scale
        m = 0.0 if momenta is None else momenta[t]
        if momenta is None:
            w, b = w - lrs[t] * gw, b - lrs[t] * gb
        else:
            vw, vb = m * vw + gw, m * vb + gb
            w, b = w - lrs[t] * vw, b - lrs[t] * vb
    return w, b, losses, norms


def one_cycle_reference(t, max_lr, total, pct_start=0.3, div=25.0, final_div=1e4,
                        base_m=0.85, max_m=0.95):
    """PyTorch OneCycleLR (cos anneal, two phases): (learning rate, momentum) at step t."""
    initial, low = max_lr / div, max_lr / div / final_div
    end1 = float(pct_start * total) - 1
    end2 = total - 1

    def cos(start, end, pct):
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)

    if t <= end1:
        pct = t / end1
        return cos(initial, max_lr, pct), cos(max_m, base_m, pct)
    pct = (t - end1) / (end2 - end1)
    return cos(max_lr, low, pct), cos(base_m, max_m, pct)


def read_jsonl(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def train_rows(path: str) -> list[dict]:
    return [r for r in read_jsonl(path) if r["kind"] == "train"]


def flat_weights(model: nn.Module) -> dict[str, np.ndarray]:
    from mlx.utils import tree_flatten

    return {k: np.array(v) for k, v in tree_flatten(model.parameters())}


def run_files(run_dir, *, hidden: bool = True) -> dict[str, bytes]:
    """Every file a run directory holds, by relative path, for byte-for-byte comparisons.

    ``system.jsonl`` (wall times and memory, different on every run by nature) is left out;
    ``hidden=False`` also leaves out names starting with '.' (the lock file).
    """
    out = {}
    for root, dirs, names in os.walk(run_dir):
        if not hidden:
            dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if name == "system.jsonl" or (not hidden and name.startswith(".")):
                continue
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, run_dir)] = f.read()
    return out


class TinyLM(nn.Module):
    """A small causal transformer (pre-norm blocks in a ``layers`` list, tied embeddings)."""

    def __init__(self, vocab: int = 32, dim: int = 16, blocks: int = 2, heads: int = 2):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.layers = [TinyBlock(dim, heads) for _ in range(blocks)]
        self.norm = nn.RMSNorm(dim)

    def __call__(self, tokens):
        h = self.embed(tokens)
        mask = nn.MultiHeadAttention.create_additive_causal_mask(tokens.shape[1]).astype(h.dtype)
        for block in self.layers:
            h = block(h, mask)
        return self.embed.as_linear(self.norm(h))


class TinyBlock(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1, self.norm2 = nn.RMSNorm(dim), nn.RMSNorm(dim)
        self.attention = nn.MultiHeadAttention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def __call__(self, h, mask):
        x = self.norm1(h)
        h = h + self.attention(x, x, x, mask)
        return h + self.mlp(self.norm2(h))


def token_sequences(n: int = 48, vocab: int = 32, seed: int = 0) -> list:
    """Sequences of varying length (3-40 tokens) with a learnable pattern (t+1 follows t)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        start, length = int(rng.integers(vocab)), int(rng.integers(3, 41))
        out.append((start + np.arange(length)) % vocab)
    return out
