"""The run config of ``scripts/train.py``: defaults, loading, validation up front, building.

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
files exist) before anything is trained, and raises :class:`ConfigError` naming the field.
"""

from __future__ import annotations

import copy
import inspect
import json
import os
from typing import Any

import mlx.optimizers as optim

import mlx_schedules as ms

from .datasets import DATASETS, DatasetUnavailable, check_available
from .models import MODELS

__all__ = ["DEFAULT_CONFIG", "ConfigError", "build_optimizer", "load_config_file",
           "merge_config", "optimizer_names", "validate"]

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
    """A config field is wrong; the message starts with the field's dotted path."""


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a JSON config, or a YAML one (``.yaml``/``.yml``, needs pyyaml)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError:
            raise ConfigError(f"{path}: YAML configs need pyyaml (pip install pyyaml); "
                              "or write the config as JSON") from None
        data = yaml.safe_load(text)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping, got {type(data).__name__}")
    return data


def merge_config(base: dict[str, Any], override: dict[str, Any], path: str = "") -> dict:
    """``base`` updated by ``override`` section by section; unknown sections/keys are errors.

    Example:
        >>> merge_config(DEFAULT_CONFIG, {"training": {"steps": 10}})["training"]["steps"]
        10
        >>> merge_config(DEFAULT_CONFIG, {"training": {"stpes": 10}})
        Traceback (most recent call last):
        ...
        experiments.config.ConfigError: training.stpes: unknown field; valid fields are \
['batch_size', 'checkpoint_every', 'clip_norm', 'compile', 'eval_every', 'grad_accum', \
'keep_checkpoints', 'log_every', 'seed', 'steps', 'target_accuracy']
    """
    out = copy.deepcopy(base)
    for key, value in override.items():
        where = f"{path}.{key}" if path else key
        if key not in base:
            raise ConfigError(f"{where}: unknown field; valid fields are {sorted(base)}")
        if isinstance(base[key], dict) and not path:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
            if key in _OPEN_SECTIONS:
                out[key] = copy.deepcopy(value)
            else:
                out[key] = merge_config(base[key], value, where)
        else:
            out[key] = copy.deepcopy(value)
    return out


# ---------------------------------------------------------------- field checks
def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _int(config: dict, section: str, key: str, minimum: int, *, optional: bool = False) -> None:
    value = config[section][key]
    if value is None and optional:
        return
    if not _is_int(value) or value < minimum:
        raise ConfigError(f"{section}.{key}: expected an integer >= {minimum}"
                          f"{' or null' if optional else ''}, got {value!r}")


def _real(config: dict, section: str, key: str, low: float, high: float | None = None, *,
          optional: bool = False, open_low: bool = False) -> None:
    value = config[section][key]
    if value is None and optional:
        return
    ok = _is_real(value) and (value > low if open_low else value >= low)
    ok = ok and (high is None or value <= high)
    if not ok:
        bound = f"{'>' if open_low else '>='} {low}" + (f" and <= {high}" if high else "")
        raise ConfigError(f"{section}.{key}: expected a number {bound}"
                          f"{' or null' if optional else ''}, got {value!r}")


def _int_list(config: dict, section: str, key: str) -> None:
    value = config[section][key]
    if not (isinstance(value, list) and value and all(_is_int(v) and v > 0 for v in value)):
        raise ConfigError(f"{section}.{key}: expected a non-empty list of positive integers, "
                          f"got {value!r}")


def optimizer_names() -> list[str]:
    """Every ``mlx.optimizers`` optimizer class a config can name."""
    return sorted(name for name, cls in vars(optim).items()
                  if isinstance(cls, type) and issubclass(cls, optim.Optimizer)
                  and cls not in (optim.Optimizer, optim.MultiOptimizer))


# Hyperparameters that are not constructor keywords but can be scheduled.
_BETAS = ("beta1", "beta2")


def _check_optimizer(section: dict) -> None:
    if not isinstance(section.get("name"), str):
        raise ConfigError(f"optimizer.name: expected one of {optimizer_names()}, "
                          f"got {section.get('name')!r}")
    name = section["name"]
    if name not in optimizer_names():
        raise ConfigError(f"optimizer.name: unknown optimizer {name!r}; valid names are "
                          f"{optimizer_names()}")
    cls = getattr(optim, name)
    parameters = {k: p for k, p in inspect.signature(cls.__init__).parameters.items()
                  if k != "self"}
    schedulable = ms.supported_hyperparameters(cls.__new__(cls))
    for key, value in section.items():
        if key == "name":
            continue
        where = f"optimizer.{key}"
        if key not in parameters and key not in _BETAS:
            raise ConfigError(f"{where}: {name} has no such setting; valid settings are "
                              f"{sorted([*parameters, *(b for b in _BETAS if b in schedulable)])}")
        if isinstance(value, dict):
            if key != "learning_rate" and key not in schedulable:
                raise ConfigError(f"{where}: {name} cannot put {key!r} on a schedule; "
                                  f"schedulable: {['learning_rate', *schedulable]}")
            try:
                ms.from_config(value)
            except (ValueError, TypeError) as e:
                raise ConfigError(f"{where}: bad schedule config: {e}") from None
            continue
        if key in _BETAS:
            if key not in schedulable:
                raise ConfigError(f"{where}: {name} has no {key}")
            if not _is_real(value):
                raise ConfigError(f"{where}: expected a number or a schedule config, "
                                  f"got {value!r}")
            continue
        default = parameters[key].default
        if key == "learning_rate":
            if not (_is_real(value) and value >= 0):
                raise ConfigError(f"{where}: expected a number >= 0 or a schedule config, "
                                  f"got {value!r}")
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: expected true or false, got {value!r}")
        elif _is_real(default):
            if not _is_real(value):
                raise ConfigError(f"{where}: expected a number, got {value!r}")
        elif isinstance(default, (list, tuple)):
            if not (isinstance(value, list) and all(_is_real(v) for v in value)):
                raise ConfigError(f"{where}: expected a list of numbers, got {value!r}")
    if "learning_rate" not in section and parameters["learning_rate"].default is \
            inspect.Parameter.empty:
        raise ConfigError("optimizer.learning_rate: missing (a number or a schedule config)")


def validate(config: dict[str, Any]) -> dict[str, Any]:
    """Check every field of a merged config; return it. Raises :class:`ConfigError`.

    Nothing is trained or loaded here; dataset files are only looked for.

    Example:
        >>> validate(merge_config(DEFAULT_CONFIG, {"optimizer": {"name": "Adamm"}}))
        Traceback (most recent call last):
        ...
        experiments.config.ConfigError: optimizer.name: unknown optimizer 'Adamm'; valid names \
are ['AdaDelta', 'Adafactor', 'Adagrad', 'Adam', 'AdamW', 'Adamax', 'Lion', 'Muon', 'RMSprop', \
'SGD']
    """
    for section, fields in DEFAULT_CONFIG.items():
        if not isinstance(config.get(section), dict):
            raise ConfigError(f"{section}: expected a mapping, got {config.get(section)!r}")
        if section not in _OPEN_SECTIONS:
            unknown = sorted(set(config[section]) - set(fields))
            if unknown:
                raise ConfigError(f"{section}.{unknown[0]}: unknown field; valid fields are "
                                  f"{sorted(fields)}")
    dataset = config["dataset"]
    if dataset["name"] not in DATASETS:
        raise ConfigError(f"dataset.name: unknown dataset {dataset['name']!r}; valid names are "
                          f"{list(DATASETS)}")
    for key in ("path", "cache_dir"):
        if dataset[key] is not None and not isinstance(dataset[key], str):
            raise ConfigError(f"dataset.{key}: expected a path string or null, "
                              f"got {dataset[key]!r}")
    _real(config, "dataset", "test_fraction", 0.0, 0.9, open_low=True)
    _int(config, "dataset", "split_seed", 0)
    _int(config, "dataset", "limit_train", 1, optional=True)

    model = config["model"]
    if model["kind"] not in MODELS:
        raise ConfigError(f"model.kind: unknown model {model['kind']!r}; valid kinds are "
                          f"{list(MODELS)}")
    _int_list(config, "model", "hidden")
    _int_list(config, "model", "channels")
    _real(config, "model", "dropout", 0.0, 0.99)
    if model["norm"] not in (None, "batch", "layer"):
        raise ConfigError(f"model.norm: expected null, 'batch' or 'layer', got {model['norm']!r}")

    _check_optimizer(config["optimizer"])

    for key in ("steps", "batch_size", "log_every", "grad_accum", "keep_checkpoints"):
        _int(config, "training", key, 1)
    for key in ("seed", "eval_every"):
        _int(config, "training", key, 0)
    _int(config, "training", "checkpoint_every", 0, optional=True)
    _real(config, "training", "clip_norm", 0.0, optional=True, open_low=True)
    _real(config, "training", "target_accuracy", 0.0, 1.0, optional=True)
    if config["training"]["compile"] not in ("auto", True, False):
        raise ConfigError(f"training.compile: expected 'auto', true or false, "
                          f"got {config['training']['compile']!r}")

    output = config["output"]
    if not isinstance(output["run_dir"], str) or not output["run_dir"]:
        raise ConfigError(f"output.run_dir: expected a directory path, got {output['run_dir']!r}")
    if not isinstance(output["plots"], bool):
        raise ConfigError(f"output.plots: expected true or false, got {output['plots']!r}")

    try:  # last: the only check that touches the file system
        check_available(dataset["name"], path=dataset["path"], cache_dir=dataset["cache_dir"])
    except (DatasetUnavailable, ValueError) as e:
        raise ConfigError(str(e)) from None
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
    cls = getattr(optim, section["name"])
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
