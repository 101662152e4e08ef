#!/usr/bin/env python
"""Compare learning-rate schedules: same model, same data, several seeds and run lengths.

    python scripts/compare_schedules.py                  # digits, MLP, SGD: a few minutes on CPU
    python scripts/compare_schedules.py --full           # budgets 750/1500/3000/6000
    python scripts/compare_schedules.py --out-dir docs/comparison

Schedules (``experiments.families``): constant, exponential decay, cyclic exponential decay,
1-cycle with cycled momentum, triangular cyclical rate with cycled momentum, cosine decay; all
SGD. Protocol (the super-convergence budget sweep):

1. A learning-rate range test on the training data (reported, and with
   ``--peak-from-range-test`` used as every schedule's peak instead of the grid).
2. Tuning: at every budget (run length), each schedule's peak rate is chosen from ``--peaks``
   by the final accuracy on a validation split held out of the training set (seed 0).
3. Measurement: each schedule at its tuned peak, at every budget, over ``--seeds`` seeds,
   trained on the whole training set and evaluated on the test set.

Writes to ``--out-dir``: ``comparison.md`` (measured tables beside the seed article's table,
the command, timings), ``comparison.png`` (rates, training loss, test accuracy, budget sweep),
``results.json`` (every number), and with ``--keep-logs`` each measured run's trainer log
under ``runs/``. The rates in the figure and logs are the optimizer's own (``optimizer.state``).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import shlex
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402
from experiments.cli import add_config_flags, build_config  # noqa: E402
from experiments.config import ConfigError, validate  # noqa: E402
from experiments.families import FAMILIES, FAMILY_LABELS, family_configs  # noqa: E402
from experiments.run import load_data, range_test, run_training  # noqa: E402
from experiments.seed_table import seed_table_markdown  # noqa: E402

from trainers import NonFiniteError  # noqa: E402

DEFAULT_BUDGETS = (100, 200, 400, 800)
FULL_BUDGETS = (750, 1500, 3000, 6000)
DEFAULT_PEAKS = (0.03, 0.1, 0.3, 1.0)
DEFAULT_TARGET = 0.97
VALIDATION_FRACTION = 0.2


def _split_validation(data: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """Training data split into fit/validation; the test set is left untouched."""
    n = len(data["x_train"])
    order = np.random.default_rng((seed, 1)).permutation(n)
    n_val = int(round(VALIDATION_FRACTION * n))
    val, fit = order[:n_val], order[n_val:]
    return {"x_train": data["x_train"][fit], "y_train": data["y_train"][fit],
            "x_test": data["x_train"][val], "y_test": data["y_train"][val]}


def run_config(base: dict[str, Any], family: str, peak: float, steps: int,
               seed: int) -> dict[str, Any]:
    """The full run config of one schedule family at one peak, run length and seed."""
    config = copy.deepcopy(base)
    config["optimizer"] = {"name": "SGD", **family_configs(family, peak, steps)}
    config["training"].update(steps=steps, seed=seed, eval_every=max(5, steps // 20),
                              checkpoint_every=0, log_every=steps)
    return config


def train_one(config: dict[str, Any], data: dict[str, np.ndarray],
              log_dir: str | None = None) -> dict[str, Any]:
    """One run: its summary plus its curves (rates from the optimizer state via the log)."""
    try:  # without log_dir nothing touches the disk: rows stay in memory (run_dir=None)
        summary, rows = run_training(config, data=data, run_dir=log_dir,
                                     log_files=log_dir is not None, overwrite=True)
    except NonFiniteError as e:
        return {"diverged": True, "error": str(e), "final_accuracy": None,
                "best_accuracy": None, "steps_to_target": None, "wall_time_s": None,
                "final_eval_loss": None}
    summary["diverged"] = False
    summary["curves"] = {
        "steps": [r["step"] for r in rows.train],
        "learning_rate": [r["learning_rate"] for r in rows.train],
        "momentum": [r.get("momentum") for r in rows.train],
        "loss": [r["loss"] for r in rows.train],
        "eval_steps": [r["step"] for r in rows.eval],
        "eval_accuracy": [r["eval_accuracy"] for r in rows.eval],
    }
    return summary


def _score(run: dict[str, Any]) -> tuple[float, float]:
    if run["diverged"] or run["final_accuracy"] is None:
        return (-1.0, 0.0)
    return (run["final_accuracy"], -run["final_eval_loss"])


def _mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None, None
    return float(np.mean(finite)), float(np.std(finite))


def _pct(mean: float | None, std: float | None = None) -> str:
    if mean is None:
        return "diverged"
    return f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if std is not None else "")


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± std over seeds of one schedule at one budget."""
    final = _mean_std([r["final_accuracy"] for r in runs])
    best = _mean_std([r["best_accuracy"] for r in runs])
    reached = [r["steps_to_target"] for r in runs if r["steps_to_target"] is not None]
    return {
        "final_accuracy": final[0], "final_accuracy_std": final[1],
        "best_accuracy": best[0], "best_accuracy_std": best[1],
        "steps_to_target": float(np.mean(reached)) if reached else None,
        "reached_target": len(reached), "seeds": len(runs),
        "diverged": sum(r["diverged"] for r in runs),
        "wall_time_s": _mean_std([r["wall_time_s"] for r in runs])[0],
    }


def markdown_report(results: dict[str, Any]) -> str:
    """comparison.md: the measured tables, the seed's table, the protocol and the command."""
    budgets = results["budgets"]
    main = results["main_budget"]
    target = results["target"]
    families = results["families"]
    lines = [f"# Schedule comparison on {results['dataset']} ({results['model']}, SGD)", ""]
    lines += [f"Command: `{results['command']}`", "",
              f"Machine: {results['machine']}; total wall time {results['wall_time_s']:.0f} s "
              f"({results['runs']} training runs).", ""]
    lines += [f"## Measured at {main} steps (tuned peak, {results['seeds']} seeds, test set)", ""]
    lines += [f"| schedule | tuned peak | final test acc. % | best test acc. % | "
              f"steps to {100 * target:.0f}% | wall time / run |",
              "|---|---|---|---|---|---|"]
    for family in families:
        a = results["measured"][family][str(main)]
        peak = results["tuned_peaks"][family][str(main)]
        steps = (f"{a['steps_to_target']:.0f} ({a['reached_target']}/{a['seeds']} seeds)"
                 if a["steps_to_target"] is not None else f"not reached (0/{a['seeds']})")
        wall = f"{a['wall_time_s']:.2f} s" if a["wall_time_s"] is not None else "-"
        lines.append(f"| {FAMILY_LABELS[family]} | {peak:g} | "
                     f"{_pct(a['final_accuracy'], a['final_accuracy_std'])} | "
                     f"{_pct(a['best_accuracy'], a['best_accuracy_std'])} | {steps} | {wall} |")
    lines += ["", "## Budget sweep: final test accuracy % (mean ± std) at each run length", "",
              "| schedule | " + " | ".join(f"{b} steps" for b in budgets)
              + f" | smallest budget reaching {100 * target:.0f}% |",
              "|---|" + "---|" * (len(budgets) + 1)]
    for family in families:
        cells = []
        for b in budgets:
            a = results["measured"][family][str(b)]
            peak = results["tuned_peaks"][family][str(b)]
            cells.append(f"{_pct(a['final_accuracy'], a['final_accuracy_std'])} "
                         f"(peak {peak:g})")
        smallest = results["smallest_budget"][family]
        lines.append(f"| {FAMILY_LABELS[family]} | " + " | ".join(cells) + " | "
                     + (f"{smallest}" if smallest else "none") + " |")
    rt = results["range_test"]
    lines += ["", "## Range test", "",
              f"Smoothed loss lowest at rate {rt['min_loss_lr']:.3g}; suggested max_lr "
              f"(minimum / 10) {rt['suggested_lr']:.3g}; steepest descent at "
              f"{rt['steepest_lr']:.3g}. Peak grid: {results['peaks']}"
              + (" (taken from the range test)" if results["peak_from_range_test"] else "")
              + ".", ""]
    lines += ["## The seed article's table (restated)", "", seed_table_markdown(), ""]
    lines += ["## Protocol", "",
              "Each schedule's peak rate is tuned at every budget over the grid by the final "
              "accuracy on a validation split (20% of the training set, seed 0); then it is run "
              f"with {results['seeds']} seeds (weights, data order) on the whole training set "
              "and evaluated on the test set. Steps to target: the first evaluation (every "
              "budget/20 steps) at or above the target, averaged over the seeds that reach it. "
              "A budget 'reaches' the target when the mean final accuracy does. Shapes: "
              "exponential decays to peak/100; CED has the same envelope and 3.5 cosine cycles; "
              "1-cycle is PyTorch's OneCycleLR (30% warm-up, momentum 0.95-0.85-0.95); "
              "triangular CLR runs two cycles between peak/25 and peak with momentum cycled "
              "inversely; others use momentum 0.9.", ""]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    add_config_flags(p, schedule=False)
    p.add_argument("--full", action="store_true",
                   help=f"budgets {'/'.join(map(str, FULL_BUDGETS))} (tens of minutes on CPU)")
    p.add_argument("--budgets", type=int, nargs="+",
                   help=f"run lengths (default {' '.join(map(str, DEFAULT_BUDGETS))})")
    p.add_argument("--peaks", type=float, nargs="+", default=list(DEFAULT_PEAKS),
                   help=f"peak-rate grid (default {' '.join(map(str, DEFAULT_PEAKS))})")
    p.add_argument("--peak-from-range-test", action="store_true",
                   help="use the range test's suggested max_lr as every peak (no grid)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per measurement (default 3)")
    p.add_argument("--families", nargs="+", default=list(FAMILIES),
                   help=f"schedules to compare (default all: {' '.join(FAMILIES)})")
    p.add_argument("--target", type=float, default=DEFAULT_TARGET,
                   help=f"target test accuracy (default {DEFAULT_TARGET})")
    p.add_argument("--range-test-steps", type=int, default=200)
    p.add_argument("--out-dir", default="runs/compare", help="where results go")
    p.add_argument("--keep-logs", action="store_true",
                   help="write each measured run's per-step log under OUT_DIR/runs/")
    return p.parse_args(argv)


def _check_args(args: argparse.Namespace) -> list[int]:
    budgets = args.budgets or list(FULL_BUDGETS if args.full else DEFAULT_BUDGETS)
    if any(b < 8 for b in budgets):
        raise ConfigError(f"--budgets: every budget must be >= 8 steps, got {budgets}")
    if not args.peaks or any(not p > 0 for p in args.peaks):
        raise ConfigError(f"--peaks: need positive rates, got {args.peaks}")
    if args.seeds < 1:
        raise ConfigError(f"--seeds: need >= 1, got {args.seeds}")
    unknown = [f for f in args.families if f not in FAMILIES]
    if unknown:
        raise ConfigError(f"--families: unknown {unknown}; valid families are {list(FAMILIES)}")
    if not 0 < args.target <= 1:
        raise ConfigError(f"--target: need 0 < target <= 1, got {args.target}")
    return sorted(set(budgets))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        budgets = _check_args(args)
        if args.run_dir is None:
            args.run_dir = args.out_dir
        base = build_config(args)
        base["training"]["target_accuracy"] = args.target
        # Validate every run's config before training anything.
        for family in args.families:
            for steps in budgets:
                for peak in args.peaks:
                    validate(run_config(base, family, peak, steps, 0))
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    os.makedirs(args.out_dir, exist_ok=True)
    data = load_data(base["dataset"])
    tuning_data = _split_validation(data, base["dataset"]["split_seed"])
    runs = 0

    print(f"range test ({args.range_test_steps} updates) ...", flush=True)
    rt_config = run_config(base, "constant", 0.1, max(budgets), 0)
    rt = range_test(rt_config, min_lr=1e-4, max_lr=10.0, steps=args.range_test_steps,
                    data=data)
    peaks = [rt["suggested_lr"]] if args.peak_from_range_test else list(args.peaks)
    print(f"  suggested max_lr {rt['suggested_lr']:.3g} (loss minimum at "
          f"{rt['min_loss_lr']:.3g})")

    tuned: dict[str, dict[str, float]] = {f: {} for f in args.families}
    tuning: dict[str, dict[str, dict[str, Any]]] = {f: {} for f in args.families}
    for steps in budgets:
        for family in args.families:
            if len(peaks) == 1:
                tuned[family][str(steps)] = peaks[0]
                continue
            trials = {}
            for peak in peaks:
                run = train_one(run_config(base, family, peak, steps, 0), tuning_data)
                runs += 1
                trials[peak] = run
            best = max(peaks, key=lambda p: _score(trials[p]))
            tuned[family][str(steps)] = best
            tuning[family][str(steps)] = {
                str(p): None if trials[p]["diverged"] else trials[p]["final_accuracy"]
                for p in peaks}
        print(f"  tuned peaks at {steps} steps: "
              + ", ".join(f"{f} {tuned[f][str(steps)]:g}" for f in args.families), flush=True)

    measured: dict[str, dict[str, Any]] = {f: {} for f in args.families}
    curves: dict[str, dict[str, Any]] = {}
    main_budget = max(budgets)
    for steps in budgets:
        for family in args.families:
            seed_runs = []
            for seed in range(args.seeds):
                log_dir = (os.path.join(args.out_dir, "runs", f"{family}_{steps}_seed{seed}")
                           if args.keep_logs else None)
                config = run_config(base, family, tuned[family][str(steps)], steps, seed)
                run = train_one(config, data, log_dir)
                runs += 1
                if steps == main_budget and seed == 0 and not run["diverged"]:
                    curves[family] = run["curves"]
                run.pop("curves", None)
                seed_runs.append(run)
            measured[family][str(steps)] = {**aggregate(seed_runs), "runs": seed_runs}
        print(f"  measured {steps} steps: "
              + ", ".join(f"{f} {_pct(measured[f][str(steps)]['final_accuracy'])}"
                          for f in args.families), flush=True)

    smallest = {}
    for family in args.families:
        ok = [b for b in budgets
              if (measured[family][str(b)]["final_accuracy"] or 0) >= args.target]
        smallest[family] = min(ok) if ok else None
    wall = time.perf_counter() - start
    command = "python scripts/compare_schedules.py" + "".join(
        f" {shlex.quote(a)}" for a in argv)
    results = {
        "command": command,
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
                   f"mlx {mx.__version__}, training.compile={base['training']['compile']}",
        "dataset": base["dataset"]["name"], "model": base["model"]["kind"],
        "budgets": budgets, "main_budget": main_budget, "peaks": peaks,
        "peak_from_range_test": args.peak_from_range_test, "seeds": args.seeds,
        "target": args.target, "families": args.families, "runs": runs,
        "range_test": {k: rt[k] for k in ("suggested_lr", "min_loss_lr", "steepest_lr",
                                          "diverged_at")},
        "tuned_peaks": tuned, "tuning_validation_accuracy": tuning, "measured": measured,
        "smallest_budget": smallest, "curves": curves, "wall_time_s": wall,
        "config": base,
    }
    report = markdown_report(results)
    with open(os.path.join(args.out_dir, "comparison.md"), "w", encoding="utf-8") as f:
        f.write(report)
    with open(os.path.join(args.out_dir, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)
    if base["output"]["plots"]:
        try:
            from experiments.plotting import plot_comparison

            plot_comparison(
                {FAMILY_LABELS[f]: c for f, c in curves.items()},
                {FAMILY_LABELS[f]: {b: measured[f][str(b)]["final_accuracy"] for b in budgets}
                 for f in args.families},
                os.path.join(args.out_dir, "comparison.png"), target=args.target,
                title=f"{len(args.families)} schedules on {base['dataset']['name']} "
                      f"({base['model']['kind']}, SGD), peaks tuned per budget\ncurves: "
                      f"{main_budget} steps, seed 0; budget sweep: mean of {args.seeds} seeds")
        except RuntimeError as e:
            print(f"warning: no figure: {e}", file=sys.stderr)
    print()
    print(report)
    print(f"wrote {args.out_dir}/comparison.md, comparison.png, results.json "
          f"({runs} runs, {wall:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
