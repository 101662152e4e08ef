"""What a schedule costs: in a compiled training step, per eager call, and over many steps.

Three measurements, side by side in one run, reported as ratios:

(a) time per compiled training step (``trainers.step.make_train_step``, the trainer's own)
    of a small MLP (784-256-10, batch 128, SGD) with a constant rate, with MLX's
    ``optim.cosine_decay`` and with our ``one_cycle``. The variants are interleaved
    (ABCABC... rounds) so that machine noise hits all alike.
(b) one eager schedule call, including ``mx.eval``, ours vs MLX's built-in equivalent.
(c) ``one_cycle(...).values()`` over 10 million steps vs the same formula in NumPy
    float64, and the largest relative difference between the two.

Usage:
    python scripts/bench_schedules.py --repeats 15 --json bench.json
On Linux, the mlx[cpu] wheel's reference BLAS dominates (a): preload OpenBLAS with
    LD_PRELOAD=$(dpkg -L libopenblas0-pthread | grep libopenblas.so.0) python ...
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np

import mlx_schedules as ms
from trainers.step import make_train_step

# (a) ------------------------------------------------------------------------------------


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(784, 256)
        self.out = nn.Linear(256, 10)

    def __call__(self, x):
        return self.out(nn.relu(self.hidden(x)))


def _loss(model, x, y):
    return nn.losses.cross_entropy(model(x), y, reduction="mean")


def make_step(learning_rate):
    """The trainer's compiled training step (all mutated state captured), and that state."""
    mx.random.seed(0)
    model = MLP()
    optimizer = optim.SGD(learning_rate=learning_rate)
    optimizer.init(model.trainable_parameters())
    step = make_train_step(model, _loss, optimizer, grad_norm=False)
    return step, [model.state, optimizer.state, mx.random.state], optimizer


def bench_training_step(repeats: int, steps_per_round: int, total_steps: int) -> dict:
    variants = {
        "constant": 0.05,
        "mlx cosine_decay": optim.cosine_decay(0.05, total_steps),
        "ours one_cycle": ms.one_cycle(0.05, total_steps),
    }
    x = mx.random.normal((128, 784))
    y = mx.random.randint(0, 10, (128,))
    steps = {name: make_step(rate) for name, rate in variants.items()}
    for step, state, _ in steps.values():            # compile and warm up
        for _ in range(5):
            mx.eval(step((x, y))[0], state)
    times = {name: [] for name in variants}
    names = list(variants)
    for round_ in range(repeats):
        # interleaved, and the order rotates each round (ABC, BCA, CAB...) so that no
        # variant always runs first after the others
        for name in names[round_ % 3:] + names[:round_ % 3]:
            step, state, _ = steps[name]
            start = time.perf_counter()
            for _ in range(steps_per_round):
                mx.eval(step((x, y))[0], state)        # the host waits for each step
            times[name].append((time.perf_counter() - start) / steps_per_round)
    # the scheduled rates did move (the schedule is inside the compiled step)
    rates = {name: steps[name][2].learning_rate.item() for name in variants}
    base = times["constant"]
    return {name: {"median_s": statistics.median(t), "samples": t, "final_rate": rates[name],
                   # the ratio within each round, then its median: robust to drifts in load
                   "median_round_ratio": statistics.median(a / b for a, b in zip(t, base))}
            for name, t in times.items()}


# (b) ------------------------------------------------------------------------------------

def bench_eager_calls(repeats: int, calls: int) -> dict:
    pairs = {
        "cosine_decay": (ms.cosine_decay(0.1, 10_000), optim.cosine_decay(0.1, 10_000)),
        "exponential_decay": (ms.exponential_decay(0.1, 0.999),
                              optim.exponential_decay(0.1, 0.999)),
        "one_cycle": (ms.one_cycle(0.1, 10_000), None),
    }
    steps = [mx.array(k, dtype=mx.uint64) for k in range(calls)]

    def time_calls(schedule):
        start = time.perf_counter()
        for step in steps:
            mx.eval(schedule(step))
        return (time.perf_counter() - start) / calls

    results = {}
    for name, (ours, theirs) in pairs.items():
        samples = {"ours": [], "mlx": []}
        for _ in range(repeats):
            samples["ours"].append(time_calls(ours))
            if theirs is not None:
                samples["mlx"].append(time_calls(theirs))
        results[name] = {who: statistics.median(s) for who, s in samples.items() if s}
    return results


# (c) ------------------------------------------------------------------------------------

def one_cycle_numpy(t: np.ndarray, max_lr: float, total_steps: int, pct_start: float = 0.3,
                    div_factor: float = 25.0, final_div_factor: float = 1e4) -> np.ndarray:
    """PyTorch OneCycleLR (two phases, cosine) in float64, vectorised, holding the end."""
    t = np.minimum(t, total_steps - 1).astype(np.float64)
    initial = max_lr / div_factor
    final = initial / final_div_factor
    end_up = pct_start * total_steps - 1
    end_down = total_steps - 1

    def cos_anneal(start, end, pct):
        return end + (start - end) / 2.0 * (np.cos(np.pi * pct) + 1)

    up = cos_anneal(initial, max_lr, t / end_up)
    down = cos_anneal(max_lr, final, (t - end_up) / (end_down - end_up))
    return np.where(t <= end_up, up, down)


def bench_many_values(n: int, repeats: int) -> dict:
    schedule = ms.one_cycle(0.1, n)
    steps = np.arange(n, dtype=np.int64)
    ours_t, numpy_t = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        ours = schedule.values(n)
        ours_t.append(time.perf_counter() - start)
        start = time.perf_counter()
        reference = one_cycle_numpy(steps, 0.1, n)
        numpy_t.append(time.perf_counter() - start)
    relative = np.abs(ours.astype(np.float64) - reference) / np.abs(reference)
    return {"n": n, "ours_s": statistics.median(ours_t), "numpy_float64_s":
            statistics.median(numpy_t), "max_rel_diff": float(relative.max()),
            "argmax_step": int(relative.argmax())}


# report ---------------------------------------------------------------------------------

def markdown(results: dict) -> str:
    lines = []
    train = results["training_step"]
    base = train["constant"]["median_s"]
    lines += ["### (a) compiled training step, MLP 784-256-10, batch 128, SGD", "",
              "| rate | median ms/step | ratio of medians | median per-round ratio |",
              "|---|---:|---:|---:|"]
    for name, row in train.items():
        lines.append(f"| {name} | {row['median_s'] * 1e3:.3f} | {row['median_s'] / base:.4f} "
                     f"| {row['median_round_ratio']:.4f} |")
    lines += ["", "### (b) one eager call incl. mx.eval", "",
              "| schedule | ours µs | MLX built-in µs | ours / MLX |", "|---|---:|---:|---:|"]
    for name, row in results["eager_call"].items():
        mlx = row.get("mlx")
        ratio = f"{row['ours'] / mlx:.3f}" if mlx else "–"
        mlx_text = f"{mlx * 1e6:.1f}" if mlx else "(none)"
        lines.append(f"| {name} | {row['ours'] * 1e6:.1f} | {mlx_text} | {ratio} |")
    many = results["many_values"]
    lines += ["", f"### (c) one_cycle over {many['n']:,} steps", "",
              "| ours `values()` s | NumPy float64 s | ours / NumPy | max rel. diff |",
              "|---:|---:|---:|---:|",
              f"| {many['ours_s']:.3f} | {many['numpy_float64_s']:.3f} | "
              f"{many['ours_s'] / many['numpy_float64_s']:.2f} | {many['max_rel_diff']:.2e} |"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="interleaved rounds")
    parser.add_argument("--steps-per-round", type=int, default=20,
                        help="training steps timed per variant per round")
    parser.add_argument("--calls", type=int, default=500, help="eager calls per sample")
    parser.add_argument("--values", type=int, default=10_000_000,
                        help="steps evaluated in (c)")
    parser.add_argument("--value-repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    results = {
        "machine": {"platform": platform.platform(), "mlx": mx.__version__,
                    "device": str(mx.default_device())},
        "args": vars(args),
        "training_step": bench_training_step(args.repeats, args.steps_per_round,
                                             total_steps=10_000),
        "eager_call": bench_eager_calls(args.repeats, args.calls),
        "many_values": bench_many_values(args.values, args.value_repeats),
    }
    print(markdown(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    assert math.isfinite(results["many_values"]["max_rel_diff"])


if __name__ == "__main__":
    main()
