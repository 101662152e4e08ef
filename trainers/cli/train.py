#!/usr/bin/env python
"""Train one model with one schedule, from a JSON/YAML config or from flags.

    mlx-schedules train                                   # digits, MLP, SGD + 1-cycle
    mlx-schedules train --config configs/one_cycle_sgd.json
    mlx-schedules train --schedule cosine --max-lr 0.1 --steps 1000 --run-dir runs/cos
    mlx-schedules train --schedule one_cycle --max-lr-from runs/range_test/range_test.json
    mlx-schedules train --config c.json --set training.batch_size=128 --set model.dropout=0.1
    mlx-schedules train --schedule cosine --stop-after 300 --run-dir runs/cos  # stop at 300
    mlx-schedules train --resume runs/cos                 # continue a stopped run
    mlx-schedules train --branch runs/wsd/checkpoints/step_00000400 --cooldown 100 \
        --cooldown-shape sqrt --run-dir runs/wsd_cool400      # a decay from any checkpoint

The whole config is checked before anything is loaded or trained, then the data (shapes,
integer class labels from 0, batch size) and the model's memory estimate; a problem stops the
script with exit status 2 and a message naming it, leaving nothing behind. Nothing is written
into the run directory until the trainer has taken it (a directory it refuses, occupied or in
use, is left exactly as it was). The run directory receives ``experiment.json`` (the config),
``config.json`` (the trainer's settings), ``log.jsonl``/``log.csv`` (one row per step: loss,
learning rate and every scheduled hyperparameter, read from the optimizer state; one row per
evaluation), ``checkpoints/``, ``summary.json`` and ``curves.png``.

``--stop-after N`` stops after exactly N updates, evaluating and checkpointing there;
``--resume`` then continues to the same weights and training rows as an uninterrupted run. The
stop's evaluation stays in the log; the finished run's summary and curves leave it out when it
is off the ``eval_every`` grid, so they match the uninterrupted run's.

``--branch CHECKPOINT --cooldown STEPS`` starts a new run in ``--run-dir`` (new or empty) from
that checkpoint of a ``train.py`` run: its weights, optimizer state and data position, then
``STEPS`` more updates whose rate decays (``--cooldown-shape``: linear, cosine or sqrt) from
the rate the original schedule had at that step to 0 (``trainers.experiments.branch``: continuous at
the splice, checked). The original run is only read. The new run's log starts with the
original's rows up to the checkpoint; its ``branch.json`` says where it came from.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from trainers import TrainingInterrupted, list_checkpoints
from trainers.cli.args import add_config_flags, build_config, script_parser
from trainers.cli.messages import (
    fresh_start_refused,
    in_flag_words,
    report_interrupt,
    resume_command,
)
from trainers.experiments.branch import COOLDOWN_SHAPES, branch_config
from trainers.experiments.config import (
    DEFAULT_CONFIG,
    ConfigError,
    load_config_file,
    merge_config,
    validate,
)
from trainers.experiments.datasets import DataError, DatasetUnavailable
from trainers.experiments.models import ModelTooLarge
from trainers.experiments.paths import first_missing, remove_empty_dirs
from trainers.experiments.run import OnStart, prepare_data, read_log, run_training, summarise
from trainers.files import write_json_atomic


def run_rows(config: dict[str, Any], run_dir: str) -> tuple[list[dict], list[dict]]:
    """The run directory's training rows and its evaluations on the ``eval_every`` grid
    (plus the latest one): an evaluation made where ``--stop-after`` stopped is left out
    once the run has gone past it, as an uninterrupted run has none there."""
    train_rows, eval_rows = read_log(run_dir)
    every = config["training"]["eval_every"]
    last = eval_rows[-1]["step"] if eval_rows else None
    return train_rows, [r for r in eval_rows
                        if r["step"] == last or (every and r["step"] % every == 0)]


def finish(config: dict[str, Any], run_dir: str) -> dict[str, Any]:
    """The summary of the run directory's whole log."""
    train_rows, eval_rows = run_rows(config, run_dir)
    previous = {}
    summary_path = os.path.join(run_dir, "summary.json")
    if os.path.isfile(summary_path):
        with open(summary_path, encoding="utf-8") as f:
            previous = json.load(f)
    wall = previous.get("wall_time_s", 0.0) if previous.get("stopped_at") else 0.0
    summary = summarise(train_rows, eval_rows, target=config["training"]["target_accuracy"],
                        wall_time=wall)
    return summary


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = script_parser(__doc__, "mlx-schedules train")
    add_config_flags(p)
    p.add_argument("--overwrite", action="store_true", help="replace a run in --run-dir")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run stopped in RUN_DIR")
    p.add_argument("--stop-after", type=int, metavar="STEPS",
                   help="stop after exactly STEPS updates, counted from the run's start "
                        "(evaluate, checkpoint; continue with --resume)")
    p.add_argument("--branch", metavar="CHECKPOINT",
                   help="start a new run (--run-dir) from this checkpoint of a train.py run, "
                        "with a cooldown (--cooldown)")
    p.add_argument("--cooldown", type=int, metavar="STEPS",
                   help="with --branch: updates of the decay to 0")
    p.add_argument("--cooldown-shape", default="linear", choices=COOLDOWN_SHAPES,
                   help="with --branch: the decay's shape (default linear)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    branch = None
    try:
        if (args.branch is None) != (args.cooldown is None):
            raise ConfigError("--branch and --cooldown go together")
        if args.branch is not None:
            if args.resume or args.stop_after is not None or args.overwrite:
                raise ConfigError("--branch starts a new run: not with --resume, --stop-after "
                                  "or --overwrite")
            if args.run_dir is None:
                raise ConfigError("--branch needs --run-dir (the new run's directory)")
            config, branch = branch_config(args.branch, args.cooldown, args.cooldown_shape,
                                           args.run_dir)
        elif args.resume:
            if not os.path.isdir(args.resume):
                raise ConfigError(f"--resume: run directory {args.resume} does not exist")
            path = os.path.join(args.resume, "experiment.json")
            if not os.path.isfile(path):
                raise ConfigError(f"--resume: {args.resume} holds no experiment.json "
                                  "(not a run directory of mlx-schedules train)")
            config = validate(merge_config(DEFAULT_CONFIG, load_config_file(path)))
            config["output"]["run_dir"] = args.resume
        else:
            config = build_config(args)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    run_dir = config["output"]["run_dir"]
    refused = None if args.resume or args.overwrite else fresh_start_refused(run_dir)
    if refused:
        print(f"error: {refused}", file=sys.stderr)  # before any banner
        return 2
    if args.stop_after is not None:
        found = list_checkpoints(os.path.join(run_dir, "checkpoints")) if args.resume else []
        done = found[-1][0] if found else 0
        if args.stop_after <= done:
            print(f"error: --stop-after {args.stop_after}: expected more than {done} updates "
                  "(the run's progress so far)", file=sys.stderr)
            return 2
    try:  # every problem with the data is found here, before anything is built or written
        data = prepare_data(config)
    except (DataError, DatasetUnavailable, ModelTooLarge) as e:
        print(f"data error: {e}", file=sys.stderr)
        return 2

    opt = config["optimizer"]
    described = (f"{config['model']['kind']} on {config['dataset']['name']} with "
                 f"{opt['name']}, rate {json.dumps(opt.get('learning_rate'))}")
    steps = config["training"]["steps"]

    def write_experiment(event: dict) -> None:
        # a resumed run keeps the experiment.json it started with; a branch is a new run
        if not event["resumed"] or branch is not None:
            write_json_atomic(os.path.join(run_dir, "experiment.json"), config)
        if branch is not None:
            write_json_atomic(os.path.join(run_dir, "branch.json"), branch)
        # the banner, once the trainer owns the run directory (a refusal comes without one)
        if branch is not None:
            print(f"branching from {branch['checkpoint']} at step {event['step']}: "
                  f"{described}, {steps} steps -> {run_dir}")
        elif event["resumed"]:
            print(f"resuming {run_dir} from step {event['step']} of {steps}: {described}")
        else:
            print(f"training {described}, {steps} steps -> {run_dir}")

    created = first_missing(run_dir)  # the folder this run would create, if any
    for name in ("experiment.json", "summary.json"):  # refused now, before the trainer starts
        if os.path.islink(os.path.join(run_dir, name)):
            print(f"error: {os.path.join(run_dir, name)}: it is a symbolic link; files inside "
                  "a run directory are never written through a symbolic link (remove it, or "
                  "choose another --run-dir)", file=sys.stderr)
            return 2
    started = OnStart(write_experiment, owns=("experiment.json", "branch.json", "summary.json",
                                              "curves.png"))
    start = time.perf_counter()
    try:
        session, _ = run_training(config, data=data, resume=bool(args.resume),
                                  overwrite=args.overwrite, stop_after=args.stop_after,
                                  callbacks=(started,), report=True,
                                  branch_from=None if branch is None else branch["checkpoint"])
    except KeyboardInterrupt as e:
        if not started.started:
            raise
        if isinstance(e, TrainingInterrupted) and e.checkpoint is not None:
            # not finished: the summary says where it stopped (and keeps its time)
            summary = finish(config, run_dir)
            summary.update(wall_time_s=summary["wall_time_s"] + time.perf_counter() - start,
                           stopped_at=e.step, interrupted=True)
            write_json_atomic(os.path.join(run_dir, "summary.json"), summary)
        extra = ["--stop-after", str(args.stop_after)] if args.stop_after else []
        return report_interrupt(e, "train", run_dir, extra)
    except (ValueError, RuntimeError, OSError) as e:
        if started.started:
            raise
        # The trainer refused the run directory (occupied, locked by another process, not
        # writable) or the run's settings before training: nothing of this run was written.
        if branch is not None:  # the log copied for the branch: the run never started
            for name in ("log.jsonl", "log.csv"):
                path = os.path.join(run_dir, name)
                if os.path.isfile(path):
                    os.remove(path)
        if created is not None:
            remove_empty_dirs(created)
        print(f"error: {in_flag_words(str(e), run_dir)}", file=sys.stderr)
        return 2
    summary = finish(config, run_dir)
    summary["wall_time_s"] += session["wall_time_s"]
    summary["stopped_at"] = session["stopped_at"]
    write_json_atomic(os.path.join(run_dir, "summary.json"), summary)
    if config["output"]["plots"]:
        try:
            from trainers.experiments.plotting import plot_run

            train_rows, eval_rows = run_rows(config, run_dir)
            plot_run(train_rows, eval_rows, os.path.join(run_dir, "curves.png"),
                     title=f"{opt['name']} + {_rate_name(opt)} on {config['dataset']['name']}")
        except RuntimeError as e:
            print(f"warning: no plots: {e}", file=sys.stderr)
    state = (f"stopped after {session['stopped_at']} steps (continue with "
             f"{resume_command('train', run_dir)})" if session["stopped_at"] else "done")
    print(f"{state}: final test accuracy {summary['final_accuracy']:.4f}, best "
          f"{summary['best_accuracy']:.4f}, steps to {summary['target_accuracy']}: "
          f"{summary['steps_to_target']}, {summary['wall_time_s']:.1f} s")
    return 0


def _rate_name(optimizer: dict[str, Any]) -> str:
    rate = optimizer.get("learning_rate")
    return rate["name"] if isinstance(rate, dict) else f"constant {rate}"


if __name__ == "__main__":
    sys.exit(main())
