"""Benchmark the trainer: overhead against a hand-written loop, logging cost, PyTorch, BLAS.

    python scripts/bench_trainer.py                 # everything, prints a Markdown table
    python scripts/bench_trainer.py --steps 300     # fewer steps

One run measures, side by side and as ratios, on the same MLP (784-256-256-10, batch 128,
synthetic MNIST-sized data) and the same batches:

* the trainer (per-step logging to JSONL + CSV, console report every 100 steps) against a
  hand-written compiled loop (``mx.compile`` capturing model, optimizer and random state;
  ``mx.eval(state, loss)`` per step), both with SGD + momentum + a one-cycle rate;
* the trainer with logging on against logging off, and with the optional per-step gradient
  norm (``grad_norm=True``: one reduction over all gradients more per step);
* PyTorch's CPU loop with ``OneCycleLR`` on the same MLP, when ``torch`` is importable
  (``--torch-threads``, default 1: on a small, busy machine OpenMP's spinning threads make
  torch several times slower with 2 threads than with 1);
* the default BLAS of the Linux ``mlx[cpu]`` wheel against OpenBLAS preloaded (the
  ``mlx-fastblas`` path). Each BLAS setting runs in its own subprocess.

Every timing includes the first (compiling) step, repeats ``--repeats`` times alternating the
contenders, and keeps the best. This is a benchmark, not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from functools import partial

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build(seed: int = 0):
    import mlx.core as mx
    import mlx.nn as nn

    try:
        from mlx_schedules import one_cycle, one_cycle_momentum, schedule_hyperparameters
    except ImportError:
        one_cycle = None

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.l2, self.l3 = nn.Linear(784, 256), nn.Linear(256, 256), nn.Linear(256, 10)

        def __call__(self, x):
            return self.l3(nn.relu(self.l2(nn.relu(self.l1(x)))))

    mx.random.seed(seed)
    model = MLP()
    mx.eval(model.parameters())
    return model, one_cycle, (one_cycle_momentum, schedule_hyperparameters) if one_cycle else None


def make_optimizer(total: int, one_cycle, extras):
    import mlx.optimizers as optim

    if one_cycle is None:
        return optim.SGD(learning_rate=optim.cosine_decay(0.05, total), momentum=0.9)
    one_cycle_momentum, schedule_hyperparameters = extras
    opt = optim.SGD(learning_rate=one_cycle(0.05, total), momentum=0.9)
    return schedule_hyperparameters(opt, momentum=one_cycle_momentum(total))


def data(num_batches: int = 50, batch: int = 128):
    import numpy as np

    from trainers import ArrayBatches

    rng = np.random.default_rng(0)
    x = rng.normal(size=(num_batches * batch, 784)).astype(np.float32)
    y = rng.integers(0, 10, num_batches * batch).astype(np.int32)
    return x, y, ArrayBatches((x, y), batch, seed=0)


def loss_fn(model, x, y):
    import mlx.nn as nn

    return nn.losses.cross_entropy(model(x), y, reduction="mean")


def hand_written(steps: int) -> float:
    """nanoGPT-style loop with mlx-lm-style state capture; returns steps/s."""
    import mlx.core as mx
    import mlx.nn as nn

    model, one_cycle, extras = build()
    opt = make_optimizer(steps, one_cycle, extras)
    _, _, batches = data()
    opt.init(model.trainable_parameters())
    state = [model.state, opt.state, mx.random.state]
    loss_and_grad = nn.value_and_grad(model, loss_fn)

    @partial(mx.compile, inputs=state, outputs=state)
    def step(x, y):
        loss, grads = loss_and_grad(model, x, y)
        opt.update(model, grads)
        return loss

    start = time.perf_counter()
    done, epoch = 0, 0
    while done < steps:
        for x, y in batches.epoch(epoch):
            loss = step(mx.array(x), mx.array(y))
            mx.eval(state, loss)
            done += 1
            if done == steps:
                break
        epoch += 1
    return steps / (time.perf_counter() - start)


def with_trainer(steps: int, log: bool, grad_norm: bool = False) -> float:
    from trainers import Trainer

    model, one_cycle, extras = build()
    opt = make_optimizer(steps, one_cycle, extras)
    _, _, batches = data()
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(model, loss_fn, opt, batches, run_dir=run_dir, max_steps=steps,
                          log=log, log_every=50, report_every=100 if log else 0,
                          checkpoint_every=0, stream=io.StringIO(), grad_norm=grad_norm)
        start = time.perf_counter()
        trainer.fit()
        return steps / (time.perf_counter() - start)


def with_torch(steps: int, threads: int = 1) -> float | None:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    x, y, batches = data()
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(),
        torch.nn.Linear(256, 10),
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=steps)
    loss_f = torch.nn.CrossEntropyLoss()
    start = time.perf_counter()
    done, epoch, losses = 0, 0, []
    while done < steps:
        for xb, yb in batches.epoch(epoch):
            opt.zero_grad()
            loss = loss_f(model(torch.from_numpy(xb)), torch.from_numpy(yb).long())
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.detach())  # kept as tensors, like the trainer's device log
            done += 1
            if done == steps:
                break
        epoch += 1
    return steps / (time.perf_counter() - start)


def inner(steps: int, repeats: int, torch_threads: int) -> dict:
    import mlx.core as mx

    results: dict[str, float | None] = {
        "hand": 0.0, "trainer_log": 0.0, "trainer_nolog": 0.0, "trainer_log_norm": 0.0,
    }
    torch_rate = with_torch(max(20, steps // 10), torch_threads)  # warm torch up
    results["torch"] = None if torch_rate is None else 0.0
    for _ in range(repeats):
        results["hand"] = max(results["hand"], hand_written(steps))
        results["trainer_log"] = max(results["trainer_log"], with_trainer(steps, True))
        results["trainer_nolog"] = max(results["trainer_nolog"], with_trainer(steps, False))
        results["trainer_log_norm"] = max(results["trainer_log_norm"],
                                          with_trainer(steps, True, grad_norm=True))
        if results["torch"] is not None:
            results["torch"] = max(results["torch"], with_torch(steps, torch_threads))
    results["mlx_version"] = mx.__version__
    results["steps"] = steps
    return results


def run_inner(steps: int, repeats: int, fast: bool, torch_threads: int) -> dict:
    sys.path.insert(0, ROOT)
    from trainers.blas import ENV_VAR, fast_blas_env

    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    lib = None
    if fast:
        env, lib = fast_blas_env(env)
        if lib is None:
            return {"skipped": "libopenblas.so.0 not found"}
    else:
        env[ENV_VAR] = ""
    cmd = [sys.executable, __file__, "--inner", "--steps", str(steps), "--repeats", str(repeats),
           "--torch-threads", str(torch_threads)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["blas"] = lib or "reference BLAS of the mlx[cpu] wheel"
    return result


def table(fast: dict, slow: dict) -> str:
    lines = [
        "| measurement | default BLAS | OpenBLAS preloaded |",
        "|---|---|---|",
    ]

    def cell(r: dict, key: str) -> str:
        v = r.get(key)
        return "n/a" if v is None else f"{v:.1f} steps/s"

    def ratio(r: dict, a: str, b: str) -> str:
        if r.get(a) is None or r.get(b) is None:
            return "n/a"
        return f"{r[a] / r[b]:.3f}x"

    for key, name in (("hand", "hand-written compiled loop"),
                      ("trainer_log", "trainer (defaults), per-step logging on"),
                      ("trainer_nolog", "trainer, logging off"),
                      ("trainer_log_norm", "trainer, logging on, grad_norm=True"),
                      ("torch", "PyTorch CPU loop + OneCycleLR")):
        lines.append(f"| {name} | {cell(slow, key)} | {cell(fast, key)} |")
    for a, b, name in (("trainer_log", "hand", "trainer (logging on) / hand-written"),
                       ("trainer_log_norm", "hand",
                        "trainer (logging on, grad_norm=True) / hand-written"),
                       ("trainer_log", "trainer_nolog", "logging on / logging off"),
                       ("trainer_log", "torch", "trainer (logging on) / PyTorch")):
        lines.append(f"| **{name}** | {ratio(slow, a, b)} | {ratio(fast, a, b)} |")
    if "hand" in fast and "hand" in slow:
        lines.append(f"| **OpenBLAS / default BLAS (trainer, logging on)** | 1.000x | "
                     f"{fast['trainer_log'] / slow['trainer_log']:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="steps with OpenBLAS")
    parser.add_argument("--slow-steps", type=int, default=60, help="steps with default BLAS")
    parser.add_argument("--repeats", type=int, default=7, help="repeats with OpenBLAS")
    parser.add_argument("--slow-repeats", type=int, default=3, help="repeats, default BLAS")
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        sys.path.insert(0, ROOT)
        print(json.dumps(inner(args.steps, args.repeats, args.torch_threads)))
        return
    fast = run_inner(args.steps, args.repeats, True, args.torch_threads)
    slow = run_inner(args.slow_steps, args.slow_repeats, False, args.torch_threads)
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}")
    print(f"default BLAS: {slow.get('steps')} steps, best of {args.slow_repeats}; OpenBLAS: "
          f"{fast.get('steps')} steps, best of {args.repeats}; mlx {slow.get('mlx_version')}")
    print(table(fast, slow))
    print(json.dumps({"default_blas": slow, "openblas": fast}))


if __name__ == "__main__":
    main()
