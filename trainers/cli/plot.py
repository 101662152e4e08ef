#!/usr/bin/env python
"""Draw learning-rate schedules (and their momentum) over a run, to a PNG or the terminal.

    mlx-schedules plot                       # every family, one figure
    mlx-schedules plot --schedule one_cycle --param max_lr=0.1 \\
        --param total_steps=1000 --out one_cycle.png
    mlx-schedules plot --config configs/one_cycle_sgd.json --text

One-cycle and cyclical rates are drawn with the momentum that goes with them
(``one_cycle_momentum`` / ``cyclic_momentum`` with matching settings). ``--text`` draws a
character chart and needs no matplotlib.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import textwrap
from typing import Any

import numpy as np

import mlx_schedules as ms
from trainers.cli.args import parse_assignment, script_parser
from trainers.experiments.config import check_float32_numbers
from trainers.experiments.text_chart import text_chart

# Drawn inside another schedule's panel (momentum) or as one of several panels.
_SHOWN_WITH = {"one_cycle_momentum": "one_cycle", "cyclic_momentum": "cyclic_lr"}


def _examples(n: int) -> dict[str, list[Any]]:
    """Example configs of every registered schedule, by name, sized for a run of ``n`` steps.

    An entry is a config, or a ``(title, schedule)`` pair for a schedule that is not data
    (``cyclic_lr`` with a ``scale_fn``).
    """
    decay = math.exp(math.log(0.01) / max(1, n - 1))
    tenth = max(1, n // 10)
    cosine = {"name": "cosine_decay", "init": 0.1, "decay_steps": n - tenth}
    step_up = max(1, n // 8)
    scaled = ms.cyclic_lr(0.004, 0.1, step_up, scale_fn=lambda c: 0.7 ** (c - 1))
    return {
        "constant": [{"name": "constant", "value": 0.1}],
        "exponential_decay": [{"name": "exponential_decay", "init": 0.1, "decay_rate": decay}],
        "step_decay": [{"name": "step_decay", "init": 0.1, "decay_rate": 0.5,
                        "step_size": max(1, n // 5)}],
        "multistep_decay": [{"name": "multistep_decay", "init": 0.1,
                             "milestones": [n // 2, 3 * n // 4], "gamma": 0.1}],
        "piecewise_constant": [{"name": "piecewise_constant",
                                "boundaries": [n // 3, 2 * n // 3], "values": [0.1, 0.03, 0.01]}],
        "piecewise_interpolate": [
            {"name": "piecewise_interpolate", "init": 0.1,
             "boundaries_and_scales": {n // 4: 0.5, n // 2: 0.2, 3 * n // 4: 5.0}},
            {"name": "piecewise_interpolate", "init": 0.1, "interpolate": "cosine",
             "boundaries_and_scales": {n // 4: 0.5, n // 2: 0.2, 3 * n // 4: 5.0}}],
        "inverse_time_decay": [{"name": "inverse_time_decay", "init": 0.1,
                                "decay_steps": tenth, "decay_rate": 1.0}],
        "inverse_sqrt": [{"name": "inverse_sqrt", "init": 0.1, "warmup_steps": tenth}],
        "polynomial_decay": [
            {"name": "polynomial_decay", "init": 0.1, "decay_steps": n, "end": 0.001,
             "power": 2.0},
            {"name": "polynomial_decay", "init": 0.1, "decay_steps": n, "end": 0.001,
             "k_decay": 3.0}],
        "linear_schedule": [{"name": "linear_schedule", "init": 0.1, "end": 0.0, "steps": n}],
        "cosine_decay": [{"name": "cosine_decay", "init": 0.1, "decay_steps": n},
                         {"name": "cosine_decay", "init": 0.1, "decay_steps": n,
                          "k_decay": 3.0}],
        "tanh_decay": [{"name": "tanh_decay", "init": 0.1, "decay_steps": n}],
        "cosine_restarts": [
            {"name": "cosine_restarts", "init": 0.1, "first_decay_steps": max(1, n // 7)},
            {"name": "cosine_restarts", "init": 0.1, "first_decay_steps": max(1, n // 5),
             "t_mul": 1.0, "cycle_limit": 3}],
        "cyclic_exponential_decay": [{"name": "cyclic_exponential_decay", "init": 0.1,
                                      "decay_rate": decay, "cycle_length": max(2, n // 4)}],
        "cyclic_lr": [
            {"name": "cyclic_lr", "base_lr": 0.004, "max_lr": 0.1, "step_size_up": step_up},
            {"name": "cyclic_lr", "base_lr": 0.004, "max_lr": 0.1, "step_size_up": step_up,
             "mode": "triangular2"},
            {"name": "cyclic_lr", "base_lr": 0.004, "max_lr": 0.1, "step_size_up": step_up,
             "mode": "exp_range", "gamma": 0.999 ** (1000 / n)},
            (f"cyclic_lr(base_lr=0.004, max_lr=0.1, step_size_up={step_up},\n"
             "scale_fn=lambda c: 0.7 ** (c - 1))", scaled)],
        "one_cycle": [
            {"name": "one_cycle", "max_lr": 0.1, "total_steps": n},
            {"name": "one_cycle", "max_lr": 0.1, "total_steps": n, "pct_start": 0.5,
             "anneal_strategy": "linear"}],
        "warmup": [{"name": "warmup", "steps": tenth, "schedule": cosine},
                   {"name": "warmup", "steps": 2 * tenth, "shape": "cosine", "schedule": cosine},
                   {"name": "warmup", "steps": 2 * tenth, "shape": "log", "schedule": cosine}],
        "join_schedules": [{"name": "join_schedules", "boundaries": [tenth], "schedules": [
            {"name": "linear_schedule", "init": 0.0, "end": 0.1, "steps": tenth}, cosine]}],
        "power_schedule": [{"name": "power_schedule", "batch_size": 8,
                            "tokens_per_step": 8 * 512, "warmup_steps": tenth,
                            "decay_steps": max(1, n // 10), "total_steps": n}],
        "warmup_stable_decay": [
            {"name": "warmup_stable_decay", "peak": 0.1, "total_steps": n,
             "warmup_steps": tenth, "decay_steps": n // 5},
            {"name": "warmup_stable_decay", "peak": 0.1, "total_steps": n,
             "warmup_steps": 2 * tenth, "decay_steps": n // 5, "warmup_shape": "cosine",
             "decay_shape": "sqrt"}],
        "multiply": [{"name": "multiply", "factors": [
            0.1, {"name": "cosine_decay", "init": 1.0, "decay_steps": n},
            {"name": "cyclic_lr", "base_lr": 0.5, "max_lr": 1.0, "step_size_up": step_up}]}],
        "with_noise": [{"name": "with_noise", "std": 0.15, "start": tenth, "end": n - 2 * tenth,
                        "schedule": cosine}],
        "range_sweep": [{"name": "range_sweep", "min_lr": 1e-5, "max_lr": 1.0, "steps": n}],
    }


def gallery(steps: int) -> list[Any]:
    """An example of every registered schedule (several for some), in the registry's order,
    sized for a run of ``steps``; a registered name without an example is an error.

    Example:
        >>> [c["name"] for c in gallery(100)[:3]]
        ['constant', 'cosine_decay', 'cosine_decay']
    """
    examples = _examples(steps)
    missing = sorted(set(ms.schedule_names()) - set(examples) - set(_SHOWN_WITH))
    if missing:
        raise ValueError(f"no gallery example for {missing}: add one to _examples in "
                         "mlx-schedules plot")
    return [item for name in ms.schedule_names() for item in examples.get(name, [])]


def momentum_for(config: dict[str, Any]) -> dict[str, Any] | None:
    """The momentum schedule that goes with a one-cycle or cyclical rate (else ``None``).

    Example:
        >>> momentum_for({"name": "one_cycle", "max_lr": 0.1, "total_steps": 100})
        {'name': 'one_cycle_momentum', 'total_steps': 100}
    """
    if config.get("name") == "one_cycle":
        keys = ("total_steps", "pct_start", "anneal_strategy", "three_phase")
        return {"name": "one_cycle_momentum", **{k: config[k] for k in keys if k in config}}
    if config.get("name") == "cyclic_lr":
        keys = ("step_size_up", "step_size_down", "mode", "gamma")
        return {"name": "cyclic_momentum", "base_momentum": 0.85, "max_momentum": 0.95,
                **{k: config[k] for k in keys if k in config}}
    return None


def _brief(value: Any) -> str | None:
    """A short text for a config value: nested schedules by name, numbers to 3 digits;
    ``None`` for what is too long to show."""
    if isinstance(value, dict) and "name" in value:
        return f"{value['name']}(..)"
    if isinstance(value, (list, tuple)) and any(isinstance(v, dict) and "name" in v
                                                for v in value):
        return "[" + ", ".join(_brief(v) or "..." for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        text = "{" + ", ".join(f"{k}: {_brief(v)}" for k, v in value.items()) + "}"
        return text if len(text) < 40 else None
    return str(value) if len(repr(value)) < 24 else None


def _title(config: dict[str, Any]) -> str:
    parts = [f"{k}={text}" for k, v in config.items() if k != "name"
             for text in [_brief(v)] if text is not None]
    text = f"{config['name']}(" + ", ".join(parts) + ")"
    # Wrap rather than cut: the options that tell two panels apart (a cyclic mode) come last.
    lines = textwrap.wrap(text, 58)
    return "\n".join(lines[:3]) + (" ...)" if len(lines) > 3 else "")


def default_steps(config: dict[str, Any]) -> int:
    """A run length that shows the whole schedule: its own horizon when it has one."""
    for key in ("total_steps", "steps", "decay_steps"):
        if isinstance(config.get(key), int):
            return config[key] + (0 if key != "decay_steps" else config[key] // 10)
    return 1000


def _parse_param(text: str) -> tuple[str, Any]:
    return parse_assignment(text, "--param", "KEY")


def configs_from_file(path: str) -> list[dict[str, Any]]:
    """Schedule configs in a JSON file: one config, a list, or a train.py config's optimizer."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and "name" in data:
        return [data]
    if isinstance(data, dict) and isinstance(data.get("optimizer"), dict):
        rate = data["optimizer"].get("learning_rate")
        if isinstance(rate, dict):
            return [rate | ({"momentum": data["optimizer"]["momentum"]}
                            if isinstance(data["optimizer"].get("momentum"), dict) else {})]
    raise ValueError(f"{path}: expected a schedule config ({{'name': ...}}), a list of them, or "
                     "a train.py config whose optimizer.learning_rate is a schedule config")


def build_entries(configs: list[Any], steps: int | None,
                  with_momentum: bool) -> list[dict[str, Any]]:
    """Evaluate every config (and its momentum) over the run; raise ValueError on bad ones."""
    entries = []
    for config in configs:
        if isinstance(config, tuple):   # (title, schedule): a schedule that is not data
            title, schedule = config
            grid = np.arange(steps or 1000)
            entries.append({"title": title, "steps": grid, "learning_rate": schedule.values(grid),
                            "momentum": None, "log_y": False})
            continue
        config = dict(config)
        momentum_cfg = config.pop("momentum", None) or (momentum_for(config)
                                                        if with_momentum else None)
        check_float32_numbers(str(config.get("name")), config)
        schedule = ms.from_config(config)
        n = steps or default_steps(config)
        grid = np.arange(n)
        entry = {"title": _title(config), "steps": grid, "learning_rate": schedule.values(grid),
                 "momentum": None, "log_y": config["name"] in ("range_sweep", "lr_range_test")}
        if momentum_cfg is not None:
            entry["momentum"] = ms.from_config(momentum_cfg).values(grid)
        entries.append(entry)
    return entries


def text_preview(entries: list[dict[str, Any]], width: int = 64) -> str:
    """Each schedule as a character chart (rate ``*``, momentum ``o`` on its own chart)."""
    blocks = []
    for e in entries:
        blocks.append(text_chart({"learning rate": e["learning_rate"]}, width=width, height=10,
                                 title=e["title"], log_y=e["log_y"]))
        if e["momentum"] is not None:
            blocks.append(text_chart({"momentum": e["momentum"]}, width=width, height=6,
                                     title="  its momentum"))
    return "\n\n".join(blocks)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = script_parser(__doc__, "mlx-schedules plot")
    p.add_argument("--schedule", help=f"one schedule by name: {', '.join(ms.schedule_names())}")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a parameter of --schedule (VALUE is JSON: 0.1, 1000, true, [1,2])")
    p.add_argument("--config", help="a JSON file: a schedule config, a list of them, or a "
                   "train.py config")
    p.add_argument("--steps", type=int, help="steps to draw (default: the schedule's horizon, "
                   "1000 for the gallery)")
    p.add_argument("--out", default="schedules.png", help="PNG path (default schedules.png)")
    p.add_argument("--text", action="store_true", help="draw in the terminal (no matplotlib)")
    p.add_argument("--no-momentum", action="store_true",
                   help="do not draw the momentum of one-cycle and cyclical rates")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.steps is not None and args.steps < 2:
        print("error: --steps must be >= 2", file=sys.stderr)
        return 2
    try:
        if args.schedule and args.config:
            raise ValueError("give --schedule or --config, not both")
        if args.param and not args.schedule:
            raise ValueError("--param needs --schedule")
        if args.schedule:
            configs = [{"name": args.schedule, **dict(map(_parse_param, args.param))}]
        elif args.config:
            configs = configs_from_file(args.config)
        else:
            configs = gallery(args.steps or 1000)
        steps = args.steps or (None if args.schedule or args.config else 1000)
        entries = build_entries(configs, steps, not args.no_momentum)
    except (ValueError, TypeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.text:
        try:
            print(text_preview(entries))
        except ValueError as e:  # a schedule with no finite value to draw
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0
    from trainers.experiments.plotting import plot_schedules

    try:
        title = "" if len(entries) == 1 else (
            "mlx_schedules: every registered shape (rate solid blue, momentum dashed orange)")
        plot_schedules(entries, args.out, title=title)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({len(entries)} schedule(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
