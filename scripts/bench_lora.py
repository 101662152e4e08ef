#!/usr/bin/env python
"""Benchmark `mlx-schedules lora` against `mlx_lm.lora`: same model, data and flags.

    python scripts/bench_lora.py                        # llama 'medium', 200 steps, 3 rounds
    python scripts/bench_lora.py --json bench_lora.json # also write the numbers
    python scripts/bench_lora.py --tiny                 # a quick check that it runs (seconds)
    python scripts/bench_lora.py --model M --data D --iters 400 --flags "--grad-checkpoint"

Each round runs both commands once, as separate processes, with one command line (the model,
`--train`, the data, `--iters`, `--batch-size`, a constant `--learning-rate`, `--num-layers -1`,
`--seed`, and `--flags`); the order alternates from round to round. Without `--model` and
`--data`, a model directory (`mlx-schedules tiny-model`, `--preset`) and the example data
(`mlx-schedules example-data`, chat rows) are written to a temporary folder first.

Speed: the updates per second of each process between its reports at step `--warmup` and at
the last report before the final evaluation (compiling, loading and evaluating left out), read
from the wall clock of each: `system.jsonl` of our run, a report callback hooked into
`mlx_lm.lora` (its own tokens-per-second figure leaves out the time spent building batches).
Both train `--batch-size` rows per update from the same data, so tokens per second is updates
per second times the mean tokens of a training row times the batch size, the same for both; the
ratio is the median of the per-round ratios. Each tool's own token rate is recorded beside it.

Validation loss: both adapters of the last round, loaded with `mlx_lm.load(model,
adapter_path=...)`, evaluated here by one function: the mean cross-entropy, in nats per token,
of every target token of every row of `valid.jsonl` (no padding).

This is a benchmark, not a test: nothing here asserts, and a figure measured on a busy machine
means little (the load average is recorded at the start and the end).
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

from trainers.cli.args import script_parser
from trainers.files import write_json_atomic

CONTENDERS = ("mlx-schedules", "mlx_lm")

#: runs mlx_lm.lora's own main() with a report callback that records the wall clock
_MLX_LM_RUNNER = r"""
import json, sys, time
import mlx_lm.lora as lora
from mlx_lm.tuner.callbacks import TrainingCallback

out, argv = sys.argv[1], sys.argv[2:]
reports = []

class Clock(TrainingCallback):
    def on_train_loss_report(self, info):
        reports.append({"step": info["iteration"], "time": time.perf_counter(),
                        "tokens_per_s": info["tokens_per_second"],
                        "trained_tokens": info["trained_tokens"]})

# lora.run() builds its callbacks from --report-to; ours stands in for "none" (mlx-lm 0.32)
lora.get_reporting_callbacks = lambda *args, **kwargs: Clock()
sys.argv = ["mlx_lm.lora", *argv]
lora.main()
with open(out, "w") as f:
    json.dump(reports, f)
"""


def parse_args(argv):
    p = script_parser(__doc__, "bench_lora.py")
    p.add_argument("--model", help="an mlx-lm model directory (default: a tiny-model of "
                   "--preset written here)")
    p.add_argument("--data", help="a folder with train.jsonl and valid.jsonl (default: the "
                   "example data written here)")
    p.add_argument("--preset", default="medium", help="size of the model written here "
                   "(default medium: 256 wide, 4 blocks)")
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--learning-rate", type=float, default=1e-4, help="constant rate")
    p.add_argument("--steps-per-report", type=int, default=10)
    p.add_argument("--warmup", type=int, default=20, help="updates left out of the timing")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--flags", default="", help="more flags for both commands (one string)")
    p.add_argument("--tiny", action="store_true", help="preset tiny, 8 updates, 2 rounds: "
                   "checks that the benchmark runs, measures nothing")
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--keep", help="keep the runs' folders here (default: a temporary folder)")
    args = p.parse_args(argv)
    if args.tiny:
        args.preset, args.iters, args.rounds = "tiny", 8, 2
        args.steps_per_report, args.warmup = 2, 2
    if args.iters < args.warmup + 2 * args.steps_per_report:
        p.error("--iters must leave at least two reports after --warmup")
    return args


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def common_flags(args, model: str, data: str) -> list[str]:
    """The command line both tools get (without --adapter-path)."""
    return ["--model", model, "--train", "--data", data, "--iters", str(args.iters),
            "--batch-size", str(args.batch_size), "--learning-rate", str(args.learning_rate),
            "--num-layers", "-1", "--steps-per-report", str(args.steps_per_report),
            "--steps-per-eval", str(args.iters), "--save-every", str(args.iters),
            "--val-batches", "5", "--seed", str(args.seed), *shlex.split(args.flags)]


def window_rate(points: list[tuple[int, float]], first: int, last: int) -> float:
    """Updates per second between the first point at or after step ``first`` and the last
    point at or before step ``last`` (points are ``(step, seconds)``)."""
    inside = [(s, t) for s, t in points if first <= s <= last]
    if len(inside) < 2 or inside[-1][0] == inside[0][0]:
        raise RuntimeError(f"fewer than two reports between steps {first} and {last}: "
                           f"{points}")
    (s0, t0), (s1, t1) = inside[0], inside[-1]
    return (s1 - s0) / (t1 - t0)


def run_ours(flags: list[str], adapters: str, args) -> dict:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "trainers.cli", "lora", *flags,
                           "--adapter-path", adapters], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"mlx-schedules lora failed:\n{done.stderr[-3000:]}")
    with open(os.path.join(adapters, "run", "system.jsonl"), encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    points = [(r["step"], r["time"]) for r in records]
    last = args.iters - args.steps_per_report
    own = [r["tokens_per_s"] for r in records
           if args.warmup < r["step"] <= last and "tokens_per_s" in r]
    return {"steps_per_s": window_rate(points, args.warmup, last), "wall_s": round(wall, 3),
            "own_tokens_per_s": statistics.mean(own) if own else None}


def run_mlx_lm(flags: list[str], adapters: str, args) -> dict:
    clock = adapters + ".reports.json"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _MLX_LM_RUNNER, clock, *flags,
                           "--adapter-path", adapters], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"mlx_lm.lora failed:\n{done.stderr[-3000:]}")
    with open(clock, encoding="utf-8") as f:
        reports = json.load(f)
    points = [(r["step"], r["time"]) for r in reports]
    last = args.iters - args.steps_per_report  # its last report follows the final evaluation
    own = [r["tokens_per_s"] for r in reports if args.warmup < r["step"] <= last]
    return {"steps_per_s": window_rate(points, args.warmup, last), "wall_s": round(wall, 3),
            "own_tokens_per_s": statistics.mean(own) if own else None}


def encoded_rows(path: str, tokenizer) -> list[list[int]]:
    """Every row of a jsonl file as the tokens both tools train on (mlx-lm's rendering)."""
    from trainers.lm.data import encode_rows, read_jsonl

    rows, form = read_jsonl(path)
    return [list(map(int, seq)) for seq in encode_rows(rows, form, tokenizer)[0]]


def validation_loss(model_dir: str, adapters: str | None, rows: list[list[int]]) -> float:
    """Mean cross-entropy (nats) of every target token of ``rows``, one row at a time."""
    import mlx.core as mx
    import mlx.nn as nn
    import mlx_lm

    model, _ = mlx_lm.load(model_dir, adapter_path=adapters)
    total, count = 0.0, 0
    for row in rows:
        tokens = mx.array([row])
        logits = model(tokens[:, :-1]).astype(mx.float32)
        total += nn.losses.cross_entropy(logits, tokens[:, 1:], reduction="sum").item()
        count += len(row) - 1
    return total / count


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.keep is None:
        with tempfile.TemporaryDirectory(prefix="bench_lora-") as root:
            return run_benchmark(args, root)
    os.makedirs(args.keep, exist_ok=True)
    return run_benchmark(args, args.keep)


def run_benchmark(args, root: str) -> int:
    import mlx.core as mx
    import mlx_lm

    from trainers.lm import write_example_data, write_tiny_model

    model = args.model or write_tiny_model(os.path.join(root, "model"), preset=args.preset)
    data = args.data
    if data is None:
        data = os.path.join(root, "data")
        write_example_data(data, "chat")
    flags = common_flags(args, model, data)
    _, tokenizer = mlx_lm.load(model)
    train_rows = encoded_rows(os.path.join(data, "train.jsonl"), tokenizer)
    valid_rows = encoded_rows(os.path.join(data, "valid.jsonl"), tokenizer)
    tokens_per_update = args.batch_size * statistics.mean(map(len, train_rows))

    result = {
        "command_line": flags + ["--adapter-path", "ADAPTERS"],
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "mlx": mx.__version__, "mlx_lm": mlx_lm.__version__,
                    "cpu_count": os.cpu_count(), "load_average_start": load_average()},
        "tokens_per_update": round(tokens_per_update, 3),
        "timed_updates": [args.warmup, args.iters - args.steps_per_report],
        "rounds": [],
    }
    runners = {"mlx-schedules": run_ours, "mlx_lm": run_mlx_lm}
    for r in range(args.rounds):
        order = CONTENDERS if r % 2 == 0 else CONTENDERS[::-1]
        entry: dict = {"order": list(order)}
        for name in order:
            adapters = os.path.join(root, f"round{r}-{name}")
            measured = runners[name](flags, adapters, args)
            measured["tokens_per_s"] = measured["steps_per_s"] * tokens_per_update
            measured["adapters"] = adapters
            entry[name] = measured
            print(f"round {r + 1}/{args.rounds} {name:>13}: {measured['tokens_per_s']:9.0f} "
                  f"tokens/s ({measured['steps_per_s']:.2f} updates/s), "
                  f"{measured['wall_s']:.1f} s in all", flush=True)
        entry["ratio"] = entry["mlx-schedules"]["tokens_per_s"] / entry["mlx_lm"]["tokens_per_s"]
        result["rounds"].append(entry)

    last = result["rounds"][-1]
    losses = {name: validation_loss(model, last[name]["adapters"], valid_rows)
              for name in CONTENDERS}
    losses["base model"] = validation_loss(model, None, valid_rows)
    ratios = [e["ratio"] for e in result["rounds"]]
    result.update(
        tokens_per_s_ratio_median=statistics.median(ratios), tokens_per_s_ratios=ratios,
        tokens_per_s_median={name: statistics.median(e[name]["tokens_per_s"]
                                                     for e in result["rounds"])
                             for name in CONTENDERS},
        val_loss=losses, val_rows=len(valid_rows),
        val_loss_difference=losses["mlx-schedules"] - losses["mlx_lm"])
    result["machine"]["load_average_end"] = load_average()
    print(f"tokens per second, mlx-schedules / mlx_lm: {result['tokens_per_s_ratio_median']:.3f}"
          f" (median of {', '.join(f'{x:.3f}' for x in ratios)})")
    print("validation loss after {} updates (nats per token): {}".format(
        args.iters, ", ".join(f"{k} {v:.4f}" for k, v in losses.items())))
    if args.json:
        write_json_atomic(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
