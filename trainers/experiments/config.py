"""The run config of ``mlx-schedules train``: defaults, loading, validation up front, building.

A config is plain data (JSON, or YAML when pyyaml is installed)::

    {"dataset":   {"name": "digits", "path": null, "cache_dir": null, "test_fraction": 0.25,
                   "split_seed": 0, "limit_train": null},
     "model":     {"kind": "mlp", "hidden": [128], "channels": [16, 32], "dropout": 0.0,
                   "norm": null},
     "optimizer": {"name": "SGD", "learning_rate": <number or schedule config>,
                   "momentum": <number or schedule config>, ...any keyword of the optimizer},
     "training":  {"steps": 600, "batch_size": 64, "seed": 0, "eval_every": 50, ...},
     "output":    {"run_dir": "runs/train", "plots": true}}

Schedule configs are ``mlx_schedules``' ``to_config`` dicts (``{"name": "one_cycle", ...}``).
:func:`validate` checks every field (names, types, ranges, schedule configs, that the dataset
files exist) before anything is trained, and raises one :class:`ConfigError` naming every
wrong field (a config with three typos is reported once, with all three).
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import mlx.optimizers as optim

import mlx_schedules as ms
from mlx_schedules.checks import check_bool, check_choice, check_float32, check_int, check_real
from trainers.schedule_free import ScheduleFreeAdamW, ScheduleFreeSGD

from .datasets import DATASETS, DataError, DatasetUnavailable, check_available
from .models import MODELS, NORMS

__all__ = ["DEFAULT_CONFIG", "FIELD_CHECKS", "ConfigError", "build_optimizer", "check_field",
           "check_float32_numbers", "load_config_file",
           "merge_config", "optimizer_class", "optimizer_names", "validate"]

DEFAULT_CONFIG: dict[str, Any] = {
    "dataset": {"name": "digits", "path": None, "cache_dir": None, "test_fraction": 0.25,
                "split_seed": 0, "limit_train": None},
    "model": {"kind": "mlp", "hidden": [128], "channels": [16, 32], "dropout": 0.0,
              "norm": None},
    "optimizer": {"name": "SGD",
                  "learning_rate": {"name": "one_cycle", "max_lr": 0.3, "total_steps": 600},
                  "momentum": {"name": "one_cycle_momentum", "total_steps": 600}},
    "training": {"steps": 600, "batch_size": 64, "seed": 0, "eval_every": 50,
                 "checkpoint_every": 200, "keep_checkpoints": 3, "log_every": 50,
                 "clip_norm": None, "grad_accum": 1, "target_accuracy": 0.95,
                 "compile": "auto"},
    "output": {"run_dir": "runs/train", "plots": True},
}

# The fields whose value is free-form (checked by their own rules, not against the defaults).
_OPEN_SECTIONS = {"optimizer"}


class ConfigError(ValueError):
    """Config fields are wrong; each problem starts with the field's dotted path.

    Given several problems, the message lists them all, one per line (repeats dropped);
    :attr:`problems` holds them.

    Example:
        >>> print(ConfigError("training.stpes: unknown field", "model.kind must be one of"))
        2 problems in the config:
          training.stpes: unknown field
          model.kind must be one of
    """

    def __init__(self, *problems: str):
        self.problems = list(dict.fromkeys(problems))
        if len(self.problems) == 1:
            super().__init__(self.problems[0])
        else:
            super().__init__(f"{len(self.problems)} problems in the config:\n"
                             + "\n".join(f"  {p}" for p in self.problems))


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a JSON config, or a YAML one (``.yaml``/``.yml``, needs pyyaml)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the config: {e}") from None
    if path.endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError:
            raise ConfigError(f"{path}: YAML configs need pyyaml (pip install pyyaml); "
                              "or write the config as JSON") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        except RecursionError:
            raise ConfigError(f"{path}: nested too deeply") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON: {e}") from None
        except RecursionError:
            raise ConfigError(f"{path}: nested too deeply") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping, got {type(data).__name__}")
    return data


def merge_config(base: dict[str, Any], override: dict[str, Any], path: str = "", *,
                 errors: list[str] | None = None) -> dict:
    """``base`` updated by ``override`` section by section; unknown sections/keys are errors.

    Every unknown name is reported (one :class:`ConfigError` listing them all); with an
    ``errors`` list they are appended to it instead, and left out of the result, so that
    :func:`validate` can report them together with the rest.

    Example:
        >>> merge_config(DEFAULT_CONFIG, {"training": {"steps": 10}})["training"]["steps"]
        10
        >>> merge_config(DEFAULT_CONFIG, {"training": {"stpes": 10}})
        Traceback (most recent call last):
        ...
        trainers.experiments.config.ConfigError: training.stpes: unknown field; valid fields are \
['batch_size', 'checkpoint_every', 'clip_norm', 'compile', 'eval_every', 'grad_accum', \
'keep_checkpoints', 'log_every', 'seed', 'steps', 'target_accuracy']
    """
    found = errors if errors is not None else []
    out = copy.deepcopy(base)
    for key, value in override.items():
        where = f"{path}.{key}" if path else key
        if key not in base:
            found.append(f"{where}: unknown field; valid fields are {sorted(base)}")
        elif isinstance(base[key], dict) and not path:
            if not isinstance(value, dict):
                found.append(f"{where}: expected a mapping, got {type(value).__name__}")
            elif key in _OPEN_SECTIONS:
                out[key] = copy.deepcopy(value)
            else:
                out[key] = merge_config(base[key], value, where, errors=found)
        else:
            out[key] = copy.deepcopy(value)
    if errors is None and found:
        raise ConfigError(*found)
    return out


# ---------------------------------------------------------------- field checks
# JSON numbers are float64 and Python ints are unbounded; MLX computes in float32 and counts
# steps in 64-bit integers, so a config may hold only what those can represent.
def _optional(check: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    return lambda name, value: None if value is None else check(name, value)


def _int_list(name: str, value: Any) -> None:
    if not isinstance(value, list) or not value:
        raise TypeError(f"{name} must be a non-empty list of positive integers, got {value!r}")
    for i, v in enumerate(value):
        check_int(f"{name}[{i}]", v)


def _path(name: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name} must be a path string, got {value!r}")


def _compile(name: str, value: Any) -> None:
    if not (value == "auto" and isinstance(value, str)) and not isinstance(value, bool):
        raise ValueError(f"{name} must be 'auto', true or false, got {value!r}")


# Every field outside the free-form optimizer section, with its one check.
FIELD_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "dataset.name": lambda n, v: check_choice(n, v, DATASETS),
    "dataset.path": _optional(_path),
    "dataset.cache_dir": _optional(_path),
    "dataset.test_fraction": lambda n, v: check_real(n, v, low=0.0, high=0.9,
                                                        low_open=True),
    "dataset.split_seed": lambda n, v: check_int(n, v, minimum=0),
    "dataset.limit_train": _optional(check_int),
    "model.kind": lambda n, v: check_choice(n, v, MODELS),
    "model.hidden": _int_list,
    "model.channels": _int_list,
    "model.dropout": lambda n, v: check_real(n, v, low=0.0, high=0.99),
    "model.norm": _optional(lambda n, v: check_choice(n, v, [k for k in NORMS if k])),
    "training.steps": check_int,
    "training.batch_size": check_int,
    "training.seed": lambda n, v: check_int(n, v, minimum=0),
    "training.eval_every": lambda n, v: check_int(n, v, minimum=0),
    "training.checkpoint_every": _optional(lambda n, v: check_int(n, v, minimum=0)),
    "training.keep_checkpoints": check_int,
    "training.log_every": check_int,
    "training.clip_norm": _optional(lambda n, v: check_real(n, v, low=0.0, low_open=True)),
    "training.grad_accum": check_int,
    "training.target_accuracy": _optional(lambda n, v: check_real(n, v, low=0.0, high=1.0)),
    "training.compile": _compile,
    "output.run_dir": _path,
    "output.plots": check_bool,
}


def check_field(name: str, check: Callable[[str, Any], Any], value: Any) -> None:
    """Run one check; its ``TypeError``/``ValueError`` becomes a :class:`ConfigError`.

    Example:
        >>> check_field("model.dropout", FIELD_CHECKS["model.dropout"], "0.1")
        Traceback (most recent call last):
        ...
        trainers.experiments.config.ConfigError: \
model.dropout must be a real number, got '0.1' (str)
    """
    try:
        check(name, value)
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from None


def check_float32_numbers(where: str, value: Any) -> None:
    """Every number inside a schedule config within float32's range, named by its path.

    Example:
        >>> check_float32_numbers("lr", {"name": "warmup", "steps": 5,
        ...                              "schedule": {"name": "constant", "value": 1e39}})
        Traceback (most recent call last):
        ...
        trainers.experiments.config.ConfigError: lr.schedule.value must be representable in \
float32 \
(|lr.schedule.value| <= 3.4028235e+38), got 1e+39
    """
    if isinstance(value, dict):
        for key, item in value.items():
            check_float32_numbers(f"{where}.{key}", item)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_float32_numbers(f"{where}[{i}]", item)
    elif isinstance(value, float) and math.isfinite(value):
        check_field(where, check_float32, value)


# Optimizers of this project a config can name beside MLX's own (the schedule-free baseline).
_EXTRA_OPTIMIZERS = {"ScheduleFreeSGD": ScheduleFreeSGD, "ScheduleFreeAdamW": ScheduleFreeAdamW}


def optimizer_names() -> list[str]:
    """Every ``mlx.optimizers`` optimizer class a config can name, and the schedule-free ones
    of :mod:`trainers.schedule_free`."""
    return sorted([name for name, cls in vars(optim).items()
                   if isinstance(cls, type) and issubclass(cls, optim.Optimizer)
                   and cls not in (optim.Optimizer, optim.MultiOptimizer)]
                  + list(_EXTRA_OPTIMIZERS))


def optimizer_class(name: str) -> type:
    """The optimizer class a config's ``optimizer.name`` names."""
    return _EXTRA_OPTIMIZERS.get(name) or getattr(optim, name)


# Hyperparameters that are not constructor keywords but can be scheduled.
_BETAS = ("beta1", "beta2")


def _float32_list(name: str, value: Any) -> None:
    if not isinstance(value, list):
        raise TypeError(f"{name} must be a list of numbers, got {value!r}")
    for i, item in enumerate(value):
        check_real(f"{name}[{i}]", item)


def _check_optimizer_value(where: str, key: str, value: Any, default: Any) -> None:
    """A plain (unscheduled) optimizer setting, checked by its constructor default's kind."""
    check: Callable[[str, Any], Any]
    if key == "learning_rate":
        check = functools.partial(check_real, low=0.0)
    elif isinstance(default, bool):
        check = check_bool
    elif key in _BETAS or isinstance(default, (int, float)):
        check = check_real
    elif isinstance(default, (list, tuple)):
        check = _float32_list
    else:
        return  # a setting of a kind the config does not describe (left to the optimizer)
    try:
        check(where, value)
    except (TypeError, ValueError) as e:
        schedulable = isinstance(e, TypeError) and (key == "learning_rate" or key in _BETAS)
        raise ConfigError(f"{e}{' (or a schedule config)' if schedulable else ''}") from None


def _optimizer_problems(section: dict) -> list[str]:
    """Every problem of the ``optimizer`` section (its name first: the rest needs it)."""
    try:
        check_field("optimizer.name", lambda n, v: check_choice(n, v, optimizer_names()),
                    section.get("name"))
    except ConfigError as e:
        return e.problems
    problems = []
    for key in section:
        try:
            _check_optimizer_key(section, key)
        except ConfigError as e:
            problems += e.problems
    cls: Any = optimizer_class(section["name"])
    parameters = inspect.signature(cls.__init__).parameters
    if "learning_rate" not in section and parameters["learning_rate"].default is \
            inspect.Parameter.empty:
        problems.append("optimizer.learning_rate: missing (a number or a schedule config)")
    return problems


def _check_optimizer_key(section: dict, key: str) -> None:
    """One setting of a section whose optimizer name is valid."""
    if key == "name":
        return
    name = section["name"]
    cls = optimizer_class(name)
    parameters = dict(inspect.signature(cls).parameters)
    schedulable = ms.supported_hyperparameters(object.__new__(cls))
    value = section[key]
    where = f"optimizer.{key}"
    if key not in parameters and key not in _BETAS:
        raise ConfigError(f"{where}: {name} has no such setting; valid settings are "
                          f"{sorted([*parameters, *(b for b in _BETAS if b in schedulable)])}")
    if key in _BETAS and key not in schedulable:
        raise ConfigError(f"{where}: {name} has no {key}")
    if isinstance(value, dict):
        if key != "learning_rate" and key not in schedulable:
            raise ConfigError(f"{where}: {name} cannot put {key!r} on a schedule; "
                              f"schedulable: {['learning_rate', *schedulable]}")
        check_float32_numbers(where, value)
        try:
            ms.from_config(value)
        except (ValueError, TypeError, RecursionError) as e:
            raise ConfigError(f"{where}: bad schedule config: {e}") from None
        return
    default = parameters[key].default if key in parameters else None
    _check_optimizer_value(where, key, value, default)


def validate(config: dict[str, Any], *, found: Sequence[str] = ()) -> dict[str, Any]:
    """Check every field of a merged config; return it. Raises one :class:`ConfigError`
    listing every problem, after the ones already ``found`` (e.g. by :func:`merge_config`).

    Nothing is trained or loaded here; dataset files are only looked for (once the dataset
    section itself is right).

    Example:
        >>> validate(merge_config(DEFAULT_CONFIG, {"optimizer": {"name": "Adamm"}}))
        Traceback (most recent call last):
        ...
        trainers.experiments.config.ConfigError: optimizer.name must be one of ['AdaDelta', \
'Adafactor', 'Adagrad', 'Adam', 'AdamW', 'Adamax', 'Lion', 'Muon', 'RMSprop', 'SGD', \
'ScheduleFreeAdamW', 'ScheduleFreeSGD'], got 'Adamm'
        >>> validate(merge_config(DEFAULT_CONFIG, {"training": {"clip_norm": 1e39}}))
        Traceback (most recent call last):
        ...
        trainers.experiments.config.ConfigError: training.clip_norm must be representable in \
float32 \
(|training.clip_norm| <= 3.4028235e+38), got 1e+39
    """
    problems = list(found)
    broken = set()  # sections that are not mappings: their fields cannot be checked
    for section, fields in DEFAULT_CONFIG.items():
        if not isinstance(config.get(section), dict):
            problems.append(f"{section}: expected a mapping, got {config.get(section)!r}")
            broken.add(section)
        elif section not in _OPEN_SECTIONS:
            problems += [f"{section}.{key}: unknown field; valid fields are {sorted(fields)}"
                         for key in sorted(set(config[section]) - set(fields))]
    dataset_ok = "dataset" not in broken
    for name, check in FIELD_CHECKS.items():
        section, key = name.split(".")
        if section in broken:
            continue
        try:
            check_field(name, check, config[section].get(key))
        except ConfigError as e:
            problems += e.problems
            dataset_ok = dataset_ok and section != "dataset"
    if "optimizer" not in broken:
        problems += _optimizer_problems(config["optimizer"])
    if dataset_ok:  # last: the only check that touches the file system
        dataset = config["dataset"]
        try:
            check_available(dataset["name"], path=dataset["path"],
                            cache_dir=dataset["cache_dir"])
        except (DatasetUnavailable, DataError) as e:
            problems.append(str(e))
    if problems:
        raise ConfigError(*problems)
    return config


def build_optimizer(section: dict[str, Any]) -> optim.Optimizer:
    """The optimizer of a validated ``optimizer`` section, with its schedules attached.

    Numbers go to the constructor; schedule configs become :class:`mlx_schedules.Schedule`
    objects: the learning rate directly, every other one through
    :func:`mlx_schedules.schedule_hyperparameters` (so it lives in ``optimizer.state``).

    Example:
        >>> opt = build_optimizer({"name": "SGD", "learning_rate": 0.1,
        ...                        "momentum": {"name": "constant", "value": 0.9}})
        >>> opt.state["momentum"]
        array(0.9, dtype=float32)
    """
    cls = optimizer_class(section["name"])
    kwargs: dict[str, Any] = {}
    scheduled: dict[str, Any] = {}
    for key, value in section.items():
        if key == "name":
            continue
        if key == "learning_rate":
            kwargs[key] = ms.from_config(value) if isinstance(value, dict) else value
        elif isinstance(value, dict):
            scheduled[key] = ms.from_config(value)
        elif key in _BETAS:
            scheduled[key] = value
        else:
            kwargs[key] = value
    if "momentum" in scheduled and "momentum" not in kwargs:
        kwargs["momentum"] = 0.9  # any positive value: SGD then keeps a velocity buffer
    optimizer = cls(**kwargs)
    if scheduled:
        ms.schedule_hyperparameters(optimizer, **scheduled)
    return optimizer
