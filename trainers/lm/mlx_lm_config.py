"""mlx-lm's fine-tuning command line and YAML config (``mlx_lm.lora``) read into settings.

``mlx-schedules lora`` accepts an ``mlx_lm.lora`` command line unchanged: its flags are parsed
by mlx-lm's own parser (``mlx_lm.lora.build_parser``), with our additions on top; ``-c FILE``
reads a YAML config with mlx-lm's YAML loader; the command line wins over the file and the file
over mlx-lm's ``CONFIG_DEFAULTS``, as in mlx-lm. Then every setting is checked before anything
is loaded or written: a flag or key we cannot honour, or a value mlx-lm would fail on later,
raises :class:`LoraConfigError` naming it (the command exits with status 2).

What each flag and key does here is listed in ``docs/lora-flags.md``.

Example:
    >>> import tempfile
    >>> data = tempfile.mkdtemp()
    >>> settings = resolve(["--model", "m", "--train", "--data", data, "--iters", "20"])
    >>> settings["iters"], settings["fine_tune_type"], settings["lora_parameters"]["rank"]
    (20, 'lora', 8)
    >>> resolve(["--train", "--model", "m", "--data", data, "--num-layers", "0"])
    Traceback (most recent call last):
    ...
    trainers.lm.mlx_lm_config.LoraConfigError: --num-layers must be -1 (every block) or an int >= 1, got 0
"""  # noqa: E501

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["EXTRA_DEFAULTS", "FEATURE_KEYS", "LoraConfigError", "build_optimizer",
           "build_parser", "build_schedule", "mlx_lm_defaults", "optimizer_class", "resolve"]

#: our additions (flags and YAML keys), with their defaults
EXTRA_DEFAULTS: dict[str, Any] = {
    "schedule": None, "epochs": None, "patience": None, "all_assistant_turns": False,
    "restore_best": False, "ema": None, "bf16": False, "run_dir": None,
}
#: mlx-lm's data keys a YAML config may rename (read for local jsonl files too)
FEATURE_KEYS = {"prompt_feature": "prompt", "completion_feature": "completion",
                "chat_feature": "messages", "text_feature": "text"}
#: keys mlx-lm 0.32 reads that we cannot honour, and why
REFUSED = {
    "hf_dataset": "Hugging Face datasets are not read here; save the splits as train.jsonl, "
                  "valid.jsonl and test.jsonl in a folder and pass it as --data",
}
#: keys of the command line that are not settings of the run
_COMMAND_ONLY = ("config", "schedule_param", "resume", "overwrite", "quiet")
_LR_SCHEDULE_KEYS = {"name", "arguments", "warmup", "warmup_init"}
_LORA_KEYS = {"rank", "scale", "dropout", "keys"}
_TRACKERS = ("wandb", "tensorboard", "mlflow")
_PEAK_NAMES = ("init", "max_lr", "peak", "value")
_LENGTH_NAMES = ("decay_steps", "total_steps", "steps", "first_decay_steps")


class LoraConfigError(ValueError):
    """A flag or config key we cannot honour, or a bad value; the message names it."""


def mlx_lm_defaults() -> dict[str, Any]:
    """A copy of mlx-lm's ``CONFIG_DEFAULTS`` (the values of flags and keys not given)."""
    from mlx_lm.lora import CONFIG_DEFAULTS

    return json.loads(json.dumps(CONFIG_DEFAULTS))


def build_parser(prog: str = "mlx-schedules lora", description: str | None = None,
                 epilog: str | None = None) -> argparse.ArgumentParser:
    """mlx-lm's own ``mlx_lm.lora`` parser, with no abbreviations, ``--optimizer`` open to
    every ``mlx.optimizers`` class, and our flags added."""
    from mlx_lm.lora import build_parser as mlx_lm_parser

    p = mlx_lm_parser()
    p.prog = prog
    if description:
        p.description = description
    p.epilog = epilog
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    # "--iter 5" must not be taken silently as "--iters 5"
    p.allow_abbrev = False
    # what differs here from mlx-lm's help texts (docs/lora-flags.md has every flag)
    helps = {
        "optimizer": "any mlx.optimizers class, by name in any case (adam, adamw, sgd, "
                     "adafactor, muon, lion, ...); its arguments from optimizer_config",
        "report_to": "comma-separated trackers: wandb, tensorboard, mlflow",
        "data": "a folder with train.jsonl, valid.jsonl (optional) and test.jsonl (for "
                "--test); Hugging Face dataset names are refused",
        "clear_cache_threshold": "cap MLX's buffer cache at this size (e.g. 2GB)",
        "iters": "batches to train on (iters // grad-accumulation-steps optimizer updates)",
        "learning_rate": "the constant rate, or the peak of --schedule",
        "save_every": "write the adapters and a checkpoint every N batches",
    }
    for action in p._actions:  # argparse keeps its actions only in this attribute
        if action.dest == "optimizer":
            action.choices = None
        if action.dest in helps:
            action.help = helps[action.dest]
    ours = p.add_argument_group("mlx-schedules additions")
    add = ours.add_argument
    add("--schedule", metavar="NAME", help="any mlx_schedules schedule by name (one_cycle, "
        "warmup_stable_decay, cosine_decay, ...); its rate and length default to "
        "--learning-rate and the number of optimizer updates")
    add("--schedule-param", action="append", metavar="KEY=VALUE",
        help="an argument of --schedule (VALUE is JSON), repeatable")
    add("--epochs", type=int, help="passes over the training data (with --iters: whichever "
        "ends first)")
    add("--patience", type=int, metavar="N", help="early stopping: stop after N evaluations "
        "without a lower validation loss")
    add("--all-assistant-turns", action="store_true", default=None,
        help="train on every assistant turn of a chat and nothing else (mlx-lm's "
             "--mask-prompt trains on the last message only)")
    add("--restore-best", action="store_true", default=None,
        help="end with the weights of the best validation loss")
    add("--ema", type=float, metavar="DECAY", help="keep an average of the weights; "
        "the adapters written are the average")
    add("--bf16", action="store_true", default=None,
        help="bfloat16 compute on float32 master weights")
    add("--run-dir", help="our run directory: logs, verified checkpoints, best/ (default "
        "ADAPTER_PATH/run)")
    add("--resume", action="store_true", help="continue the run in the run directory exactly "
        "(same command line)")
    add("--overwrite", action="store_true", help="replace a run in the run directory")
    add("--quiet", action="store_true", help="no console report")
    return p


def _flag(key: str) -> str:
    """How the user wrote a setting: its flag, or its YAML key."""
    flags = {"resume_adapter_file", "adapter_path", "learning_rate", "steps_per_report",
             "steps_per_eval", "save_every", "test_batches", "max_seq_length", "num_layers",
             "batch_size", "val_batches", "grad_accumulation_steps", "fine_tune_type",
             "clear_cache_threshold", "report_to", "project_name", "mask_prompt",
             "grad_checkpoint", "trust_remote_code", "iters", "seed", "model", "data",
             "optimizer", "train", "test", *EXTRA_DEFAULTS}
    return "--" + key.replace("_", "-") if key in flags else f"{key} (config)"


def _load_yaml(path: str) -> dict[str, Any]:
    import yaml
    from mlx_lm.lora import yaml_loader  # mlx-lm's loader: reads 1e-5 as a float

    try:
        with open(path, encoding="utf-8") as f:
            loaded = yaml.load(f, yaml_loader)
    except FileNotFoundError:
        raise LoraConfigError(f"-c {path}: no such file") from None
    except yaml.YAMLError as e:
        raise LoraConfigError(f"-c {path}: not valid YAML ({e})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise LoraConfigError(f"-c {path}: expected a mapping of keys to values, got "
                              f"{type(loaded).__name__}")
    return loaded


def _schedule_from_flags(name: str | None, params: list[str] | None,
                         base: Any) -> dict[str, Any] | None:
    if name is None and not params:
        return base
    config = dict(base) if isinstance(base, dict) and name is None else {}
    if name is not None:
        config["name"] = name
    if "name" not in config:
        raise LoraConfigError("--schedule-param needs --schedule NAME (or a schedule: "
                              "mapping in the config)")
    for text in params or []:
        if "=" not in text:
            raise LoraConfigError(f"--schedule-param expects KEY=VALUE, got {text!r}")
        key, raw = text.split("=", 1)
        try:
            config[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            config[key.strip()] = raw
    return config


def resolve(argv: list[str] | None, parser: argparse.ArgumentParser | None = None
            ) -> dict[str, Any]:
    """The settings of an ``mlx_lm.lora`` command line (mlx-lm's flags, ``-c`` YAML, our
    additions): command line over config file over mlx-lm's defaults, checked.

    The result holds every key of mlx-lm's ``CONFIG_DEFAULTS``, the data feature keys,
    :data:`EXTRA_DEFAULTS`, ``explicit`` (the keys the user set) and the command's own
    ``resume``, ``overwrite`` and ``quiet``.

    Raises:
        LoraConfigError: an unknown or refused key, or a bad value (names it).
        SystemExit: argparse's exit (status 2) for an unknown flag or a malformed value.
    """
    parser = parser or build_parser()
    args = vars(parser.parse_args(argv))
    command = {k: args.pop(k) for k in _COMMAND_ONLY}
    defaults = mlx_lm_defaults()
    known = (set(defaults) | set(FEATURE_KEYS) | set(EXTRA_DEFAULTS)) - {"config"}
    config = _load_yaml(command["config"]) if command["config"] else {}
    for key in config:
        if key in REFUSED:
            raise LoraConfigError(f"{key} (config): {REFUSED[key]}")
        if key not in known:
            raise LoraConfigError(
                f"{key} (config): not a key of mlx_lm.lora 0.32 nor of ours; known keys: "
                f"{sorted(known)}")
    # mlx-lm gives --clear-cache-threshold and --trust-remote-code a default of their own, so
    # its config value never applies there; a value given in the file applies here.
    for key, default in (("clear_cache_threshold", 0), ("trust_remote_code", False)):
        if args.get(key) == default and key in config:
            args[key] = None
    own_defaults = (("clear_cache_threshold", 0), ("trust_remote_code", False))
    explicit = {k for k, v in args.items()
                if v is not None and (k, v) not in own_defaults} | set(config)
    args["schedule"] = _schedule_from_flags(args["schedule"], command["schedule_param"],
                                            config.get("schedule"))
    settings: dict[str, Any] = {}
    for key in sorted(known):
        value = args.get(key)
        if value is None:
            value = config.get(key)
        if value is None:
            value = defaults.get(key, EXTRA_DEFAULTS.get(key))
        settings[key] = value
    settings["config"] = command["config"]
    settings["explicit"] = sorted(explicit - {"config"})
    check(settings)
    settings.update(resume=command["resume"], overwrite=command["overwrite"],
                    quiet=command["quiet"])
    return settings


# ---------------------------------------------------------------------------------- checks
def _int(settings: dict, key: str, minimum: int, *, allow: tuple = (),
         optional: bool = False, what: str | None = None) -> None:
    value = settings[key]
    if optional and value is None:
        return
    if value in allow and not isinstance(value, bool):
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        bound = what or f"an int >= {minimum}"
        raise LoraConfigError(f"{_flag(key)} must be {bound}, got {value!r}")


def _real(name: str, value: Any, *, low: float, high: float | None = None,
          open_low: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and \
        math.isfinite(value) and (value > low if open_low else value >= low) and \
        (high is None or value < high)
    if not ok:
        bound = f"{'>' if open_low else '>='} {low:g}" + (f" and < {high:g}" if high else "")
        raise LoraConfigError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


def _bool(settings: dict, key: str) -> None:
    if not isinstance(settings[key], bool):
        raise LoraConfigError(f"{_flag(key)} must be true or false, got {settings[key]!r}")


def check(settings: dict[str, Any]) -> None:
    """Check every setting mlx-lm and we read (raises :class:`LoraConfigError`)."""
    for key in ("train", "test", "mask_prompt", "grad_checkpoint", "trust_remote_code",
                "all_assistant_turns", "restore_best", "bf16"):
        _bool(settings, key)
    if not (settings["train"] or settings["test"]):
        raise LoraConfigError("give --train, --test or both (as mlx_lm.lora: 'Must provide "
                              "at least one of --train or --test')")
    for key in ("model", "data", "adapter_path"):
        if not isinstance(settings[key], str) or (key != "adapter_path" and not settings[key]):
            raise LoraConfigError(f"{_flag(key)} must be a path (or a repository id for "
                                  f"--model), got {settings[key]!r}")
    if settings["train"] and not settings["adapter_path"]:
        raise LoraConfigError("--adapter-path must name a folder to write the adapters to")
    if not os.path.isdir(settings["data"]):
        raise LoraConfigError(
            f"--data {settings['data']}: not a local folder. Hugging Face datasets by name are "
            "not read here: save the splits as train.jsonl, valid.jsonl and test.jsonl in a "
            "folder and pass that folder")
    if settings["fine_tune_type"] not in ("lora", "dora", "full"):
        raise LoraConfigError(f"--fine-tune-type must be lora, dora or full, got "
                              f"{settings['fine_tune_type']!r}")
    _int(settings, "seed", 0)
    _int(settings, "num_layers", 1, allow=(-1,), what="-1 (every block) or an int >= 1")
    _int(settings, "batch_size", 1)
    _int(settings, "iters", 1)
    _int(settings, "val_batches", 1, allow=(-1,), what="-1 (the whole set) or an int >= 1")
    _int(settings, "test_batches", 1, allow=(-1,), what="-1 (the whole set) or an int >= 1")
    _int(settings, "steps_per_report", 1)
    _int(settings, "steps_per_eval", 1)
    _int(settings, "save_every", 1)
    _int(settings, "max_seq_length", 2)
    _int(settings, "grad_accumulation_steps", 1)
    _int(settings, "clear_cache_threshold", 0)
    _int(settings, "epochs", 1, optional=True)
    _int(settings, "patience", 0, optional=True)
    if settings["train"] and settings["epochs"] is None and \
            settings["iters"] < settings["grad_accumulation_steps"]:
        raise LoraConfigError(f"--iters {settings['iters']} gives no optimizer update of "
                              f"--grad-accumulation-steps {settings['grad_accumulation_steps']}")
    _real("--learning-rate", settings["learning_rate"], low=0.0, open_low=True)
    if settings["ema"] is not None:
        _real("--ema", settings["ema"], low=0.0, high=1.0)
    if settings["resume_adapter_file"] is not None and \
            not os.path.isfile(str(settings["resume_adapter_file"])):
        raise LoraConfigError(f"--resume-adapter-file {settings['resume_adapter_file']}: "
                              "no such file")
    _check_lora_parameters(settings)
    _check_lr_schedule(settings["lr_schedule"])
    if settings["lr_schedule"] is not None and settings["schedule"] is not None:
        raise LoraConfigError("give lr_schedule (mlx-lm's) or --schedule / schedule (ours), "
                              "not both")
    if settings["schedule"] is not None and not isinstance(settings["schedule"], dict):
        raise LoraConfigError(f"schedule (config) must be a mapping with a name, got "
                              f"{settings['schedule']!r}")
    _check_report_to(settings)
    if settings["project_name"] is not None and not isinstance(settings["project_name"], str):
        raise LoraConfigError(f"--project-name must be a string, got "
                              f"{settings['project_name']!r}")
    for key in FEATURE_KEYS:
        if settings[key] is not None and (not isinstance(settings[key], str)
                                          or not settings[key]):
            raise LoraConfigError(f"{key} (config) must be a non-empty string, got "
                                  f"{settings[key]!r}")
    if settings["mask_prompt"] and settings["all_assistant_turns"]:
        raise LoraConfigError("--mask-prompt trains on the last message, --all-assistant-turns "
                              "on every assistant turn: give one of them")
    optimizer_class(settings["optimizer"])
    if not isinstance(settings["optimizer_config"], dict) or not all(
            isinstance(v, dict) for v in settings["optimizer_config"].values()):
        raise LoraConfigError("optimizer_config (config) must map optimizer names to mappings "
                              f"of their arguments, got {settings['optimizer_config']!r}")
    if settings["run_dir"] is not None and not isinstance(settings["run_dir"], str):
        raise LoraConfigError(f"--run-dir must be a path, got {settings['run_dir']!r}")


def _check_lora_parameters(settings: dict[str, Any]) -> None:
    lora = settings["lora_parameters"]
    if settings["fine_tune_type"] == "full":
        return  # mlx-lm sets them aside for full fine-tuning
    if not isinstance(lora, dict):
        raise LoraConfigError(f"lora_parameters (config) must be a mapping, got {lora!r}")
    unknown = sorted(set(lora) - _LORA_KEYS)
    if unknown:
        hint = (" (mlx-lm's LoRA config uses 'scale', not 'alpha')" if "alpha" in lora else "")
        raise LoraConfigError(f"lora_parameters (config): unknown key(s) {unknown}{hint}; "
                              f"known: {sorted(_LORA_KEYS)}")
    missing = sorted({"rank", "scale", "dropout"} - set(lora))
    if missing:
        raise LoraConfigError(f"lora_parameters (config) lacks {missing} (mlx-lm needs rank, "
                              "scale and dropout)")
    rank = lora["rank"]
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise LoraConfigError(f"lora_parameters.rank (config) must be an int >= 1, got {rank!r}")
    _real("lora_parameters.scale (config)", lora["scale"], low=-math.inf)
    _real("lora_parameters.dropout (config)", lora["dropout"], low=0.0, high=1.0)
    keys = lora.get("keys")
    if keys is not None and (not isinstance(keys, list) or not keys
                             or not all(isinstance(k, str) for k in keys)):
        raise LoraConfigError(f"lora_parameters.keys (config) must be a list of module paths "
                              f"such as self_attn.q_proj, got {keys!r}")


def _check_lr_schedule(schedule: Any) -> None:
    if schedule is None:
        return
    if not isinstance(schedule, dict):
        raise LoraConfigError(f"lr_schedule (config) must be a mapping, got {schedule!r}")
    unknown = sorted(set(schedule) - _LR_SCHEDULE_KEYS)
    if unknown:
        raise LoraConfigError(f"lr_schedule (config): unknown key(s) {unknown}; known: "
                              f"{sorted(_LR_SCHEDULE_KEYS)}")
    if not isinstance(schedule.get("name"), str):
        raise LoraConfigError(f"lr_schedule.name (config) must name a schedule, got "
                              f"{schedule.get('name')!r}")
    if not isinstance(schedule.get("arguments"), list) or not schedule["arguments"]:
        raise LoraConfigError(f"lr_schedule.arguments (config) must be a non-empty list, got "
                              f"{schedule.get('arguments')!r}")
    warmup = schedule.get("warmup", 0)
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise LoraConfigError(f"lr_schedule.warmup (config) must be an int >= 0, got {warmup!r}")
    _real("lr_schedule.warmup_init (config)", schedule.get("warmup_init", 0.0), low=-math.inf)


def _check_report_to(settings: dict[str, Any]) -> None:
    report_to = settings["report_to"]
    if report_to in (None, ""):
        settings["report_to"] = None
        return
    if not isinstance(report_to, str):
        raise LoraConfigError(f"--report-to must be a comma-separated string, got {report_to!r}")
    names = [n.strip().lower() for n in report_to.split(",") if n.strip()]
    for name in names:
        if name == "swanlab":
            raise LoraConfigError("--report-to swanlab: SwanLab is not supported here; choose "
                                  f"from {', '.join(_TRACKERS)}")
        if name not in _TRACKERS:
            raise LoraConfigError(f"--report-to {name}: unknown tracker; choose from "
                                  f"{', '.join(_TRACKERS)}")


# ---------------------------------------------------------------------------------- building
def optimizer_class(name: Any) -> type:
    """The ``mlx.optimizers`` class of a name in any case (``adamw`` -> ``AdamW``).

    Example:
        >>> optimizer_class("adamw").__name__, optimizer_class("SGD").__name__
        ('AdamW', 'SGD')
    """
    import mlx.optimizers as optim

    classes = {n.lower(): c for n, c in vars(optim).items()
               if isinstance(c, type) and issubclass(c, optim.Optimizer)
               and c is not optim.Optimizer and n != "MultiOptimizer"}
    if not isinstance(name, str) or name.lower() not in classes:
        raise LoraConfigError(f"--optimizer must name an mlx.optimizers class, one of "
                              f"{sorted(classes)}, got {name!r}")
    return classes[name.lower()]


def build_schedule(settings: Mapping[str, Any], updates: int) -> Any:
    """The learning rate: a constant (``learning_rate``), mlx-lm's ``lr_schedule`` (its
    ``name`` from :mod:`mlx_schedules` when it has it, else ``mlx.optimizers.schedulers``;
    ``arguments`` by position; ``warmup`` steps from ``warmup_init`` joined at ``warmup + 1``,
    as mlx-lm does), or our ``schedule`` (an :mod:`mlx_schedules` config whose missing peak
    and length default to ``learning_rate`` and ``updates``).

    Example:
        >>> lr = build_schedule({"learning_rate": 0.1, "lr_schedule": None,
        ...                      "schedule": {"name": "cosine_decay"}}, 4)
        >>> [round(v, 4) for v in lr.values(5).tolist()]
        [0.1, 0.0854, 0.05, 0.0146, 0.0]
    """
    import mlx.optimizers as optim

    import mlx_schedules

    mlx_lm_schedule, ours = settings["lr_schedule"], settings["schedule"]
    if mlx_lm_schedule is not None:
        name, arguments = mlx_lm_schedule["name"], list(mlx_lm_schedule["arguments"])
        factory = getattr(mlx_schedules, name, None) if name in mlx_schedules.schedule_names() \
            else getattr(optim.schedulers, name, None)
        if not callable(factory):
            raise LoraConfigError(f"lr_schedule.name (config): unknown schedule {name!r}")
        try:
            schedule = factory(*arguments)
            warmup = mlx_lm_schedule.get("warmup", 0)
            if warmup:
                ramp = mlx_schedules.linear_schedule(
                    float(mlx_lm_schedule.get("warmup_init", 0.0)), float(arguments[0]), warmup)
                schedule = mlx_schedules.join_schedules([ramp, schedule], [warmup + 1])
        except (TypeError, ValueError) as e:
            raise LoraConfigError(f"lr_schedule (config): {e}") from None
        return schedule
    if ours is not None:
        config = dict(ours)
        name = config.get("name")
        if name not in mlx_schedules.schedule_names():
            raise LoraConfigError(f"--schedule: unknown schedule {name!r}; choose from "
                                  f"{mlx_schedules.schedule_names()}")
        parameters = inspect.signature(getattr(mlx_schedules, name)).parameters
        for names, value in ((_PEAK_NAMES, float(settings["learning_rate"])),
                             (_LENGTH_NAMES, int(updates))):
            for key in names:
                if key in parameters and key not in config and \
                        parameters[key].default is inspect.Parameter.empty:
                    config[key] = value
        try:
            return mlx_schedules.from_config(config)
        except (TypeError, ValueError) as e:
            raise LoraConfigError(f"--schedule {name}: {e}") from None
    return float(settings["learning_rate"])


def build_optimizer(settings: Mapping[str, Any], updates: int) -> Any:
    """The optimizer: ``optimizer`` (any ``mlx.optimizers`` class) with the learning rate of
    :func:`build_schedule` and the arguments ``optimizer_config[<name in lower case>]``."""
    cls = optimizer_class(settings["optimizer"])
    name = str(settings["optimizer"]).lower()
    arguments = dict(settings["optimizer_config"].get(name, {}))
    if "learning_rate" in arguments:
        raise LoraConfigError(f"optimizer_config.{name}.learning_rate (config): the rate comes "
                              "from --learning-rate or a schedule")
    try:
        return cls(learning_rate=build_schedule(settings, updates), **arguments)
    except TypeError as e:
        raise LoraConfigError(f"optimizer_config.{name} (config): {e}") from None
