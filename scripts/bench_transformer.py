"""Benchmark the trainer on a small transformer: overhead, bf16, gradient checkpointing, EMA.

    mlx-fastblas python scripts/bench_transformer.py            # prints a Markdown table
    mlx-fastblas python scripts/bench_transformer.py --rounds 5 --steps 60

One process, one model shape (a byte-level causal transformer: 2 blocks, d=64, 4 heads,
batch 8 x 128 tokens, AdamW with a warmup-cosine rate), one batch order. Contenders:

* **user loop**: what a user writes by hand: the same compiled step
  (``trainers.step.make_train_step``), each batch copied from NumPy with ``mx.array``, then
  ``mx.eval(state, loss)`` every step;
* **trainer**: ``Trainer`` with its defaults (per-step logs to JSONL + CSV, no checkpoints);
* **trainer bf16**: ``precision="bfloat16"``;
* **trainer + grad checkpoint**: ``grad_checkpoint=True`` (time, and peak memory);
* **trainer + EMA**: ``ema=0.999``.

Rounds interleave the contenders and rotate their order. A contender's speed is its steady
state: tokens per second from step ``--warmup`` to the end (the first steps compile). Ratios are
medians of the per-round ratios, so a drift in the machine's load cancels. Peak memory is
``mx.get_peak_memory()`` over a contender's run, reset before it. This is a benchmark, not a
test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np

from mlx_schedules import cosine_decay, warmup
from trainers import SequenceBatches, Trainer, causal_lm_loss, tokens_in
from trainers.step import make_train_step

BATCH, LENGTH, DIMS, BLOCKS, HEADS = 8, 128, 64, 2, 4


class ByteLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(256, DIMS)
        self.layers = nn.TransformerEncoder(BLOCKS, DIMS, HEADS).layers
        self.norm = nn.RMSNorm(DIMS)

    def __call__(self, tokens):
        h = self.embed(tokens)
        mask = nn.MultiHeadAttention.create_additive_causal_mask(tokens.shape[1]).astype(h.dtype)
        for layer in self.layers:
            h = layer(h, mask)
        return self.embed.as_linear(self.norm(h))


def setup(steps: int):
    mx.random.seed(0)
    model = ByteLM()
    opt = optim.AdamW(learning_rate=warmup(cosine_decay(1e-3, steps), 10), weight_decay=0.01)
    stream = np.random.default_rng(0).integers(0, 256, BATCH * LENGTH * 512)  # 512 batches
    data = SequenceBatches.windows(stream, LENGTH, BATCH, seed=0, backend="numpy")
    return model, opt, data


def user_loop(steps: int, warm: int) -> tuple[float, float]:
    """The hand-written loop; returns (tokens/s in steady state, peak memory in MB)."""
    model, opt, data = setup(steps)
    opt.init(model.trainable_parameters())
    step = make_train_step(model, causal_lm_loss, opt, grad_norm=False)
    state = [model.state, opt.state, mx.random.state]
    batches = iter(data.epoch(0))
    mx.reset_peak_memory()
    tokens, start = 0, None
    for i in range(steps):
        if i == warm:
            start = time.perf_counter()
        host = next(batches)
        batch = {k: mx.array(v) for k, v in host.items()}  # the host->device copy
        loss, _ = step(batch)
        mx.eval(state, loss)
        if i >= warm:
            tokens += int(host["lengths"].sum())
    return tokens / (time.perf_counter() - start), mx.get_peak_memory() / 2**20


def trainer_run(steps: int, warm: int, **options) -> tuple[float, float]:
    """The trainer with ``options``; returns (tokens/s in steady state, peak memory in MB)."""
    model, opt, data = setup(steps)
    marks: dict[int, float] = {}

    def clock(event: dict) -> None:  # rows arrive per block: blocks end at warm-1 and steps-1
        if event["event"] == "train" and event["step"] in (warm - 1, steps - 1):
            marks[event["step"]] = time.perf_counter()

    with tempfile.TemporaryDirectory() as run_dir:
        mx.reset_peak_memory()
        trainer = Trainer(model, causal_lm_loss, opt, data, run_dir=run_dir, max_steps=steps,
                          checkpoint_every=0, report_every=0, log_every=warm, tokens=tokens_in,
                          callbacks=[clock], **options)
        trainer.fit()
        peak = mx.get_peak_memory() / 2**20
        rows = [r for r in _rows(run_dir) if r["step"] >= warm]
    tokens = sum(r["tokens"] for r in rows)
    return tokens / (marks[steps - 1] - marks[warm - 1]), peak


def _rows(run_dir: str) -> list[dict]:
    import json
    import os

    with open(os.path.join(run_dir, "log.jsonl")) as f:
        return [r for r in map(json.loads, f) if r["kind"] == "train"]


CONTENDERS = {
    "user loop": lambda n, w: user_loop(n, w),
    "trainer": lambda n, w: trainer_run(n, w),
    "trainer bf16": lambda n, w: trainer_run(n, w, precision="bfloat16"),
    "trainer + grad checkpoint": lambda n, w: trainer_run(n, w, grad_checkpoint=True),
    "trainer + EMA": lambda n, w: trainer_run(n, w, ema=0.999),
}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=10)
    args = p.parse_args(argv)
    if args.steps % args.warmup:
        p.error("--steps must be a multiple of --warmup (blocks of rows end there)")
    names = list(CONTENDERS)
    speed = {n: [] for n in names}
    memory = {n: [] for n in names}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            tokens_per_s, peak = CONTENDERS[name](args.steps, args.warmup)
            speed[name].append(tokens_per_s)
            memory[name].append(peak)
        print(f"round {r + 1}: " + ", ".join(f"{n} {speed[n][-1]:.0f} tok/s" for n in names),
              flush=True)

    def ratio(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(speed[a], speed[b], strict=True))

    print(f"\n{BLOCKS}-block d={DIMS} transformer, batch {BATCH}x{LENGTH}, "
          f"{args.rounds} rounds of {args.steps} steps ({args.warmup} warm-up)\n")
    print("| contender | tokens/s (median) | peak memory MB |\n|---|---|---|")
    for name in names:
        print(f"| {name} | {statistics.median(speed[name]):.0f} | "
              f"{statistics.median(memory[name]):.1f} |")
    print("\n| ratio (median of per-round ratios) | value |\n|---|---|")
    print(f"| trainer / user loop | {ratio('trainer', 'user loop'):.3f} |")
    print(f"| bf16 / float32 (trainer) | {ratio('trainer bf16', 'trainer'):.3f} |")
    print(f"| grad checkpoint / none: speed | "
          f"{ratio('trainer + grad checkpoint', 'trainer'):.3f} |")
    saving = 1 - statistics.median(memory["trainer + grad checkpoint"]) / statistics.median(
        memory["trainer"])
    print(f"| grad checkpoint / none: peak memory | {100 * saving:.0f} % less |")
    print(f"| EMA / none | {ratio('trainer + EMA', 'trainer'):.3f} |")


if __name__ == "__main__":
    main()
