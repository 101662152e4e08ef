#!/usr/bin/env python
"""The learning-rate range test (Smith 2017) on a run config: sweep the rate, plot the loss.

    mlx-schedules range-test                              # digits, MLP, SGD
    mlx-schedules range-test --config configs/one_cycle_sgd.json --run-dir runs/rt
    mlx-schedules range-test --for constant                # the peak for a constant rate
    mlx-schedules train --schedule one_cycle --max-lr-from runs/range_test/range_test.json

The rate rises geometrically from ``--min-lr`` to ``--max-lr`` over ``--sweep-steps`` updates
(``trainers.lr_range_test``: the trainer's compiled step, rates read back from the optimizer
state), stopping early when the loss diverges. Other scheduled hyperparameters (a one-cycle
momentum, say) are held at their first value during the sweep. Three rules read a rate off the
smoothed curve (``trainers.lr_finder``): ``valley`` (fastai's default, ours too), ``steepest``
and ``minimum/10``; and a peak per schedule family, since a 1-cycle, a cosine decay and a
constant rate want different peaks (``trainers.lr_finder.schedule_suggestions``: from the
extremum ``x`` of the curve: ``x/3`` for 1-cycle and triangular, ``x/10`` for a constant
rate, for a decaying one the constant rate over the schedule's mean fraction of its peak
(``x/5`` for a cosine, ``x/2.15`` for the exponential decay, at most ``x/2``), ``3x`` for
schedule-free; with an Adam-family optimizer the valley rate for 1-cycle and triangular, half
of it for constant and decaying schedules, ``3x`` valley for schedule-free). ``--for
SCHEDULE`` picks the family reported (default: the config's schedule; 1-cycle for the default
config). ``--seeds N``
repeats the sweep N times (training seeds seed, seed+1, ...: other initial weights and data
order) and reports each rule's median and band (lowest to highest). Writes ``range_test.json``
(the first sweep's curve, ``suggested_lr`` = the peak for the ``--for`` schedule (median over
the seeds), ``suggested_for``, ``suggestions_by_schedule`` (every family's peak),
``suggestions`` (the three rules), ``spread``, ``min_loss_lr``, ``steepest_lr``) and
``range_test.png`` (each rule's rate, its band, every sweep's curve), and prints the suggested
peak with the ``mlx-schedules train`` line that uses it (``--max-lr-from`` reads the family it
trains).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys

import numpy as np

from trainers.cli.args import add_config_flags, build_config, script_parser
from trainers.experiments.config import ConfigError
from trainers.experiments.datasets import DataError, DatasetUnavailable
from trainers.experiments.families import FAMILIES, family_of
from trainers.experiments.models import ModelTooLarge
from trainers.experiments.run import prepare_data, range_test
from trainers.files import write_json_atomic
from trainers.lr_finder import (
    SCHEDULE_KINDS,
    SUGGESTIONS,
    is_adaptive,
    schedule_suggestions,
    suggest_lrs,
)

RULE_COLORS = {"valley": "tab:green", "steepest": "tab:orange", "minimum/10": "tab:red"}


def sweep_seeds(config: dict, data: dict, args: argparse.Namespace) -> dict:
    """One sweep per seed (``training.seed`` + 0, 1, ...); the first one's curve, every
    rule's rate (median over the seeds) and, with several seeds, each rule's band."""
    sweeps = []
    for i in range(args.seeds):
        seeded = copy.deepcopy(config)
        seeded["training"]["seed"] = config["training"]["seed"] + i
        one = range_test(seeded, min_lr=args.min_lr, max_lr=args.max_lr,
                         steps=args.sweep_steps, smoothing=args.smoothing, data=data)
        one["suggestions"] = suggest_lrs(one["learning_rates"], one["smoothed_losses"],
                                         skip_start=args.sweep_steps // 10)
        one["suggestions_by_schedule"] = schedule_suggestions(
            one["learning_rates"], one["smoothed_losses"],
            adaptive=is_adaptive(config["optimizer"]["name"]),
            skip_start=args.sweep_steps // 10)
        sweeps.append(one)
    result = dict(sweeps[0])
    spread = {}
    if args.seeds > 1:
        for rule in SUGGESTIONS:
            values = [s["suggestions"][rule] for s in sweeps]
            spread[rule] = {"values": values, "median": float(np.median(values)),
                            "low": min(values), "high": max(values)}
        result["suggestions"] = {rule: spread[rule]["median"] for rule in SUGGESTIONS}
        result["min_loss_lr"] = float(np.median([s["min_loss_lr"] for s in sweeps]))
        result["steepest_lr"] = result["suggestions"]["steepest"]
        result["suggestions_by_schedule"] = {
            family: float(np.median([s["suggestions_by_schedule"][family] for s in sweeps]))
            for family in SCHEDULE_KINDS}
        result["sweeps"] = [{k: s[k] for k in ("learning_rates", "smoothed_losses",
                                               "suggestions", "suggestions_by_schedule",
                                               "diverged_at")} for s in sweeps]
    result["suggested_for"] = args.schedule_for
    result["suggested_lr"] = result["suggestions_by_schedule"][args.schedule_for]
    result["spread"] = spread
    result["seeds"] = [config["training"]["seed"] + i for i in range(args.seeds)]
    return result


def plot_suggestions(result: dict, path: str, *, title: str) -> None:
    """Loss against rate (log x): every sweep's smoothed curve, each rule's rate as a line
    and, with several seeds, its band (lowest to highest) as a shaded span."""
    from trainers.experiments.plotting import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    ax.plot(result["learning_rates"], result["losses"], color="tab:gray", alpha=0.4, lw=0.8,
            label="loss per step (first sweep)")
    for i, sweep in enumerate(result.get("sweeps") or [result]):
        ax.plot(sweep["learning_rates"], sweep["smoothed_losses"], color="tab:blue",
                lw=1.8 if i == 0 else 0.9, alpha=1.0 if i == 0 else 0.5,
                label="smoothed loss" if i == 0 else None)
    for rule in SUGGESTIONS:
        color, rate = RULE_COLORS[rule], result["suggestions"][rule]
        ax.axvline(rate, color=color, ls="--", label=f"{rule}: {rate:.3g}")
        band = result["spread"].get(rule)
        if band:
            ax.axvspan(band["low"], band["high"], color=color, alpha=0.15)
    ax.set_xscale("log")
    finite = np.asarray([s for s in result["smoothed_losses"] if math.isfinite(s)])
    if finite.size:
        ax.set_ylim(0.0, min(finite.max(), 3 * finite[0]) * 1.1)
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = script_parser(__doc__, "mlx-schedules range-test")
    add_config_flags(p, schedule=False)
    p.add_argument("--min-lr", type=float, default=1e-4, help="sweep start (default 1e-4)")
    p.add_argument("--max-lr", type=float, default=10.0, help="sweep end (default 10)")
    p.add_argument("--sweep-steps", type=int, default=200, help="sweep length (default 200)")
    p.add_argument("--seeds", type=int, default=1,
                   help="repeat the sweep over this many seeds and report the spread (default 1)")
    p.add_argument("--for", dest="schedule_for", choices=list(SCHEDULE_KINDS),
                   metavar="SCHEDULE",
                   help="the schedule family whose peak is suggested: "
                        f"{', '.join(SCHEDULE_KINDS)} (default: the config's schedule, "
                        "one_cycle for the default config)")
    p.add_argument("--smoothing", type=float, default=0.98,
                   help="EMA factor of the loss curve (default 0.98, the trainer's; it lags a "
                   "short sweep by ~50 updates, so the minimum sits late)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if not 0 < args.min_lr < args.max_lr:
            raise ConfigError(f"--min-lr/--max-lr: need 0 < min < max, got {args.min_lr}, "
                              f"{args.max_lr}")
        if not 0 <= args.smoothing < 1:
            raise ConfigError(f"--smoothing: need 0 <= smoothing < 1, got {args.smoothing}")
        if args.seeds < 1:
            raise ConfigError(f"--seeds: need >= 1, got {args.seeds}")
        if args.sweep_steps < 2:
            raise ConfigError(f"--sweep-steps: need >= 2, got {args.sweep_steps}")
        if args.run_dir is None:
            args.run_dir = "runs/range_test"
        config = build_config(args)
        if args.schedule_for is None:
            args.schedule_for = family_of(config["optimizer"]) or "one_cycle"
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    try:
        data = prepare_data(config)
    except (DataError, DatasetUnavailable, ModelTooLarge) as e:
        print(f"data error: {e}", file=sys.stderr)
        return 2
    out_dir = config["output"]["run_dir"]
    os.makedirs(out_dir, exist_ok=True)
    result = sweep_seeds(config, data, args)
    result["config"] = config
    path = os.path.join(out_dir, "range_test.json")
    write_json_atomic(path, result)
    if config["output"]["plots"]:
        try:
            plot_suggestions(result, os.path.join(out_dir, "range_test.png"),
                             title=f"LR range test: {config['model']['kind']} on "
                                   f"{config['dataset']['name']}, {result['optimizer']['name']}")
        except RuntimeError as e:
            print(f"warning: no plot: {e}", file=sys.stderr)
    stop = (f"diverged at update {result['diverged_at']}" if result["diverged_at"] is not None
            else "did not diverge")
    print(f"range test ({len(result['losses'])} updates, {stop}): smoothed loss lowest at "
          f"lr {result['min_loss_lr']:.4g}; steepest descent at {result['steepest_lr']:.4g}")
    for rule in SUGGESTIONS:
        band = result["spread"].get(rule)
        spread = (f" (band {band['low']:.4g} .. {band['high']:.4g} over {args.seeds} seeds)"
                  if band else "")
        print(f"  {rule}: {result['suggestions'][rule]:.4g}{spread}")
    print("peak per schedule family: " + ", ".join(
        f"{family} {rate:.3g}" for family, rate in result["suggestions_by_schedule"].items()))
    family = args.schedule_for
    print(f"suggested max_lr for {family}: {result['suggested_lr']:.4g}")
    if family in FAMILIES:
        print(f"use it: mlx-schedules train --schedule {family} --max-lr-from {path}")
    else:  # a family `train` does not build (wsd, power, ...): the number is the peak
        print(f"use it as the peak of your {family} schedule (config learning_rate)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
