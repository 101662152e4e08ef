#!/usr/bin/env python
"""A cost table by model size: step time, throughput, memory, checkpoints and evaluation.

    python scripts/bench_cost.py                      # MLP + LM presets tiny..large, 8 rounds
    python scripts/bench_cost.py --tiny               # a few seconds: the smallest settings
    python scripts/bench_cost.py --presets tiny small --rounds 8 --json cost.json --markdown cost.md

For the README's MLP (784-256-256-10, batch 128, SGD with a one-cycle rate and momentum) and
mlx-lm llama models of the presets of ``trainers.lm`` (random weights, byte tokens of the
standard library, batch ``--batch-size`` x ``--seq-len``, AdamW with a warmup-cosine rate),
one run measures, per model:

* **step time**: the trainer with its defaults (per-step rows to ``log.jsonl`` and ``log.csv``,
  token counts for the LMs; clocked from ``system.jsonl``, no callback) against a hand-written
  loop around the same kind of compiled step (``mx.array`` copies of each NumPy batch,
  ``mx.eval(state, loss)`` every step); ``--warmup`` steps compile, ``--steps`` are timed;
  the two alternate for ``--rounds`` rounds, and the ratio is the median of the per-round
  ratios. **The trainer's own share** of a step is ``1 - hand / trainer`` (negative when the
  trainer is faster, as it can be: its batches are gathered on the device);
* **throughput**: tokens (MLP: samples) per second of the trainer;
* **peak memory** of a trainer run (``mx.get_peak_memory``);
* **checkpoint**: ``save_checkpoint`` and the verified ``load_checkpoint`` of the trained
  model and optimizer state, with their size;
* **one evaluation**: ``Trainer.evaluate`` over ``--eval-batches`` batches (compiled already).

Then the growth, to extrapolate to other models: checkpoint seconds per GB (a least-squares
line through the models: fixed seconds + seconds per GB, for save and for load), and how the
step time grows with the parameters (the exponent of a power law fitted to the LM presets;
1 means linear), with each model's microseconds per token per million parameters.

Printed: a Markdown table and the JSON of every measurement (last line). This is a benchmark,
not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from functools import partial

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from trainers import ArrayBatches, Trainer
from trainers.checkpoint import load_checkpoint, save_checkpoint
from trainers.digests import default_algorithm

LM_PRESETS = ("tiny", "small", "medium", "large")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="*", default=list(LM_PRESETS), choices=LM_PRESETS,
                   help="LM presets to measure (none: the MLP only)")
    p.add_argument("--no-mlp", action="store_true", help="leave the MLP out")
    p.add_argument("--batch-size", type=int, default=16, help="LM batch size")
    p.add_argument("--seq-len", type=int, default=128, help="LM positions per sequence")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps (compiling)")
    p.add_argument("--steps", type=int, default=40,
                   help="timed steps per contender and round (a multiple of --warmup)")
    p.add_argument("--mlp-steps", type=int, default=400, help="timed MLP steps (idem)")
    p.add_argument("--rounds", type=int, default=8, help="interleaved rounds (median ratio)")
    p.add_argument("--eval-batches", type=int, default=8, help="batches of one evaluation")
    p.add_argument("--tiny", action="store_true",
                   help="the smallest settings (a few seconds; for checking the script runs)")
    p.add_argument("--json", default=None, help="also write the results to this file")
    p.add_argument("--markdown", default=None, help="also write the table to this file")
    args = p.parse_args(argv)
    if args.tiny:
        args.presets, args.batch_size, args.seq_len = ["tiny"], 2, 16
        args.warmup, args.steps, args.mlp_steps, args.rounds, args.eval_batches = 2, 4, 4, 1, 2
    for flag in ("batch_size", "seq_len", "warmup", "steps", "mlp_steps", "rounds",
                 "eval_batches"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be at least 1")
    for flag in ("steps", "mlp_steps"):
        if getattr(args, flag) % args.warmup:
            p.error(f"--{flag.replace('_', '-')} must be a multiple of --warmup (the trainer "
                    "is clocked at its log blocks of --warmup steps)")
    return args


# ------------------------------------------------------------------ the models
class Workload:
    """One model: how to build it, its optimizer, its data, its loss, and a hand loop."""

    def __init__(self, name: str, build, optimizer, train_data, eval_data, loss, *,
                 tokens_per_step: int, unit: str, count_tokens=None):
        self.name, self.build, self.optimizer = name, build, optimizer
        self.train_data, self.eval_data, self.loss = train_data, eval_data, loss
        self.tokens_per_step, self.unit, self.count_tokens = tokens_per_step, unit, count_tokens


def _bench_trainer():
    """``scripts/bench_trainer.py``, whose MLP workload this table shares, from its file."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_trainer.py")
    spec = importlib.util.spec_from_file_location("bench_trainer", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mlp_workload(args: argparse.Namespace) -> Workload:
    bt = _bench_trainer()

    x, y = bt.data()

    def build():
        return bt.build()[0]

    def optimizer(total):
        _, one_cycle, extras = bt.build()
        return bt.make_optimizer(total, one_cycle, extras)

    def numpy_epoch(epoch):
        order = np.random.default_rng((0, epoch)).permutation(len(x))
        for lo in range(0, len(x) - bt.BATCH + 1, bt.BATCH):
            yield {"x": x[order[lo:lo + bt.BATCH]], "y": y[order[lo:lo + bt.BATCH]]}

    def loss(model, x, y):
        return bt.loss_fn(model, x, y)

    train = ArrayBatches({"x": x, "y": y}, bt.BATCH, seed=0)
    evaluation = [{"x": x[i * bt.BATCH:(i + 1) * bt.BATCH], "y": y[i * bt.BATCH:(i + 1) * bt.BATCH]}
                  for i in range(args.eval_batches)]
    return Workload("MLP 784-256-256-10", build, optimizer, (train, numpy_epoch), evaluation,
                    loss, tokens_per_step=bt.BATCH, unit="samples")


def lm_workload(preset: str, args: argparse.Namespace, corpus) -> Workload:
    # the LM presets, data and optimizer sections
    from trainers import causal_lm_loss, tokens_in
    from trainers.experiments.config import build_optimizer
    from trainers.experiments.lm_schedules import optimizer_section
    from trainers.lm import build_model, corpus_batches, model_config

    def build():
        mx.random.seed(0)
        return build_model(model_config("llama", preset))

    def optimizer(total):  # the schedule families need 8 steps at least
        return build_optimizer(optimizer_section("warmup_cosine", 1e-3, max(total, 8)))

    train = corpus_batches(corpus.train, args.seq_len, args.batch_size, seed=0)
    valid = corpus_batches(corpus.valid, args.seq_len, args.batch_size, seed=1)
    evaluation = [b for _, b in zip(range(args.eval_batches), valid.epoch(0))]
    return Workload(f"llama {preset}", build, optimizer, (train, train.epoch), evaluation,
                    causal_lm_loss, tokens_per_step=args.batch_size * args.seq_len,
                    unit="tokens", count_tokens=tokens_in)


# ------------------------------------------------------------------ the measurements
def hand_loop(work: Workload, warmup: int, steps: int) -> float:
    """Seconds per step of a hand-written compiled loop (NumPy batch copied with mx.array)."""
    model = work.build()
    opt = work.optimizer(warmup + steps)
    opt.init(model.trainable_parameters())
    state = [model.state, opt.state, mx.random.state]
    loss_and_grad = nn.value_and_grad(model, work.loss)

    @partial(mx.compile, inputs=state, outputs=state)
    def step(batch):
        loss, grads = loss_and_grad(model, **batch)
        opt.update(model, grads)
        return loss

    model.train()
    epoch, batches = 0, iter(work.train_data[1](0))
    start = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            epoch += 1
            batches = iter(work.train_data[1](epoch))
            batch = next(batches)
        loss = step({k: mx.array(v) for k, v in batch.items()})
        mx.eval(state, loss)
    return (time.perf_counter() - start) / steps


def with_trainer(work: Workload, warmup: int, steps: int, folder: str) -> dict:
    """The trainer with its defaults: seconds per step (from ``system.jsonl``), peak memory,
    one evaluation, and a checkpoint saved and loaded back with verification."""
    model = work.build()
    run_dir = tempfile.mkdtemp(dir=folder)
    trainer = Trainer(model, work.loss, work.optimizer(warmup + steps), work.train_data[0],
                      run_dir=run_dir, max_steps=warmup + steps, log_every=warmup,
                      report_every=0, checkpoint_every=0, tokens=work.count_tokens, seed=0)
    mx.reset_peak_memory()
    trainer.fit()
    peak = mx.get_peak_memory()
    with open(os.path.join(run_dir, "system.jsonl"), encoding="utf-8") as f:
        clock = {r["step"]: r["time"] for r in map(json.loads, f)}
    step_s = (clock[warmup + steps] - clock[warmup]) / steps
    trainer.evaluate(work.eval_data)  # compiles the evaluation step
    start = time.perf_counter()
    trainer.evaluate(work.eval_data)
    eval_s = time.perf_counter() - start
    root = os.path.join(run_dir, "bench_checkpoints")
    start = time.perf_counter()
    path = save_checkpoint(root, warmup + steps, model, trainer.optimizer, {})
    save_s = time.perf_counter() - start
    size = sum(os.path.getsize(os.path.join(path, n)) for n in os.listdir(path))
    start = time.perf_counter()
    load_checkpoint(path, model, trainer.optimizer)
    mx.eval(model.parameters(), trainer.optimizer.state)
    load_s = time.perf_counter() - start
    shutil.rmtree(run_dir, ignore_errors=True)
    return {"step_s": step_s, "peak_memory_bytes": peak, "eval_s": eval_s,
            "checkpoint_bytes": size, "save_s": save_s, "load_s": load_s}


def measure(work: Workload, warmup: int, steps: int, rounds: int, folder: str) -> dict:
    params = sum(v.size for _, v in tree_flatten(work.build().parameters()))
    hand, ours = [], []
    for r in range(rounds):  # interleaved, alternating which goes first
        order = ("hand", "trainer") if r % 2 == 0 else ("trainer", "hand")
        for who in order:
            if who == "hand":
                hand.append(hand_loop(work, warmup, steps))
            else:
                ours.append(with_trainer(work, warmup, steps, folder))
        print(f"  {work.name}: round {r + 1}/{rounds}: hand {hand[-1] * 1e3:.2f} ms/step, "
              f"trainer {ours[-1]['step_s'] * 1e3:.2f} ms/step", file=sys.stderr, flush=True)

    def median(key: str) -> float:
        return statistics.median(o[key] for o in ours)

    ratio = statistics.median(h / o["step_s"] for h, o in zip(hand, ours, strict=True))
    step_s = median("step_s")
    return {
        "model": work.name, "parameters": params, "unit": work.unit,
        "per_step": work.tokens_per_step, "rounds": rounds, "steps": steps, "warmup": warmup,
        "hand_step_s": statistics.median(hand), "trainer_step_s": step_s,
        "trainer_vs_hand": ratio, "trainer_share": 1.0 - ratio,
        "throughput_per_s": work.tokens_per_step / step_s,
        "peak_memory_bytes": max(o["peak_memory_bytes"] for o in ours),
        "eval_s": median("eval_s"), "eval_batches": len(work.eval_data),
        "checkpoint_bytes": ours[0]["checkpoint_bytes"],
        "save_s": median("save_s"), "load_s": median("load_s"),
        "runs": {"hand_step_s": hand, "trainer": ours},
    }


def _line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares ``y = a + b x``: (a, b); with one point, (0, y / x)."""
    if len(xs) < 2 or max(xs) == min(xs):
        return 0.0, ys[0] / xs[0]
    b, a = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
    return float(a), float(b)


def growth(rows: list[dict]) -> dict:
    gb = [r["checkpoint_bytes"] / 1e9 for r in rows]
    save_a, save_b = _line(gb, [r["save_s"] for r in rows])
    load_a, load_b = _line(gb, [r["load_s"] for r in rows])
    lms = [r for r in rows if r["unit"] == "tokens"]
    exponent = None
    if len(lms) >= 2:
        exponent = float(np.polyfit(np.log([r["parameters"] for r in lms]),
                                    np.log([r["trainer_step_s"] for r in lms]), 1)[0])
    return {
        "save_fixed_s": save_a, "save_s_per_gb": save_b,
        "load_fixed_s": load_a, "load_s_per_gb": load_b,
        "step_time_exponent_in_parameters": exponent,
        "us_per_unit_per_million_parameters": {
            r["model"]: r["trainer_step_s"] * 1e6 / r["per_step"] / (r["parameters"] / 1e6)
            for r in rows},
    }


def markdown(rows: list[dict], grown: dict) -> str:
    lines = [
        "| model | parameters | trainer ms/step | hand loop ms/step | trainer / hand loop "
        "(median of per-round ratios) | trainer's share | throughput | peak memory MB | "
        "checkpoint MB | save s | verified load s | one evaluation s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['parameters'] / 1e6:.2f} M | {r['trainer_step_s'] * 1e3:.2f} | "
            f"{r['hand_step_s'] * 1e3:.2f} | {r['trainer_vs_hand']:.3f}x | "
            f"{r['trainer_share'] * 100:+.1f} % | {r['throughput_per_s']:,.0f} {r['unit']}/s | "
            f"{r['peak_memory_bytes'] / 1e6:.1f} | {r['checkpoint_bytes'] / 1e6:.1f} | "
            f"{r['save_s']:.3f} | {r['load_s']:.3f} | {r['eval_s']:.3f} "
            f"({r['eval_batches']} batches) |")
    exponent = grown["step_time_exponent_in_parameters"]
    lines += [
        "",
        f"Checkpoint save: {grown['save_fixed_s']:.3f} s + {grown['save_s_per_gb']:.2f} s per GB; "
        f"verified load: {grown['load_fixed_s']:.3f} s + {grown['load_s_per_gb']:.2f} s per GB "
        "(least squares over the models above).",
        "Step time grows as parameters^"
        + (f"{exponent:.2f}" if exponent is not None else "(needs two LM presets)")
        + " across the LM presets. Microseconds per step, per sample or token, per million "
        "parameters: "
        + ", ".join(f"{grown['us_per_unit_per_million_parameters'][r['model']]:.3f} "
                    f"({r['model']}, per {r['unit'][:-1]})" for r in rows) + ".",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    works = [] if args.no_mlp else [(mlp_workload(args), args.mlp_steps)]
    if args.presets:
        from trainers.lm import stdlib_corpus

        corpus = stdlib_corpus()
        works += [(lm_workload(p, args, corpus), args.steps) for p in args.presets]
    if not works:
        print("error: nothing to measure (--no-mlp and no --presets)", file=sys.stderr)
        return 2
    folder = tempfile.mkdtemp(prefix="bench_cost_")
    try:
        rows = [measure(work, args.warmup, steps, args.rounds, folder) for work, steps in works]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    grown = growth(rows)
    result = {
        "machine": {"platform": platform.platform(), "machine": platform.machine(),
                    "cpus": os.cpu_count(), "python": platform.python_version(),
                    "mlx": mx.__version__,  # type: ignore[attr-defined]
                    "device": str(mx.default_device()), "load_average": os.getloadavg()[0]},
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "markdown")},
        "digest": default_algorithm(), "models": rows, "growth": grown,
    }
    table = markdown(rows, grown)
    print(f"\n{platform.machine()}, {os.cpu_count()} CPUs, mlx {mx.__version__}, "  # type: ignore[attr-defined]
          f"{mx.default_device()}, load {os.getloadavg()[0]:.1f}; checkpoints {result['digest']}; "
          f"{args.rounds} rounds\n")
    print(table)
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

