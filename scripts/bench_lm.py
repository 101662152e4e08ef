#!/usr/bin/env python
"""Benchmark train_lm.py's loop: tokens per second against a hand-written loop and mlx-lm's.

    python scripts/bench_lm.py                      # the default model, prints a Markdown table
    python scripts/bench_lm.py --preset tiny --steps 20 --repeats 1   # a quick look
    python scripts/bench_lm.py --json bench.json    # also write the numbers

One run measures, side by side, on the same mlx-lm model (llama, ``--preset``, random weights)
and the same batches of ``--batch-size`` x ``--seq-len`` tokens of the standard library:

* pre-training (every weight trained, byte tokens): the trainer exactly as ``train_lm.py``
  drives it (per-step rows to ``log.jsonl``/``log.csv``, token counts, AdamW with a
  warmup-cosine rate) against a hand-written compiled loop (``mx.compile`` capturing model,
  optimizer and random state; ``mx.eval(state, loss)`` per step) with the same optimizer;
* LoRA fine-tuning (rank 8 on every block, the model saved as an mlx-lm model directory with a
  tokenizer trained here): the trainer and the hand-written loop against mlx-lm's own trainer,
  ``mlx_lm.tuner.trainer.train``, fed the same windows through its own batching and loss.

Each contender runs ``--warmup`` steps (compiling) and then ``--steps`` timed steps; the
contenders alternate ``--repeats`` times and each keeps its median. mlx-lm's figure is its own
``tokens_per_second`` report, averaged over the timed report intervals. This is a benchmark,
not a test: nothing here asserts.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from functools import partial

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from trainers import Trainer, causal_lm_loss, tokens_in
from trainers.cli.args import script_parser
from trainers.experiments.config import build_optimizer
from trainers.experiments.lm_schedules import optimizer_section
from trainers.lm import (
    PRESETS,
    apply_lora,
    build_model,
    corpus_batches,
    load_model_dir,
    make_local_model_dir,
    model_config,
    stdlib_corpus,
)


def parse_args(argv):
    p = script_parser(__doc__)
    p.add_argument("--preset", default="small", choices=list(PRESETS))
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--warmup", type=int, default=10, help="untimed steps per contender")
    p.add_argument("--steps", type=int, default=30, help="timed steps per contender")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--lora-rank", type=int, default=8)
    p.add_argument("--skip-mlx-lm", action="store_true", help="leave mlx-lm's trainer out")
    p.add_argument("--json", help="also write the results to this file")
    return p.parse_args(argv)


class Clock:
    """A trainer callback timing the updates ``first .. last - 1`` (rows arrive per block,
    after the host waited for the block's updates)."""

    def __init__(self, first: int, last: int):
        self.first, self.last = first, last
        self.start = self.end = None

    def __call__(self, event: dict) -> None:
        if event.get("event") != "train":
            return
        if event["step"] == self.first - 1:
            self.start = time.perf_counter()
        elif event["step"] == self.last - 1:
            self.end = time.perf_counter()


def optimizer(total: int, peak: float):
    return build_optimizer(optimizer_section("warmup_cosine", peak, total))


def run_trainer(model, data, total: int, warmup: int, peak: float) -> float:
    """Tokens per second of the trainer as train_lm.py sets it up (minus evaluations)."""
    tokens = data.batch_size * data.shapes[0][1]
    clock = Clock(warmup, total)
    with tempfile.TemporaryDirectory() as run_dir:
        Trainer(model, causal_lm_loss, optimizer(total, peak), data, run_dir=run_dir,
                max_steps=total, log_every=warmup, report_every=0, checkpoint_every=0,
                tokens=tokens_in, callbacks=[clock], seed=0).fit()
    return tokens * (total - warmup) / (clock.end - clock.start)


def run_hand_loop(model, data, total: int, warmup: int, peak: float) -> float:
    """Tokens per second of a hand-written compiled loop with the same optimizer."""
    opt = optimizer(total, peak)
    opt.init(model.trainable_parameters())
    state = [model.state, opt.state, mx.random.state]
    loss_and_grad = nn.value_and_grad(model, causal_lm_loss)

    @partial(mx.compile, inputs=state, outputs=state)
    def step(inputs, targets, lengths):
        loss, grads = loss_and_grad(model, inputs, targets, lengths)
        opt.update(model, grads)
        return loss

    model.train()
    batches = data.epoch(0)
    for i in range(total):
        if i == warmup:
            start = time.perf_counter()
        batch = next(batches)
        loss = step(mx.array(batch["inputs"]), mx.array(batch["targets"]),
                    mx.array(batch["lengths"]))
        mx.eval(state, loss)
    tokens = data.batch_size * data.shapes[0][1]
    return tokens * (total - warmup) / (time.perf_counter() - start)


def run_mlx_lm(model, windows: list[np.ndarray], batch_size: int, total: int, warmup: int,
               peak: float) -> float:
    """Tokens per second reported by mlx-lm's own trainer over the timed report intervals."""
    from mlx_lm.tuner.callbacks import TrainingCallback
    from mlx_lm.tuner.trainer import TrainingArgs, train

    class Reports(TrainingCallback):
        def __init__(self):
            self.rows = []

        def on_train_loss_report(self, info):
            self.rows.append(info)

    reports = Reports()
    dataset = [(w.tolist(), 0) for w in windows]
    with tempfile.TemporaryDirectory() as folder:
        args = TrainingArgs(batch_size=batch_size, iters=total, steps_per_report=warmup,
                            steps_per_eval=10 * total, steps_per_save=10 * total,
                            max_seq_length=len(windows[0]),
                            adapter_file=os.path.join(folder, "adapters.safetensors"))
        train(model, optimizer(total, peak), dataset, None, args=args,
              training_callback=reports)
    timed = [r["tokens_per_second"] for r in reports.rows if r["iteration"] > warmup]
    return float(np.mean(timed))


def main(argv=None) -> int:
    args = parse_args(argv)
    total = args.warmup + args.steps
    if args.steps % args.warmup:
        print("error: --steps must be a multiple of --warmup (the trainer's log blocks and "
              "mlx-lm's report intervals are --warmup steps)", file=sys.stderr)
        return 2
    corpus = stdlib_corpus()
    data = corpus_batches(corpus.train, args.seq_len, args.batch_size, seed=0)
    # LoRA: the same windows as mlx-lm examples of seq_len + 1 tokens
    first = [b for _, b in zip(range(total + 1), data.epoch(0))]
    windows = [np.append(row, t[-1]) for b in first for row, t in zip(b["inputs"], b["targets"])]

    def fresh_model():
        mx.random.seed(0)
        return build_model(model_config("llama", args.preset))

    folder = tempfile.mkdtemp()
    texts = [bytes(d).decode("utf-8") for d in corpus.valid[:4]]
    model_dir = make_local_model_dir(folder, texts, preset=args.preset, vocab_size=384)

    def lora_model():
        model, _, _ = load_model_dir(model_dir)
        mx.random.seed(0)
        apply_lora(model, args.lora_rank)
        return model

    contenders = {
        ("pre-training", "train_lm.py loop (trainers.Trainer)"):
            lambda: run_trainer(fresh_model(), data, total, args.warmup, 1e-3),
        ("pre-training", "hand-written compiled loop"):
            lambda: run_hand_loop(fresh_model(), data, total, args.warmup, 1e-3),
        ("LoRA", "train_lm.py loop (trainers.Trainer)"):
            lambda: run_trainer(lora_model(), data, total, args.warmup, 1e-3),
        ("LoRA", "hand-written compiled loop"):
            lambda: run_hand_loop(lora_model(), data, total, args.warmup, 1e-3),
    }
    if not args.skip_mlx_lm:
        contenders[("LoRA", "mlx_lm.tuner.trainer.train")] = lambda: run_mlx_lm(
            lora_model(), windows, args.batch_size, total, args.warmup, 1e-3)
    results = {key: [] for key in contenders}
    for _ in range(args.repeats):
        for key, run in contenders.items():
            results[key].append(run())
            print(f"  {key[0]:12s} {key[1]:38s} {results[key][-1]:9.0f} tokens/s",
                  file=sys.stderr)
    median = {key: statistics.median(v) for key, v in results.items()}
    print(f"\nllama '{args.preset}', batch {args.batch_size} x {args.seq_len}, "
          f"{args.steps} timed steps after {args.warmup}, median of {args.repeats}, "
          f"{platform.machine()} {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}\n")
    print("| workload | loop | tokens/s | ratio |")
    print("|---|---|---:|---:|")
    for (workload, loop), value in median.items():
        base = median[(workload, "hand-written compiled loop")]
        print(f"| {workload} | {loop} | {value:.0f} | {value / base:.3f}x |")
    if not args.skip_mlx_lm:
        ours = median[("LoRA", "train_lm.py loop (trainers.Trainer)")]
        theirs = median[("LoRA", "mlx_lm.tuner.trainer.train")]
        print(f"\ntrain_lm.py / mlx-lm's LoRA trainer: {ours / theirs:.3f}x")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"settings": vars(args), "load_average": os.getloadavg()[0],
                       "tokens_per_s": [{"workload": w, "loop": n, "runs": v,
                                         "median": median[(w, n)]}
                                        for (w, n), v in results.items()]}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
