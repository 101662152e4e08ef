"""mlx-lm's models: a config from an architecture and a size preset, the random-weight model it
describes, and local mlx-lm model directories (load and save).

The models are mlx-lm's own (``mlx_lm.models.<type>.Model``), so what is trained here loads in
mlx-lm's tools. mlx-lm is an optional dependency (the ``lm`` extra); it is imported when a
function needs it.
"""

from __future__ import annotations

import importlib
import json
import os
import tempfile
from collections.abc import Mapping
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from ..files import atomic_path, ensure_dir, write_bytes_atomic, write_json_atomic

__all__ = ["ARCHITECTURES", "PRESETS", "build_model", "load_model_dir", "model_config",
           "read_config", "save_model_dir"]

#: selectable ``model_type`` -> the mlx-lm module implementing it (mlx-lm maps mistral to llama)
ARCHITECTURES = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "phi": "phi"}

#: model sizes: width, depth, MLP width, heads (the default, ``small``, trains 300 steps of
#: 16 x 128 bytes in well under 5 minutes on 2 CPU cores)
PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 192,
             "num_attention_heads": 4},
    "small": {"hidden_size": 128, "num_hidden_layers": 2, "intermediate_size": 384,
              "num_attention_heads": 4},
    "medium": {"hidden_size": 256, "num_hidden_layers": 4, "intermediate_size": 768,
               "num_attention_heads": 8},
    "large": {"hidden_size": 512, "num_hidden_layers": 8, "intermediate_size": 1536,
              "num_attention_heads": 8},
}


def mlx_lm_module() -> Any:
    try:
        import mlx_lm
    except ImportError:
        raise ImportError("language models need mlx-lm: pip install 'mlx-schedules[lm]'") from None
    return mlx_lm


def model_config(architecture: str = "llama", preset: str = "small", *, vocab_size: int = 256,
                 max_position_embeddings: int = 2048, **overrides: Any) -> dict[str, Any]:
    """An mlx-lm (Hugging Face style) config for a random-weight model.

    Args:
        architecture: a key of :data:`ARCHITECTURES` (the config's ``model_type``).
        preset: a key of :data:`PRESETS` (the model's size).
        vocab_size: token ids (256 for bytes).
        **overrides: any other config field (``hidden_size=96``, ``rope_theta=...``).

    Example:
        >>> c = model_config("qwen2", "tiny")
        >>> c["model_type"], c["hidden_size"], c["vocab_size"]
        ('qwen2', 64, 256)
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {list(ARCHITECTURES)}, "
                         f"got {architecture!r}")
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {list(PRESETS)}, got {preset!r}")
    config: dict[str, Any] = {"model_type": architecture, **PRESETS[preset],
                              "vocab_size": vocab_size,
                              "max_position_embeddings": max_position_embeddings}
    config["num_key_value_heads"] = config["num_attention_heads"]
    if architecture == "phi":
        config.update(layer_norm_eps=1e-5, partial_rotary_factor=0.5)
    else:
        config.update(rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True)
    config.update(overrides)
    for key in ("hidden_size", "num_hidden_layers", "intermediate_size", "num_attention_heads",
                "vocab_size"):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a positive int, got {value!r}")
    if config["hidden_size"] % config["num_attention_heads"]:
        raise ValueError(f"hidden_size={config['hidden_size']} must be a multiple of "
                         f"num_attention_heads={config['num_attention_heads']}")
    return config


def build_model(config: Mapping[str, Any]) -> nn.Module:
    """mlx-lm's model for ``config`` with random weights (seed ``mx.random`` first).

    Example:
        >>> model = build_model(model_config("llama", "tiny"))
        >>> model(mx.zeros((1, 5), mx.int32)).shape
        (1, 5, 256)
    """
    mlx_lm_module()
    model_type = config.get("model_type")
    if model_type not in ARCHITECTURES:
        raise ValueError(f"model_type must be one of {list(ARCHITECTURES)}, got {model_type!r}")
    module = importlib.import_module(f"mlx_lm.models.{ARCHITECTURES[model_type]}")
    model = module.Model(module.ModelArgs.from_dict(dict(config)))
    mx.eval(model.parameters())
    return model


def load_model_dir(path: str | os.PathLike) -> tuple[nn.Module, Any, dict[str, Any]]:
    """``(model, tokenizer, config)`` of a local mlx-lm model directory, loaded with mlx-lm's
    own loader (``mlx_lm.load``: ``config.json``, ``model*.safetensors``, the tokenizer files).

    Raises:
        FileNotFoundError: the directory, its config or its weights are missing.
        ValueError: ``config.json`` is not a JSON object (names the file and the line).
    """
    path = os.fspath(path)
    config_file = os.path.join(path, "config.json")
    if not os.path.isfile(config_file):
        raise FileNotFoundError(f"--model-path {path}: no config.json (expected a local "
                                "mlx-lm model directory)")
    read_config(config_file)  # mlx-lm's loader would fail on it without naming the file
    model, tokenizer, config = mlx_lm_module().load(path, return_config=True)
    return model, tokenizer, config


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """A model's ``config.json`` (or any JSON file that must hold an object: the commands read
    their own settings files with it too).

    Raises:
        ValueError: the file cannot be read, is not UTF-8, not JSON or not an object; the
            message names the file and, for bad JSON, the line and column.

    Example:
        >>> import tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "config.json")
        >>> _ = open(path, "w").write('{"model_type": "llama",\\n "hidden_size": }')
        >>> read_config(path)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: .../config.json line 2 column 17: not valid JSON (Expecting value)
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} line {e.lineno} column {e.colno}: not valid JSON "
                         f"({e.msg})") from None
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror or e}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: must hold a JSON object, got {type(config).__name__}")
    return config


def save_model_dir(model: nn.Module, config: Mapping[str, Any], directory: str | os.PathLike,
                   tokenizer: Any = None, *, root: str | os.PathLike | None = None) -> str:
    """Write ``model.safetensors`` and ``config.json`` (and the tokenizer's files when given)
    into ``directory``: an mlx-lm model directory (``mlx_lm.utils.load_model`` reads it;
    ``mlx_lm.load`` also needs the tokenizer).

    Each file is written whole or not at all, with the user's umask, never through a symbolic
    link; ``root`` (a run directory holding ``directory``) may itself be a link, but no folder
    below it may (:func:`trainers.files.ensure_dir`).

    Raises:
        UnsafePathError: ``directory`` (below ``root``) or a file in it is a symbolic link.
    """
    directory = os.fspath(directory)
    ensure_dir(directory, root=root)
    weights = dict(tree_flatten(model.parameters()))
    mx.eval(weights)
    with atomic_path(os.path.join(directory, "model.safetensors")) as tmp:
        mx.save_safetensors(tmp, weights, metadata={"format": "mlx"})
    write_json_atomic(os.path.join(directory, "config.json"), dict(config))
    if tokenizer is not None:
        _save_tokenizer(tokenizer, directory)
    return directory


def _save_tokenizer(tokenizer: Any, directory: str) -> None:
    """The tokenizer's files, written by its own ``save_pretrained`` into a private temporary
    folder, then copied in as the trainer's files are (atomic, never through a link)."""
    with tempfile.TemporaryDirectory() as staging:
        tokenizer.save_pretrained(staging)
        for folder, _, names in os.walk(staging):
            target = os.path.join(directory, os.path.relpath(folder, staging))
            ensure_dir(target, root=directory)
            for name in names:
                with open(os.path.join(folder, name), "rb") as f:
                    write_bytes_atomic(os.path.normpath(os.path.join(target, name)), f.read())
