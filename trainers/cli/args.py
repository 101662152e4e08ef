"""Command-line flags shared by train.py, compare_schedules.py and lr_range_test.py.

The flags describe a run config (see :mod:`trainers.experiments.config`): defaults, then a config
file,
then ``--set SECTION.KEY=VALUE`` and the shorthand flags, then validation of the whole config.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from mlx_schedules.checks import check_int
from trainers.experiments.config import (
    DEFAULT_CONFIG,
    ConfigError,
    check_field,
    load_config_file,
    merge_config,
    validate,
)
from trainers.experiments.families import FAMILIES, family_configs, family_of

__all__ = ["add_config_flags", "build_config", "parse_assignment", "read_suggested_lr",
           "script_parser"]

_PEAK_KEYS = ("max_lr", "peak", "init", "value")
DEFAULT_FAMILY, DEFAULT_PEAK = "one_cycle", 0.3


def script_parser(doc: str, prog: str | None = None) -> argparse.ArgumentParser:
    r"""A subcommand's argument parser: its docstring's first paragraph is the description,
    the rest (usage examples, notes) the epilog, printed as written; ``prog`` is the command
    as the user types it (``"mlx-schedules train"``).

    Example:
        >>> script_parser("Do a thing.\n\n    python x.py --fast\n").format_help().split()[-3:]
        ['python', 'x.py', '--fast']
    """
    first, _, rest = doc.strip("\n").partition("\n\n")
    # No abbreviations: "--step 20" must not be taken silently as "--steps 20".
    return argparse.ArgumentParser(prog=prog, description=first, allow_abbrev=False,
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=rest or None)


def read_suggested_lr(path: str, family: str | None = None) -> float:
    """The peak a ``range_test.json`` (``mlx-schedules range-test``) suggests for ``family``:
    its ``suggestions_by_schedule[family]`` when the file has one, else its ``suggested_lr``
    (files written before the per-family suggestions, or a family it has no rule for).

    Example:
        >>> import json, tempfile
        >>> with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        ...     json.dump({"suggested_lr": 0.5, "suggestions_by_schedule":
        ...                {"one_cycle": 0.5, "constant": 0.125}}, f)
        >>> read_suggested_lr(f.name, "constant"), read_suggested_lr(f.name, "exponential")
        (0.125, 0.5)
    """
    try:
        with open(path, encoding="utf-8") as f:
            found = json.load(f)
        value = found["suggested_lr"]
        by_schedule = found.get("suggestions_by_schedule")
        if family is not None and isinstance(by_schedule, dict) and family in by_schedule:
            value = by_schedule[family]
    except FileNotFoundError:
        raise ConfigError(f"--max-lr-from: file not found: {path}") from None
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError):
        raise ConfigError(f"--max-lr-from: {path} holds no 'suggested_lr' (write it with "
                          "mlx-schedules range-test)") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 \
            or not math.isfinite(value):
        raise ConfigError(f"--max-lr-from: {path}: the suggested rate for {family or 'the run'} "
                          f"must be a positive number, got {value!r}")
    return float(value)


def parse_assignment(text: str, flag: str, form: str) -> tuple[str, Any]:
    """``KEY=VALUE`` from a command-line flag; VALUE is JSON, or a plain string if not."""
    if "=" not in text:
        raise ConfigError(f"{flag} expects {form}=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        return key.strip(), json.loads(raw)
    except json.JSONDecodeError:
        return key.strip(), raw


def _set_dotted(config: dict, assignment: str) -> None:
    path, value = parse_assignment(assignment, "--set", "SECTION.KEY")
    keys = path.split(".")
    node = config
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {path}: {key} is not a section")
    node[keys[-1]] = value


def _with_peak(rate: Any, peak: float) -> Any:
    """The rate config with its peak replaced (a number, or the schedule's peak parameter)."""
    if not isinstance(rate, dict):
        return peak
    for key in _PEAK_KEYS:
        if key in rate:
            scaled = dict(rate)
            if rate["name"] == "cyclic_lr" and "base_lr" in rate:  # keep the cycle's ratio
                scaled["base_lr"] = rate["base_lr"] * peak / rate["max_lr"]
            scaled[key] = peak
            return scaled
    raise ConfigError(f"--max-lr: cannot find the peak of schedule {rate.get('name')!r} "
                      f"(looked for {list(_PEAK_KEYS)})")


def build_config(args: argparse.Namespace) -> dict[str, Any]:
    """Defaults, then the config file, then the flags; validated. Raises one ConfigError
    naming every wrong field (unknown names and wrong values together)."""
    user: dict[str, Any] = load_config_file(args.config) if args.config else {}
    problems: list[str] = []  # reported all at once, by validate
    config = merge_config(DEFAULT_CONFIG, user, errors=problems)
    flags = {
        ("dataset", "name"): args.dataset, ("dataset", "path"): args.data_path,
        ("dataset", "cache_dir"): args.cache_dir, ("model", "kind"): args.model,
        ("training", "steps"): args.steps, ("training", "batch_size"): args.batch_size,
        ("training", "seed"): args.seed, ("output", "run_dir"): args.run_dir,
        ("training", "log_every"): getattr(args, "log_every", None),
    }
    for (section, key), value in flags.items():
        if value is not None:
            config[section][key] = value
    if args.data_path and not args.dataset:
        config["dataset"]["name"] = "npz"
    if args.no_plots:
        config["output"]["plots"] = False
    for assignment in args.set:
        _set_dotted(config, assignment)
    config = merge_config(DEFAULT_CONFIG, config, errors=problems)  # unknown keys from --set

    peak = getattr(args, "max_lr", None)
    user_optimizer = "optimizer" in user or any(s.startswith("optimizer.") for s in args.set)
    schedule = getattr(args, "schedule", None)
    if getattr(args, "max_lr_from", None):
        # The peak suggested for the family this run trains (--schedule, else the config's).
        trained = schedule or (family_of(config["optimizer"]) if user_optimizer
                               else DEFAULT_FAMILY)
        peak = read_suggested_lr(args.max_lr_from, trained)
    if args.optimizer:
        config["optimizer"]["name"] = args.optimizer
    try:
        if schedule or not user_optimizer:
            # A family sized to the run; the default config's one-cycle follows --steps.
            family = schedule or DEFAULT_FAMILY
            if family not in FAMILIES:
                raise ConfigError(f"--schedule: unknown family {family!r}; valid families are "
                                  f"{list(FAMILIES)} (any mlx_schedules schedule works in a "
                                  "config)")
            check_field("training.steps", lambda name, value: check_int(name, value, minimum=8),
                        config["training"]["steps"])
            chosen = family_configs(family, peak or DEFAULT_PEAK, config["training"]["steps"])
            if config["optimizer"]["name"] != "SGD":
                chosen.pop("momentum")  # the families' momentum is SGD's
            config["optimizer"] = {"name": config["optimizer"]["name"], **chosen}
        elif peak is not None:
            config["optimizer"]["learning_rate"] = _with_peak(
                config["optimizer"]["learning_rate"], peak)
    except ConfigError as e:  # the rest of the config is still checked
        problems += e.problems
    return validate(config, found=problems)


def add_config_flags(p: argparse.ArgumentParser, *, schedule: bool = True) -> None:
    """The flags that describe a run config."""
    p.add_argument("--config", help="JSON (or YAML with pyyaml) config; flags override it")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override any config field (VALUE is JSON)")
    p.add_argument("--dataset",
                   help="digits (default), mnist5k, mnist, fashion_mnist, cifar10, npz")
    p.add_argument("--data-path", help="a .npz with x_train, y_train, x_test, y_test")
    p.add_argument("--cache-dir", help="cache root of the MNIST/Fashion-MNIST/CIFAR-10 archives "
                   "(default ~/.cache/mlx_schedules; fill it with download_data.py)")
    p.add_argument("--model", help="mlp (default) or cnn")
    p.add_argument("--optimizer", help="any mlx.optimizers class name (default SGD)")
    p.add_argument("--steps", type=int, help="optimizer updates")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--log-every", type=int, metavar="N",
                   help="updates per block of log rows; the progress display is refreshed "
                        "with each block (default 50)")
    p.add_argument("--run-dir", help="output directory")
    if schedule:
        p.add_argument("--schedule",
                       help=f"a schedule family sized to the run: {', '.join(FAMILIES)}")
        p.add_argument("--max-lr", type=float, help="the peak rate of the schedule")
        p.add_argument("--max-lr-from", metavar="RANGE_TEST_JSON",
                       help="take the peak rate from range-test's range_test.json: the one it "
                            "suggests for this run's schedule family")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
