#!/usr/bin/env python
"""Benchmark checkpoints against plain MLX file operations: save and verified load.

    python scripts/bench_checkpoint.py                  # ~400 MB, 12 rounds, a Markdown table
    python scripts/bench_checkpoint.py --size-mb 4 --rounds 2    # a quick look
    python scripts/bench_checkpoint.py --json bench_checkpoint.json

The state is a model of two square ``Linear`` layers (``--width``, default 4096: 403 MB with
AdamW's two moments) and its AdamW state after one update. Each round runs, in a rotating
order, on the same arrays and the same directory (``--dir``; the page cache stays warm):

* **plain save**: ``mx.save_safetensors`` of the weights and of the optimizer state (the
  two files a checkpoint holds), then an ``fsync`` of each file, into a new folder each round,
  the previous round's removed afterwards (untimed): the same life of the files as a
  checkpoint's, which is written beside the last one and then replaces it;
* **plain save, in place**: the same, overwriting the same two files every round (cheaper on
  some systems: the freed pages are reused at once; reported, not the reference);
* **our save**: :func:`trainers.checkpoint.save_checkpoint` (the files hashed as they are
  written, ``meta.json``, the manifest, every file and directory fsynced, the rename);
* **plain load**: ``mx.load`` of both files and ``mx.eval`` of the arrays;
* **verified load**: :func:`trainers.checkpoint.load_checkpoint` (every file's size and
  digest checked, the arrays read, names, shapes and dtypes compared with the model's, the
  weights checked finite, the values put into the model and optimizer).

Reported: each operation's median seconds, and the ratios ours / plain as the median of the
per-round ratios (robust to changes of the machine's load between rounds) and as the ratio of
the fastest rounds (robust to single rounds slowed by the machine), with the digest
used (BLAKE3 when the ``blake3`` package is installed, else SHA-256). This is a benchmark, not
a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten

from trainers.checkpoint import load_checkpoint, save_checkpoint
from trainers.digests import default_algorithm

OPERATIONS = ("plain_save", "our_save", "plain_load", "verified_load", "plain_save_in_place")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=int, default=4096,
                   help="width of the two square layers (4096: 403 MB with AdamW state)")
    p.add_argument("--size-mb", type=float, default=None,
                   help="choose the width for about this many MB (10^6 bytes) instead")
    p.add_argument("--rounds", type=int, default=12, help="interleaved rounds (median ratio)")
    p.add_argument("--dir", default=None, help="where to write (default: the system temp dir)")
    p.add_argument("--json", default=None, help="also write the results to this file")
    args = p.parse_args(argv)
    if args.size_mb is not None:
        if not args.size_mb > 0:
            p.error(f"--size-mb must be positive, got {args.size_mb}")
        # 2 layers x (weight + 2 AdamW moments) x width^2 float32 values (biases aside)
        args.width = max(8, int(math.sqrt(args.size_mb * 1e6 / 24)))
    if args.width < 1:
        p.error(f"--width must be positive, got {args.width}")
    if args.rounds < 1:
        p.error(f"--rounds must be at least 1, got {args.rounds}")
    return args


def build(width: int) -> tuple[nn.Module, optim.Optimizer]:
    """Two ``width`` x ``width`` layers and AdamW after one update (moments filled in)."""
    mx.random.seed(0)
    model = nn.Sequential(nn.Linear(width, width), nn.Linear(width, width))
    opt = optim.AdamW(learning_rate=1e-3)
    opt.init(model.trainable_parameters())
    grads = nn.value_and_grad(model, lambda m, x: m(x).square().mean())(
        model, mx.ones((2, width)))[1]
    opt.update(model, grads)
    mx.eval(model.parameters(), opt.state)
    return model, opt


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def plain_save(folder: str, model: nn.Module, opt: optim.Optimizer) -> float:
    os.makedirs(folder, exist_ok=True)
    start = time.perf_counter()
    for name, tree in (("model", model.parameters()), ("optimizer", opt.state)):
        path = os.path.join(folder, f"{name}.safetensors")
        mx.save_safetensors(path, dict(tree_flatten(tree)))
        _fsync(path)
    return time.perf_counter() - start


def plain_save_new(root: str, model: nn.Module, opt: optim.Optimizer, round_: int) -> float:
    """A plain save into ``root/<round>/``, then the older folders removed, untimed."""
    folder = os.path.join(root, str(round_))
    elapsed = plain_save(folder, model, opt)
    for name in os.listdir(root):
        if os.path.join(root, name) != folder:
            shutil.rmtree(os.path.join(root, name))
    return elapsed


def our_save(root: str, model: nn.Module, opt: optim.Optimizer, step: int) -> float:
    """Save as step ``step`` (a new one each time: saving a step again would first verify
    the old copy), then remove the older ones, untimed."""
    start = time.perf_counter()
    path = save_checkpoint(root, step, model, opt, {})
    elapsed = time.perf_counter() - start
    for name in os.listdir(root):
        if os.path.join(root, name) != path:
            shutil.rmtree(os.path.join(root, name))
    return elapsed


def plain_load(folder: str) -> float:
    start = time.perf_counter()
    arrays = [mx.load(os.path.join(folder, f"{name}.safetensors"))
              for name in ("model", "optimizer")]
    mx.eval(arrays)
    return time.perf_counter() - start


def verified_load(path: str, model: nn.Module, opt: optim.Optimizer) -> float:
    start = time.perf_counter()
    load_checkpoint(path, model, opt)
    mx.eval(model.parameters(), opt.state)
    return time.perf_counter() - start


def measure(width: int, rounds: int, where: str | None) -> dict:
    model, opt = build(width)
    state_bytes = sum(v.nbytes for _, v in tree_flatten(model.parameters())) + \
        sum(v.nbytes for _, v in tree_flatten(opt.state))
    folder = tempfile.mkdtemp(prefix="bench_checkpoint_", dir=where)
    try:
        plain_dir, root = os.path.join(folder, "plain"), os.path.join(folder, "checkpoints")
        plain_root = os.path.join(folder, "plain_rounds")
        saved, plain_saved = [0], [0]

        def save() -> float:
            saved[0] += 1
            return our_save(root, model, opt, saved[0])

        def save_plain() -> float:
            plain_saved[0] += 1
            return plain_save_new(plain_root, model, opt, plain_saved[0])

        runs = {
            "plain_save": save_plain,
            "our_save": save,
            "plain_load": lambda: plain_load(os.path.join(plain_root, str(plain_saved[0]))),
            "verified_load": lambda: verified_load(
                os.path.join(root, f"step_{saved[0]:08d}"), model, opt),
            "plain_save_in_place": lambda: plain_save(plain_dir, model, opt),
        }
        for run in runs.values():  # the files exist and the page cache is warm
            run()
        times: dict[str, list[float]] = {name: [] for name in OPERATIONS}
        for r in range(rounds):
            order = OPERATIONS[r % len(OPERATIONS):] + OPERATIONS[:r % len(OPERATIONS)]
            for name in order:
                times[name].append(runs[name]())
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    def ratio(ours: str, plain: str) -> float:
        return statistics.median(a / b for a, b in zip(times[ours], times[plain], strict=True))

    return {
        "width": width, "bytes": state_bytes, "rounds": rounds,
        "digest": default_algorithm(), "seconds": times,
        "median_seconds": {k: statistics.median(v) for k, v in times.items()},
        "ratio": {"save": ratio("our_save", "plain_save"),
                  "load": ratio("verified_load", "plain_load"),
                  "save_vs_in_place": ratio("our_save", "plain_save_in_place")},
        # the fastest round of each, for comparison: robust to rounds slowed by the machine
        "ratio_of_fastest": {
            "save": min(times["our_save"]) / min(times["plain_save"]),
            "load": min(times["verified_load"]) / min(times["plain_load"]),
            "save_vs_in_place": min(times["our_save"]) / min(times["plain_save_in_place"])},
    }


def table(result: dict) -> str:
    gb = result["bytes"] / 1e9
    med = result["median_seconds"]
    lines = ["| operation | seconds (median) | GB/s | ours / plain (median of per-round ratios)"
             " | ours / plain (fastest rounds) |",
             "|---|---:|---:|---:|---:|"]
    ratio, fastest = result["ratio"], result["ratio_of_fastest"]
    for name, label, key in (
            ("plain_save", "plain `mx.save_safetensors` + fsync, new files", ""),
            ("plain_save_in_place", "plain `mx.save_safetensors` + fsync, in place", ""),
            ("our_save", f"`save_checkpoint` ({result['digest']}), against new files", "save"),
            ("our_save", f"`save_checkpoint` ({result['digest']}), against in place",
             "save_vs_in_place"),
            ("plain_load", "plain `mx.load` + eval", ""),
            ("verified_load", f"`load_checkpoint`, verified ({result['digest']})", "load")):
        cells = f"{ratio[key]:.2f}x | {fastest[key]:.2f}x" if key else " | "
        lines.append(f"| {label} | {med[name]:.3f} | {gb / med[name]:.2f} | {cells} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = measure(args.width, args.rounds, args.dir)
    result["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count(),
                         "python": platform.python_version(),
                         "mlx": mx.__version__,  # type: ignore[attr-defined]
                         "load_average": os.getloadavg()[0]}
    print(f"checkpoint of {result['bytes'] / 1e6:.0f} MB (two {args.width}x{args.width} layers "
          f"+ AdamW), {args.rounds} rounds, digest {result['digest']}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}\n")
    print(table(result))
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
