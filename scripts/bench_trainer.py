"""Benchmark the trainer against a user's own loop: overhead, logging cost, PyTorch, BLAS.

    python scripts/bench_trainer.py                 # everything, prints a Markdown table
    python scripts/bench_trainer.py --steps 300     # fewer steps
    python scripts/bench_trainer.py --skip-slow --json bench_trainer.json   # OpenBLAS only
    python scripts/bench_trainer.py --count-calls   # Python calls per step (deterministic)

One run measures, in the same process and as ratios, on the same MLP (784-256-256-10, batch
128, synthetic MNIST-sized data, SGD + momentum with a one-cycle rate and momentum) and the
same batch order:

* the trainer with its defaults (per-step logging to JSONL + CSV, console report every 100
  steps, batches gathered on the device by ``ArrayBatches``) against what a user's own loop
  does: the same compiled step (``trainers.step.make_train_step``), each batch gathered from
  NumPy and copied with ``mx.array``, then ``mx.eval(state, loss)``;
* the trainer with logging off, with the optional per-step gradient norm (``grad_norm=True``:
  one reduction over all gradients more per step), with host batches
  (``ArrayBatches(..., device=False)``: a NumPy gather and a copy per step, like the user loop),
  and pipelined (queue update k, then wait for update k-1: what the trainer does on a GPU; on
  the CPU backend it waits for each update, like the user loop);
* PyTorch's CPU loop with ``OneCycleLR`` on the same MLP, when ``torch`` is importable
  (``--torch-threads``, default 1: on a small, busy machine OpenMP's spinning threads make
  torch several times slower with 2 threads than with 1);
* the default BLAS of the Linux ``mlx[cpu]`` wheel against OpenBLAS preloaded (the
  ``mlx-fastblas`` path). Each BLAS setting runs in its own subprocess.

Rounds interleave the contenders, rotating their order each round. Within a run, a contender's
rate is its steady state: steps ``--warmup``..N (the first steps compile the graph and open the
run directory). The trainer is clocked from its own ``system.jsonl`` (a record per block of
rows, no callback); with logging off, by a callback on the rows. Reported: each contender's
median rate, and each ratio as the median of the per-round ratios (robust to drifts in the
machine's load). ``--count-calls`` instead counts the Python function calls per step of the
trainer and of the user loop with ``cProfile`` (deterministic, unlike any timing on a busy
machine). This is a benchmark, not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH = 128
WARMUP = 50  # steps before the steady-state clock starts (compiling, opening the run)


def _clock() -> tuple[float, float]:
    """Wall time and this process's CPU time (all its threads)."""
    return time.perf_counter(), time.process_time()


def _rates(steps: int, start: tuple[float, float], end: tuple[float, float]) -> tuple:
    """Steps per second of wall time and of CPU time between two clock readings."""
    return steps / (end[0] - start[0]), steps / (end[1] - start[1])


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


def data(num_batches: int = 50):
    """Synthetic MNIST-sized arrays: x (float32, 784 features), y (int32 labels 0-9)."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(num_batches * BATCH, 784)).astype(np.float32)
    y = rng.integers(0, 10, num_batches * BATCH).astype(np.int32)
    return x, y


def numpy_batches(x, y, seed: int = 0):
    """A user's data loop: each epoch's NumPy permutation (the one ``ArrayBatches`` uses),
    each batch a NumPy gather."""
    import numpy as np

    epoch = 0
    while True:
        order = np.random.default_rng((seed, epoch)).permutation(len(x))
        for lo in range(0, len(x) - BATCH + 1, BATCH):
            idx = order[lo:lo + BATCH]
            yield x[idx], y[idx]
        epoch += 1


def loss_fn(model, x, y):
    import mlx.nn as nn

    return nn.losses.cross_entropy(model(x), y, reduction="mean")


def user_loop(steps: int, warmup: int = WARMUP) -> tuple[float, float]:
    """What a user's own loop does with the trainer's compiled step; steady steps/s."""
    import mlx.core as mx

    from trainers.step import make_train_step

    model, one_cycle, extras = build()
    opt = make_optimizer(steps, one_cycle, extras)
    x, y = data()
    opt.init(model.trainable_parameters())
    step = make_train_step(model, loss_fn, opt, grad_norm=False)
    state = [model.state, opt.state, mx.random.state]
    batches = numpy_batches(x, y)
    start = None
    for i in range(steps):
        if i == warmup:
            start = _clock()
        xb, yb = next(batches)
        loss, _ = step((mx.array(xb), mx.array(yb)))
        mx.eval(state, loss)
    return _rates(steps - warmup, start, _clock())


def with_trainer(steps: int, log: bool, grad_norm: bool = False, device: bool | None = None,
                 warmup: int = WARMUP, pipelined: bool | None = None) -> tuple[float, float]:
    """The trainer with its defaults except the named ones; steady steps/s. With logging on
    it is clocked from ``system.jsonl`` (the records of steps ``warmup`` and ``steps``,
    written when the host has waited for those updates); with logging off (no system log) by
    a callback on the rows of steps ``warmup-1`` and ``steps-1``. ``pipelined`` forces how
    the host waits (None: the trainer's choice for the device)."""
    import trainers.trainer as trainer_module
    from trainers import ArrayBatches, Trainer

    model, one_cycle, extras = build()
    opt = make_optimizer(steps, one_cycle, extras)
    x, y = data()
    batches = ArrayBatches((x, y), BATCH, seed=0, device=device)
    times: dict[int, tuple[float, float]] = {}

    def clock(info: dict) -> None:
        if info.get("event") == "train" and info["step"] in (warmup - 1, steps - 1):
            times.setdefault(info["step"] + 1, _clock())

    choice = trainer_module._pipelined
    if pipelined is not None:
        trainer_module._pipelined = lambda: pipelined
    try:
        with tempfile.TemporaryDirectory() as run_dir:
            trainer = Trainer(model, loss_fn, opt, batches, run_dir=run_dir, max_steps=steps,
                              log=log, report_every=100 if log else 0, checkpoint_every=0,
                              stream=io.StringIO(), grad_norm=grad_norm,
                              callbacks=[] if log else [clock])
            trainer.fit()
            if log:  # wall time only: system.jsonl holds no CPU time
                with open(os.path.join(run_dir, "system.jsonl"), encoding="utf-8") as f:
                    at = {r["step"]: r["time"] for r in map(json.loads, f)}
                return (steps - warmup) / (at[steps] - at[warmup]), None
    finally:
        trainer_module._pipelined = choice
    return _rates(steps - warmup, times[warmup], times[steps])


def with_torch(steps: int, threads: int = 1,
               warmup: int = WARMUP) -> tuple[float, float] | None:
    """PyTorch's CPU loop with ``OneCycleLR`` on the same MLP and batches; steady steps/s."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    x, y = data()
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(),
        torch.nn.Linear(256, 10),
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=steps)
    loss_f = torch.nn.CrossEntropyLoss()
    batches = numpy_batches(x, y)
    losses = []
    start = None
    for i in range(steps):
        if i == warmup:
            start = _clock()
        xb, yb = next(batches)
        opt.zero_grad()
        loss = loss_f(model(torch.from_numpy(xb)), torch.from_numpy(yb).long())
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.detach())  # kept as tensors, like the trainer's pending values
    return _rates(steps - warmup, start, _clock())


# name -> what it runs; "user" is the reference of every ratio
CONTENDERS = {
    "user": lambda steps: user_loop(steps),
    "trainer_log": lambda steps: with_trainer(steps, True),
    "trainer_nolog": lambda steps: with_trainer(steps, False),
    "trainer_log_norm": lambda steps: with_trainer(steps, True, grad_norm=True),
    "trainer_log_host": lambda steps: with_trainer(steps, True, device=False),
    "trainer_log_pipelined": lambda steps: with_trainer(steps, True, pipelined=True),
}


def inner(steps: int, repeats: int, torch_threads: int) -> dict:
    import mlx.core as mx

    runs = dict(CONTENDERS)
    if with_torch(WARMUP + 10, torch_threads) is not None:  # also warms torch up
        runs["torch"] = lambda n: with_torch(n, torch_threads)
    for run in runs.values():  # first calls pay one-off imports and allocations
        run(WARMUP + 10)
    names = list(runs)
    rates: dict[str, list[float]] = {name: [] for name in names}
    cpu_rates: dict[str, list[float | None]] = {name: [] for name in names}
    for round_ in range(repeats):
        # interleaved, the order rotating each round, so that load drifts hit all alike
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:
            wall, cpu = runs[name](steps)
            rates[name].append(wall)
            cpu_rates[name].append(cpu)

    def ratios(table: dict[str, list]) -> dict[str, float]:
        def median_ratio(a: str, b: str) -> float | None:  # a ratio per round, then the median
            if None in table[a] or None in table[b]:
                return None  # no CPU time for a trainer clocked from system.jsonl
            return statistics.median(x / y for x, y in zip(table[a], table[b], strict=True))

        out = {name: median_ratio(name, "user") for name in table}
        out["log_on_off"] = median_ratio("trainer_log", "trainer_nolog")
        out["sync_vs_pipelined"] = median_ratio("trainer_log", "trainer_log_pipelined")
        if "torch" in table:
            out["trainer_torch"] = median_ratio("trainer_log", "torch")
        return out

    return {
        "steps": steps, "warmup": WARMUP, "repeats": repeats, "mlx_version": mx.__version__,
        "rates": rates, "cpu_rates": cpu_rates,
        "median_rate": {name: statistics.median(r) for name, r in rates.items()},
        "ratio": ratios(rates),
        # steps per second of the process's CPU time: less disturbed by other processes (only
        # for the contenders clocked by a callback)
        "cpu_ratio": ratios(cpu_rates),
    }


def count_calls(short: int = 200, long: int = 600) -> dict[str, float]:
    """Python function calls per step of the user loop and of the trainer (defaults), from
    cProfile: the calls of a ``long`` run less those of a ``short`` one, per extra step (so
    that compiling and opening the run cancel). Deterministic, unlike timings."""
    import cProfile
    import pstats

    def calls(run, steps: int) -> int:
        profile = cProfile.Profile()
        profile.enable()
        run(steps)
        profile.disable()
        return pstats.Stats(profile).total_calls  # type: ignore[attr-defined]

    runs = {"user loop": lambda n: user_loop(n, warmup=0),
            "trainer (defaults)": lambda n: with_trainer(n, True)}
    out = {}
    for name, run in runs.items():
        run(WARMUP + 10)  # imports and one-off allocations
        out[name] = (calls(run, long) - calls(run, short)) / (long - short)
    return out


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
        v = r.get("median_rate", {}).get(key)
        return "n/a" if v is None else f"{v:.1f} steps/s"

    def ratio(r: dict, key: str) -> str:
        v = (r.get("ratio") or {}).get(key)
        return "n/a" if v is None else f"{v:.3f}x"

    for key, name in (("user", "user loop (make_train_step; NumPy batch + mx.array)"),
                      ("trainer_log", "trainer (defaults), per-step logging on"),
                      ("trainer_nolog", "trainer, logging off"),
                      ("trainer_log_norm", "trainer, logging on, grad_norm=True"),
                      ("trainer_log_host", "trainer, logging on, host batches (device=False)"),
                      ("trainer_log_pipelined", "trainer, logging on, pipelined as on a GPU"),
                      ("torch", "PyTorch CPU loop + OneCycleLR")):
        lines.append(f"| {name} | {cell(slow, key)} | {cell(fast, key)} |")
    for key, name in (("trainer_log", "trainer (defaults, logging on) / user loop"),
                      ("trainer_nolog", "trainer (logging off) / user loop"),
                      ("trainer_log_norm", "trainer (logging on, grad_norm=True) / user loop"),
                      ("trainer_log_host", "trainer (logging on, host batches) / user loop"),
                      ("trainer_log_pipelined", "trainer (pipelined as on a GPU) / user loop"),
                      ("log_on_off", "logging on / logging off"),
                      ("sync_vs_pipelined", "trainer: wait per update / pipelined"),
                      ("trainer_torch", "trainer (logging on) / PyTorch")):
        lines.append(f"| **{name}** | {ratio(slow, key)} | {ratio(fast, key)} |")
    try:
        speedup = fast["median_rate"]["trainer_log"] / slow["median_rate"]["trainer_log"]
        lines.append(f"| **OpenBLAS / default BLAS (trainer, logging on)** | 1.000x | "
                     f"{speedup:.2f}x |")
    except KeyError:
        pass
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="steps with OpenBLAS")
    parser.add_argument("--slow-steps", type=int, default=100, help="steps with default BLAS")
    parser.add_argument("--repeats", type=int, default=9, help="rounds with OpenBLAS")
    parser.add_argument("--slow-repeats", type=int, default=8, help="rounds, default BLAS")
    parser.add_argument("--skip-slow", action="store_true",
                        help="leave out the default-BLAS run (OpenBLAS only)")
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--count-calls", action="store_true",
                        help="count Python calls per step (cProfile) instead of timing")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.count_calls:
        sys.path.insert(0, ROOT)
        counts = count_calls()
        print("Python function calls per step (cProfile, steps 200-600 of a run; the compiled "
              "step and MLX's own calls are not Python calls):")
        for name, value in counts.items():
            print(f"  {name}: {value:.1f}")
        print(json.dumps(counts))
        return
    for flag, value in (("--steps", args.steps), ("--slow-steps", args.slow_steps)):
        if value <= WARMUP:
            parser.error(f"{flag} must exceed the {WARMUP} warm-up steps, got {value}")
    for flag, value in (("--repeats", args.repeats), ("--slow-repeats", args.slow_repeats)):
        if value < 1:
            parser.error(f"{flag} must be at least 1, got {value}")
    if args.inner:
        sys.path.insert(0, ROOT)
        print(json.dumps(inner(args.steps, args.repeats, args.torch_threads)))
        return
    fast = run_inner(args.steps, args.repeats, True, args.torch_threads)
    slow = {"skipped": "--skip-slow"} if args.skip_slow else \
        run_inner(args.slow_steps, args.slow_repeats, False, args.torch_threads)
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}, mlx {slow.get('mlx_version')}")
    print(f"steady state after {WARMUP} steps; default BLAS: {slow.get('steps')} steps x "
          f"{args.slow_repeats} rounds; OpenBLAS: {fast.get('steps')} steps x {args.repeats} "
          "rounds; rates are medians, ratios medians of per-round ratios")
    print(table(fast, slow))
    print(json.dumps({"default_blas": slow, "openblas": fast}))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"default_blas": slow, "openblas": fast}, f, indent=1)


if __name__ == "__main__":
    main()
