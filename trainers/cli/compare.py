#!/usr/bin/env python
"""Compare learning-rate schedules: same model, same data, several seeds and run lengths.

    mlx-schedules compare                  # digits, MLP, SGD: a few minutes on CPU
    mlx-schedules compare --full           # budgets 750/1500/3000/6000
    mlx-schedules compare --out-dir docs/comparison

Schedules (``trainers.experiments.families``): constant, exponential decay, cyclic exponential
decay,
1-cycle with cycled momentum, triangular cyclical rate with cycled momentum, cosine decay; all
SGD; and the schedule-free baseline (``trainers.schedule_free.ScheduleFreeSGD``: no schedule,
evaluated at its averaged weights), tuned over the same peak grid. Protocol (the
super-convergence budget sweep):

1. A learning-rate range test on the training data: reported, and with ``--peaks-from
   range-test`` each schedule's peak (the range test's suggestion for its family:
   ``trainers.lr_finder.schedule_suggestions``) instead of the grid.
2. Tuning: at every budget (run length), each schedule's peak rate is chosen from ``--peaks``
   by the final accuracy on a validation split held out of the training set (seed 0). A best
   peak at either edge of the grid extends it by one point on that side (same spacing) until
   it is interior or ``--max-extra`` points were added; a peak still at an edge is marked
   "grid edge (limit)" in the tables. ``--peaks-from both`` tunes, and also measures every
   schedule at its range-test peak, and reports per schedule and budget the ratio of the two
   peaks and the accuracy lost at the range-test one; ``--recheck-seeds N`` measures every
   loss above 0.5 points again at both peaks with N seeds (is it the rule's or the seeds'?).
3. Measurement: each schedule at its tuned peak, at every budget, over ``--seeds`` seeds,
   trained on the whole training set and evaluated on the test set.

Writes to ``--out-dir``: ``comparison.md`` (measured tables beside the source article's table,
the command, timings), ``comparison.png`` (rates, training loss, test accuracy, budget sweep),
``results.json`` (every number), and with ``--keep-logs`` each measured run's trainer log
under ``runs/``. The rates in the figure and logs are the optimizer's own (``optimizer.state``).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time

import mlx.core as mx

from trainers.cli.args import add_config_flags, build_config, script_parser
from trainers.experiments.comparison import compare, markdown_report, run_config
from trainers.experiments.config import ConfigError, validate
from trainers.experiments.datasets import DataError, DatasetUnavailable
from trainers.experiments.families import FAMILIES, FAMILY_LABELS
from trainers.experiments.models import ModelTooLarge
from trainers.experiments.peaks import PEAK_SOURCES
from trainers.experiments.run import prepare_data
from trainers.files import write_json_atomic, write_text_atomic

DEFAULT_BUDGETS = (100, 200, 400, 800)
FULL_BUDGETS = (750, 1500, 3000, 6000)
DEFAULT_PEAKS = (0.03, 0.1, 0.3, 1.0)
DEFAULT_TARGET = 0.97


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = script_parser(__doc__, "mlx-schedules compare")
    add_config_flags(p, schedule=False)
    p.add_argument("--full", action="store_true",
                   help=f"budgets {'/'.join(map(str, FULL_BUDGETS))} (tens of minutes on CPU)")
    p.add_argument("--budgets", type=int, nargs="+",
                   help=f"run lengths (default {' '.join(map(str, DEFAULT_BUDGETS))})")
    p.add_argument("--peaks", type=float, nargs="+", default=list(DEFAULT_PEAKS),
                   help=f"peak-rate grid (default {' '.join(map(str, DEFAULT_PEAKS))})")
    p.add_argument("--peaks-from", choices=list(PEAK_SOURCES), default=None,
                   help="grid (default): tune over --peaks; range-test: each schedule at its "
                        "family's range-test peak, no grid; both: tune, and measure the "
                        "range-test peak too (reports the accuracy lost against the tuned)")
    p.add_argument("--peak-from-range-test", action="store_true",
                   help="the older spelling of --peaks-from range-test")
    p.add_argument("--max-extra", type=int, default=3,
                   help="grid points added past a winning edge, per side (default 3)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per measurement (default 3)")
    p.add_argument("--recheck-seeds", type=int, default=0, metavar="N",
                   help="with --peaks-from both: measure again with N seeds (N > --seeds) "
                        "every range-test peak that loses more than 0.5 points (default 0: "
                        "no)")
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
    if args.max_extra < 0:
        raise ConfigError(f"--max-extra: need >= 0, got {args.max_extra}")
    if args.recheck_seeds and (args.peaks_from != "both" or args.recheck_seeds <= args.seeds):
        raise ConfigError(f"--recheck-seeds {args.recheck_seeds}: needs --peaks-from both and "
                          f"more seeds than --seeds ({args.seeds})")
    if args.peak_from_range_test and args.peaks_from not in (None, "range-test"):
        raise ConfigError("--peak-from-range-test contradicts --peaks-from "
                          f"{args.peaks_from}")
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
    try:
        # The largest run's batch size is the same for all; its data check covers them all.
        data = prepare_data(base)
    except (DataError, DatasetUnavailable, ModelTooLarge) as e:
        print(f"data error: {e}", file=sys.stderr)
        return 2
    os.makedirs(args.out_dir, exist_ok=True)
    results = compare(base, data, families=args.families, budgets=budgets, peaks=args.peaks,
                      seeds=args.seeds, target=args.target,
                      range_test_steps=args.range_test_steps,
                      peaks_from=args.peaks_from or (
                          "range-test" if args.peak_from_range_test else "grid"),
                      max_extra=args.max_extra, recheck_seeds=args.recheck_seeds,
                      log_root=os.path.join(args.out_dir, "runs") if args.keep_logs else None,
                      report=lambda line: print(line, flush=True))
    wall = time.perf_counter() - start
    results = {
        "command": "mlx-schedules compare" + "".join(
            f" {shlex.quote(a)}" for a in argv),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
                   f"mlx {getattr(mx, '__version__', '?')}, "
                   f"training.compile={base['training']['compile']}",
        **results, "wall_time_s": wall,
    }
    report = markdown_report(results)
    write_text_atomic(os.path.join(args.out_dir, "comparison.md"), report)
    write_json_atomic(os.path.join(args.out_dir, "results.json"), results)
    if base["output"]["plots"]:
        try:
            from trainers.experiments.plotting import plot_comparison

            budgets, main_budget = results["budgets"], results["main_budget"]
            plot_comparison(
                {FAMILY_LABELS[f]: c for f, c in results["curves"].items()},
                {FAMILY_LABELS[f]: {b: results["measured"][f][str(b)]["final_accuracy"]
                                    for b in budgets} for f in args.families},
                os.path.join(args.out_dir, "comparison.png"), target=args.target,
                title=f"{len(args.families)} schedules on {base['dataset']['name']} "
                      f"({base['model']['kind']}, SGD), peaks tuned per budget\ncurves: "
                      f"{main_budget} steps, seed 0; budget sweep: mean of {args.seeds} seeds")
        except RuntimeError as e:
            print(f"warning: no figure: {e}", file=sys.stderr)
    print()
    print(report)
    print(f"wrote {args.out_dir}/comparison.md, comparison.png, results.json "
          f"({results['runs']} runs, {wall:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
