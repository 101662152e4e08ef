#!/usr/bin/env python
"""Compare the source article's learning-rate schedules on a byte-level language model.

    mlx-schedules compare-lm                        # budgets 100/200/400, 3 seeds
    mlx-schedules compare-lm --out-dir docs/comparison_lm
    mlx-schedules compare-lm --budgets 200 400 800 1600 --seq-len 64 --preset small

A small mlx-lm llama (random weights, byte vocabulary) trained with AdamW on the embedded corpus
(this Python's standard-library modules; no download) under six schedules: constant, cosine
with warmup, warmup-stable-decay, exponential decay, cyclic exponential decay, and 1-cycle with
a cycled beta1 (``trainers.experiments.comparison_lm``). At every budget each schedule's peak
rate is
tuned over ``--peaks`` on half of the validation files (seed 0; a best peak at an edge of the
grid extends it by one point on that side, up to ``--max-extra`` points, and one still at an
edge is marked "grid edge (limit)"), then ``--seeds`` seeds at the tuned peak are scored on the
other half in bits per byte. A range test on the same model runs first: ``--peaks-from
range-test`` takes each schedule's peak from it (its family's suggestion) instead of the grid;
``--peaks-from both`` tunes and measures the range-test peak too, and reports the bits per byte
lost at it. ``--study`` runs the LM study instead (``trainers.experiments.lm_study``: two model
sizes, two token budgets each, the schedules of current practice: about 10 minutes on 2 CPU
cores; ``--tiny`` for a quick check).

Writes to ``--out-dir``: ``comparison.md`` (the measured tables, a "what the source article
claims / what we measured" table written from the numbers, the source article's table, the
command and the timings),
``comparison.png`` (logged rates and beta1, training loss, the budget sweep, the tuning curves)
and ``results.json`` (every number, each run's logged rates and losses at the largest budget).
Needs mlx-lm (``pip install 'mlx-schedules[lm]'``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time

import mlx.core as mx

from trainers.cli.args import script_parser
from trainers.experiments.comparison_lm import (
    LM_FAMILIES,
    LM_LABELS,
    LMSettings,
    compare_lm,
    markdown_report_lm,
    plot_comparison_lm,
)
from trainers.experiments.peaks import PEAK_SOURCES
from trainers.files import write_json_atomic, write_text_atomic
from trainers.lm import PRESETS

DEFAULT_BUDGETS = (100, 200, 400)
DEFAULT_PEAKS = (0.001, 0.003, 0.01)
DEFAULT_JOBS = min(2, os.cpu_count() or 1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    d = LMSettings()
    p = script_parser(__doc__, "mlx-schedules compare-lm")
    p.add_argument("--budgets", type=int, nargs="+", default=list(DEFAULT_BUDGETS),
                   help=f"run lengths (default {' '.join(map(str, DEFAULT_BUDGETS))})")
    p.add_argument("--peaks", type=float, nargs="+", default=list(DEFAULT_PEAKS),
                   help=f"peak-rate grid (default {' '.join(map(str, DEFAULT_PEAKS))})")
    p.add_argument("--seeds", type=int, default=3, help="seeds per measurement (default 3)")
    p.add_argument("--families", nargs="+", default=list(LM_FAMILIES),
                   help=f"schedules to compare (default: {' '.join(LM_FAMILIES)}; also "
                        f"{' '.join(f for f in LM_LABELS if f not in LM_FAMILIES)})")
    p.add_argument("--preset", default=d.preset, choices=list(PRESETS),
                   help=f"model size (default {d.preset})")
    p.add_argument("--hidden-size", type=int, help="override the preset's width")
    p.add_argument("--layers", type=int, help="override the preset's depth")
    p.add_argument("--intermediate-size", type=int, help="override the preset's MLP width")
    p.add_argument("--heads", type=int, help="override the preset's attention heads")
    p.add_argument("--seq-len", type=int, default=d.seq_len,
                   help=f"bytes per training window (default {d.seq_len})")
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help=f"windows per update (default {d.batch_size})")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay,
                   help=f"AdamW weight decay (default {d.weight_decay})")
    p.add_argument("--tune-windows", type=int, default=d.tune_windows,
                   help=f"validation windows scoring the tuning runs (default {d.tune_windows})")
    p.add_argument("--test-windows", type=int, default=d.test_windows,
                   help=f"validation windows scoring the measured runs (default "
                        f"{d.test_windows})")
    p.add_argument("--jobs", type=int, default=DEFAULT_JOBS,
                   help=f"worker processes (default {DEFAULT_JOBS}: MLX's CPU backend keeps "
                        "about one core busy per process; the numbers do not depend on it)")
    p.add_argument("--peaks-from", choices=list(PEAK_SOURCES), default="grid",
                   help="grid (default): tune over --peaks; range-test: each schedule at its "
                        "family's range-test peak; both: tune and measure the range-test peak")
    p.add_argument("--max-extra", type=int, default=3,
                   help="grid points added past a winning edge, per side (default 3)")
    p.add_argument("--range-test-steps", type=int, default=200,
                   help="the range test's sweep length (default 200; 0: none, with the grid)")
    p.add_argument("--study", action="store_true",
                   help="run the LM study (two sizes, two budgets each, current schedules) "
                        "into --out-dir (default docs-like layout: results.json, study.md, "
                        "study.png)")
    p.add_argument("--tiny", action="store_true",
                   help="with --study: a seconds-long configuration (for tests)")
    p.add_argument("--out-dir", default=None,
                   help="where results go (default runs/compare_lm, runs/lm_study with --study)")
    p.add_argument("--no-plot", action="store_true", help="skip the figure")
    p.add_argument("--render", metavar="RESULTS_JSON",
                   help="train nothing: rewrite comparison.md and comparison.png in --out-dir "
                        "from a results.json this script wrote (its command is kept)")
    return p.parse_args(argv)


def _settings(args: argparse.Namespace) -> LMSettings:
    """The settings, with every bad value named (exit status 2 before anything trains)."""
    budgets = args.budgets
    if any(b < 8 for b in budgets):
        raise ValueError(f"--budgets: every budget must be >= 8 steps, got {budgets}")
    if not args.peaks or any(not p > 0 for p in args.peaks):
        raise ValueError(f"--peaks: need positive rates, got {args.peaks}")
    if args.seeds < 1:
        raise ValueError(f"--seeds: need >= 1, got {args.seeds}")
    unknown = [f for f in args.families if f not in LM_LABELS]
    if unknown:
        raise ValueError(f"--families: unknown {unknown}; valid families are "
                         f"{list(LM_LABELS)}")
    for name in ("seq_len", "batch_size", "tune_windows", "test_windows"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')}: need >= 1, got "
                             f"{getattr(args, name)}")
    if args.jobs < 1:
        raise ValueError(f"--jobs: need >= 1, got {args.jobs}")
    if args.max_extra < 0:
        raise ValueError(f"--max-extra: need >= 0, got {args.max_extra}")
    if args.range_test_steps != 0 and args.range_test_steps < 10:
        raise ValueError(f"--range-test-steps: need 0 (none) or >= 10, got "
                         f"{args.range_test_steps}")
    if args.range_test_steps == 0 and args.peaks_from != "grid":
        raise ValueError(f"--peaks-from {args.peaks_from} needs the range test "
                         "(--range-test-steps > 0)")
    if not args.weight_decay >= 0:
        raise ValueError(f"--weight-decay: need >= 0, got {args.weight_decay}")
    overrides = {key: value for key, value in (
        ("hidden_size", args.hidden_size), ("num_hidden_layers", args.layers),
        ("intermediate_size", args.intermediate_size),
        ("num_attention_heads", args.heads)) if value is not None}
    settings = LMSettings(preset=args.preset, model_overrides=overrides, seq_len=args.seq_len,
                          batch_size=args.batch_size, weight_decay=args.weight_decay,
                          tune_windows=args.tune_windows, test_windows=args.test_windows)
    settings.model_config()  # validates the overrides (names the field and the value)
    return settings


def write_outputs(results: dict, out_dir: str, *, plot: bool, with_json: bool = True) -> str:
    """Write comparison.md (returned), results.json and the figure into ``out_dir``."""
    report = markdown_report_lm(results)
    write_text_atomic(os.path.join(out_dir, "comparison.md"), report)
    if with_json:
        write_json_atomic(os.path.join(out_dir, "results.json"), results)
    if plot:
        try:
            plot_comparison_lm(results, os.path.join(out_dir, "comparison.png"))
        except RuntimeError as e:
            print(f"warning: no figure: {e}", file=sys.stderr)
    return report


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.study or args.tiny:
        if not args.study:
            print("config error: --tiny goes with --study", file=sys.stderr)
            return 2
        from trainers.experiments.lm_study import run_study_cli

        return run_study_cli(args, argv)
    if args.out_dir is None:
        args.out_dir = "runs/compare_lm"
    start = time.perf_counter()
    try:
        settings = _settings(args)
    except ValueError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    try:
        import mlx_lm  # noqa: F401  (checked before any work: the models are mlx-lm's)
    except ImportError:
        print("error: this comparison needs mlx-lm: pip install 'mlx-schedules[lm]'",
              file=sys.stderr)
        return 2
    if args.render:
        try:
            with open(args.render, encoding="utf-8") as f:
                results = json.load(f)
        except (OSError, ValueError) as e:
            print(f"error: --render {args.render}: {e}", file=sys.stderr)
            return 2
        os.makedirs(args.out_dir, exist_ok=True)
        write_outputs(results, args.out_dir, plot=not args.no_plot, with_json=False)
        print(f"wrote {args.out_dir}/comparison.md, comparison.png from {args.render}")
        return 0
    os.makedirs(args.out_dir, exist_ok=True)
    results = compare_lm(settings, families=args.families, budgets=args.budgets,
                         peaks=args.peaks, seeds=args.seeds, jobs=args.jobs,
                         peaks_from=args.peaks_from, max_extra=args.max_extra,
                         range_test_steps=args.range_test_steps,
                         report=lambda line: print(line, flush=True))
    results = {
        "command": "mlx-schedules compare-lm" + "".join(f" {shlex.quote(a)}" for a in argv),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
                   f"mlx {getattr(mx, '__version__', '?')}, load average at the end "
                   f"{os.getloadavg()[0]:.1f}",
        **results, "jobs": args.jobs, "wall_time_s": time.perf_counter() - start,
    }
    report = write_outputs(results, args.out_dir, plot=not args.no_plot)
    print()
    print(report)
    print(f"wrote {args.out_dir}/comparison.md, comparison.png, results.json "
          f"({results['runs']} runs, {results['wall_time_s']:.0f} s wall, "
          f"{results['cpu_time_s']:.0f} s CPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
