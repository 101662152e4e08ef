#!/usr/bin/env python
"""The learning-rate range test (Smith 2017) on a run config: sweep the rate, plot the loss.

    python scripts/lr_range_test.py                              # digits, MLP, SGD
    python scripts/lr_range_test.py --config configs/one_cycle_sgd.json --run-dir runs/rt
    python scripts/train.py --schedule one_cycle --max-lr-from runs/range_test/range_test.json

The rate rises geometrically from ``--min-lr`` to ``--max-lr`` over ``--sweep-steps`` updates
(``trainers.lr_range_test``: the trainer's compiled step, rates read back from the optimizer
state), stopping early when the loss diverges. Other scheduled hyperparameters (a one-cycle
momentum, say) are held at their first value during the sweep. Writes ``range_test.json``
(curve, ``suggested_lr`` = rate at the smoothed loss's minimum / 10, ``min_loss_lr``,
``steepest_lr``) and ``range_test.png``, and prints the suggested ``max_lr``.
"""

from __future__ import annotations

import argparse
import os
import sys

from experiments.cli import add_config_flags, build_config, script_parser
from experiments.config import ConfigError
from experiments.datasets import DataError, DatasetUnavailable
from experiments.files import write_json
from experiments.models import ModelTooLarge
from experiments.run import prepare_data, range_test


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = script_parser(__doc__)
    add_config_flags(p, schedule=False)
    p.add_argument("--min-lr", type=float, default=1e-4, help="sweep start (default 1e-4)")
    p.add_argument("--max-lr", type=float, default=10.0, help="sweep end (default 10)")
    p.add_argument("--sweep-steps", type=int, default=200, help="sweep length (default 200)")
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
        if args.sweep_steps < 2:
            raise ConfigError(f"--sweep-steps: need >= 2, got {args.sweep_steps}")
        if args.run_dir is None:
            args.run_dir = "runs/range_test"
        config = build_config(args)
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
    result = range_test(config, min_lr=args.min_lr, max_lr=args.max_lr, steps=args.sweep_steps,
                        smoothing=args.smoothing, data=data)
    result["config"] = config
    path = os.path.join(out_dir, "range_test.json")
    write_json(path, result)
    if config["output"]["plots"]:
        try:
            from experiments.plotting import plot_range_test

            plot_range_test(result["learning_rates"], result["losses"],
                            result["smoothed_losses"], os.path.join(out_dir, "range_test.png"),
                            suggested_lr=result["suggested_lr"],
                            min_loss_lr=result["min_loss_lr"],
                            title=f"LR range test: {config['model']['kind']} on "
                                  f"{config['dataset']['name']}, {result['optimizer']['name']}")
        except RuntimeError as e:
            print(f"warning: no plot: {e}", file=sys.stderr)
    stop = (f"diverged at update {result['diverged_at']}" if result["diverged_at"] is not None
            else "did not diverge")
    print(f"range test ({len(result['losses'])} updates, {stop}): smoothed loss lowest at "
          f"lr {result['min_loss_lr']:.4g}; steepest descent at {result['steepest_lr']:.4g}")
    print(f"suggested max_lr: {result['suggested_lr']:.4g}")
    print(f"use it: python scripts/train.py --schedule one_cycle --max-lr-from {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
