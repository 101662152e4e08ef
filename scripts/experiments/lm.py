"""Language models for the scripts: mlx-lm architectures, LoRA, batches, evaluation, samples.

The models are mlx-lm's own (``mlx_lm.models.<type>.Model``), built from a small config with
random weights or loaded from a local mlx-lm model directory, so what is trained here loads in
mlx-lm's tools. mlx-lm is an optional dependency (the ``lm`` extra); it is imported when a
function needs it.

- :func:`model_config`, :func:`build_model` — a config from an architecture and a size preset
  (:data:`PRESETS`), and the random-weight model it describes;
- :func:`load_model_dir` — a local mlx-lm model directory (weights, config, tokenizer);
- :func:`apply_lora`, :func:`save_adapters` — mlx-lm's LoRA layers, and adapters saved in the
  layout ``mlx_lm.load(model_dir, adapter_path=...)`` reads;
- :func:`corpus_batches`, :func:`validation_batches`, :func:`example_batches` — token data to
  :class:`trainers.SequenceBatches` (pre-training windows, a fixed validation set, length
  buckets for fine-tuning examples);
- :func:`validation_metrics` — validation loss (and bits per byte for byte-level data);
- :func:`generate_tokens` — a sample from a trained model;
- :func:`schedule_configs`, :func:`optimizer_section` — the schedule families for language
  models (:data:`LM_SCHEDULES`: the digits families plus warmup-cosine and warmup-stable-decay)
  as AdamW configs for :func:`experiments.config.build_optimizer`;
- :func:`save_model_dir` — a trained model as an mlx-lm model directory;
  :func:`make_local_model_dir` — a tiny random one with a tokenizer trained here (tests,
  benchmarks and trying the LoRA path without a download);
- :func:`plot_lm_run` — the run's curves as a PNG;
- the data loaders of :mod:`experiments.lm_data` (:func:`stdlib_corpus`,
  :func:`load_jsonl_dir`, :func:`unigram_entropy`), re-exported here.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

import mlx_schedules as ms
from trainers import SequenceBatches, evaluate_lm

from .families import FAMILIES, family_configs
from .files import atomic_path, write_json
from .lm_data import (
    Corpus,
    DataFileError,
    load_jsonl_dir,
    read_jsonl,
    stdlib_corpus,
    unigram_entropy,
)

__all__ = [
    "ARCHITECTURES", "LM_SCHEDULES", "PRESETS", "Corpus", "DataFileError", "adapter_weights",
    "apply_lora", "build_model", "corpus_batches", "example_batches", "generate_tokens",
    "load_jsonl_dir", "load_model_dir", "make_local_model_dir", "model_config",
    "optimizer_section", "plot_lm_run", "read_adapter_config", "read_jsonl", "save_adapters",
    "save_model_dir", "schedule_configs", "stdlib_corpus", "unigram_entropy", "validation_batches",
    "validation_metrics"
]

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


def _mlx_lm() -> Any:
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
    _mlx_lm()
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
    """
    path = os.fspath(path)
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise FileNotFoundError(f"--model-path {path}: no config.json (expected a local "
                                "mlx-lm model directory)")
    model, tokenizer, config = _mlx_lm().load(path, return_config=True)
    return model, tokenizer, config


def apply_lora(model: nn.Module, rank: int, *, num_layers: int | None = None,
               scale: float = 20.0, dropout: float = 0.0,
               keys: Sequence[str] | None = None) -> dict[str, Any]:
    """Freeze ``model`` and add mlx-lm's LoRA layers to its last ``num_layers`` blocks (all by
    default); returns the ``adapter_config.json`` content mlx-lm's loader reads.

    Args:
        rank: the adapters' rank.
        scale: mlx-lm's LoRA scale (the update is ``scale * B A x``; mlx-lm's default 20).
        dropout: dropout on the adapters' input.
        keys: the module paths within a block to adapt (default: every linear layer).

    Example:
        >>> model = build_model(model_config("llama", "tiny"))
        >>> apply_lora(model, 4)["lora_parameters"]
        {'rank': 4, 'scale': 20.0, 'dropout': 0.0}
        >>> sorted({k.rsplit(".", 1)[-1] for k, _ in tree_flatten(model.trainable_parameters())})
        ['lora_a', 'lora_b']
    """
    from mlx_lm.tuner.utils import linear_to_lora_layers

    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"lora rank must be a positive int, got {rank!r}")
    blocks = len(model.layers)
    num_layers = blocks if num_layers is None else num_layers
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or \
            not 1 <= num_layers <= blocks:
        raise ValueError(f"num_layers must be an int in [1, {blocks}], got {num_layers!r}")
    parameters: dict[str, Any] = {"rank": rank, "scale": float(scale), "dropout": float(dropout)}
    if keys is not None:
        parameters["keys"] = list(keys)
    model.freeze()
    linear_to_lora_layers(model, num_layers, parameters)
    return {"fine_tune_type": "lora", "num_layers": num_layers, "lora_parameters": parameters}


def adapter_weights(model: nn.Module) -> dict[str, mx.array]:
    """The trainable weights of a LoRA model by their dotted names (what adapters hold)."""
    return dict(tree_flatten(model.trainable_parameters()))


def save_adapters(model: nn.Module, adapter_config: Mapping[str, Any],
                  directory: str | os.PathLike) -> str:
    """Write ``adapters.safetensors`` and ``adapter_config.json`` into ``directory`` (created),
    the layout of ``mlx_lm.load(model_dir, adapter_path=directory)``; returns the directory.
    Each file is written whole or not at all."""
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    weights = adapter_weights(model)
    mx.eval(weights)
    target = os.path.join(directory, "adapters.safetensors")
    with atomic_path(target) as tmp:  # keeps the .safetensors extension mx.save_* wants
        mx.save_safetensors(tmp, weights)
    write_json(os.path.join(directory, "adapter_config.json"), dict(adapter_config))
    return directory


# ---------------------------------------------------------------------------------- batches
def corpus_batches(documents: Sequence[np.ndarray], seq_len: int, batch_size: int, *,
                   seed: int = 0, shuffle: bool = True, **options: Any) -> SequenceBatches:
    """Pre-training batches: the documents joined and cut into windows of ``seq_len``
    positions, every batch ``[batch_size, seq_len]`` (one compiled shape).

    ``options`` go to :meth:`trainers.SequenceBatches.windows` (``vocab_size``, ``backend``,
    ``prefetch``, ...).

    Example:
        >>> data = corpus_batches([np.arange(9), np.arange(8)], 4, 2, shuffle=False)
        >>> data.shapes, len(data)
        (((2, 4),), 2)
    """
    return SequenceBatches.windows(list(documents), seq_len, batch_size, seed=seed,
                                   shuffle=shuffle, **options)


def validation_batches(documents: Sequence[np.ndarray], seq_len: int, batch_size: int, *,
                       windows: int | None = 256, **options: Any) -> SequenceBatches:
    """A fixed validation set: ``windows`` windows of ``seq_len`` positions spread evenly over
    the joined documents (all of them with ``windows=None``), in order.

    Evenly spread windows sample every validation document rather than the first ones, at a
    fixed cost per evaluation.

    Example:
        >>> data = validation_batches([np.arange(100)], 9, 2, windows=4)
        >>> [b["inputs"][:, 0].tolist() for b in data]
        [[0, 30], [60, 90]]
    """
    stream = np.concatenate([np.asarray(d) for d in documents])
    if windows is None:
        return SequenceBatches.windows(stream, seq_len, batch_size, shuffle=False, **options)
    if stream.size < seq_len + 1:
        raise ValueError(f"validation data holds {stream.size} tokens, fewer than one window "
                         f"of {seq_len + 1}")
    starts = np.linspace(0, stream.size - seq_len - 1, windows).round().astype(np.int64)
    pieces = [stream[s:s + seq_len + 1] for s in starts]
    return SequenceBatches(pieces, batch_size, buckets=(seq_len,), shuffle=False, **options)


def example_batches(sequences: Sequence[np.ndarray], batch_size: int, *, max_length: int,
                    prompt_lengths: Sequence[int] | None = None, bucket: int = 32,
                    seed: int = 0, shuffle: bool = True, **options: Any) -> SequenceBatches:
    """Fine-tuning batches: one example per row, in length buckets of ``bucket`` positions up
    to ``max_length`` (longer examples are truncated, as mlx-lm does); with
    ``prompt_lengths`` the prompt tokens are left out of the loss.

    Example:
        >>> data = example_batches([np.arange(5), np.arange(40)], 2, max_length=64)
        >>> data.shapes
        ((2, 32), (2, 64))
    """
    return SequenceBatches(list(sequences), batch_size, buckets=bucket,
                           max_length=max_length, long="truncate",
                           prompt_lengths=prompt_lengths, seed=seed, shuffle=shuffle, **options)


# ---------------------------------------------------------------------------------- results
def validation_metrics(model: nn.Module, batches: Any, *, byte_level: bool) -> dict[str, float]:
    """``{"val_loss": nats per token, "val_tokens": n}`` and, for byte-level data,
    ``"val_bits_per_byte"``, over every token of ``batches`` (each token weighs the same).

    Example:
        >>> model = build_model(model_config("llama", "tiny"))
        >>> out = validation_metrics(model, validation_batches([np.arange(64)], 8, 2, windows=2),
        ...                          byte_level=True)
        >>> sorted(out), out["val_tokens"]
        (['val_bits_per_byte', 'val_loss', 'val_tokens'], 16)
    """
    out = evaluate_lm(model, batches, byte_level=byte_level)
    metrics = {"val_loss": out["loss"], "val_tokens": out["tokens"]}
    if byte_level:
        metrics["val_bits_per_byte"] = out["bits_per_byte"]
    return metrics


def generate_tokens(model: nn.Module, prompt: Sequence[int], count: int, *,
                    temperature: float = 0.8, seed: int = 0) -> list[int]:
    """``count`` tokens sampled from ``model`` after ``prompt`` (mlx-lm's generation loop with
    its key-value cache); ``temperature=0`` takes the most likely token.

    Example:
        >>> model = build_model(model_config("llama", "tiny"))
        >>> len(generate_tokens(model, [35, 32], 5))
        5
    """
    from mlx_lm.generate import generate_step
    from mlx_lm.sample_utils import make_sampler

    if not prompt:
        raise ValueError("prompt must hold at least one token")
    mx.random.seed(seed)
    was_training = model.training
    model.train(False)
    try:
        steps = generate_step(mx.array(list(prompt), mx.int32), model, max_tokens=count,
                              sampler=make_sampler(temp=temperature))
        return [int(token) for token, _ in steps]
    finally:
        model.train(was_training)


def read_adapter_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The ``adapter_config.json`` of an adapters directory."""
    with open(os.path.join(os.fspath(directory), "adapter_config.json"), encoding="utf-8") as f:
        return json.load(f)


# ---------------------------------------------------------------------------------- schedules
#: the schedule families for language models: the digits comparison's families
#: (:data:`experiments.families.FAMILIES`) and the two usual for transformers
LM_SCHEDULES = ("warmup_cosine", "wsd", *FAMILIES)
#: warmup-cosine ends at this fraction of the peak (as nanoGPT's ``min_lr``)
COSINE_FLOOR = 0.1
#: warmup-stable-decay decays over this fraction of the run (linearly, to 0)
WSD_DECAY_FRACTION = 0.2


def schedule_configs(family: str, peak: float, steps: int, *,
                     warmup_steps: int | None = None) -> dict[str, Any]:
    """``{"learning_rate": config, "beta1": config or None}`` of a family sized to a run.

    ``warmup_cosine`` warms up linearly over ``warmup_steps`` (default 5% of the run), then
    decays by a cosine to ``peak * COSINE_FLOOR``; ``wsd`` warms up the same way, holds the
    peak and decays linearly to 0 over the last ``WSD_DECAY_FRACTION`` of the run. The other
    families are :func:`experiments.families.family_configs`; their cycled momentum
    (``one_cycle``, ``triangular``) becomes AdamW's ``beta1``.

    Example:
        >>> schedule_configs("wsd", 0.01, 100)["learning_rate"]["decay_steps"]
        20
        >>> schedule_configs("one_cycle", 0.01, 100)["beta1"]["name"]
        'one_cycle_momentum'
    """
    if family not in LM_SCHEDULES:
        raise ValueError(f"schedule must be one of {list(LM_SCHEDULES)}, got {family!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 8:
        raise ValueError(f"steps must be an int >= 8 for a schedule family, got {steps!r}")
    if warmup_steps is None:
        warmup_steps = max(1, steps // 20)
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or \
            not 0 <= warmup_steps < steps // 2:
        raise ValueError(f"warmup_steps must be an int in [0, {steps // 2}), "
                         f"got {warmup_steps!r}")
    if family == "warmup_cosine":
        rate = ms.cosine_decay(peak, steps - warmup_steps, peak * COSINE_FLOOR)
        if warmup_steps:
            rate = ms.warmup(rate, warmup_steps)
        return {"learning_rate": rate.to_config(), "beta1": None}
    if family == "wsd":
        rate = ms.warmup_stable_decay(peak, steps, warmup_steps=warmup_steps,
                                      decay_steps=max(1, round(steps * WSD_DECAY_FRACTION)))
        return {"learning_rate": rate.to_config(), "beta1": None}
    chosen = family_configs(family, peak, steps)
    momentum = chosen["momentum"]
    return {"learning_rate": chosen["learning_rate"],
            "beta1": momentum if isinstance(momentum, dict) else None}


def optimizer_section(family: str, peak: float, steps: int, *, weight_decay: float = 0.0,
                      warmup_steps: int | None = None) -> dict[str, Any]:
    """An AdamW section for :func:`experiments.config.build_optimizer` with a family's rate
    (and cycled ``beta1``) sized to a run.

    Example:
        >>> import mlx.optimizers as optim
        >>> from experiments.config import build_optimizer
        >>> opt = build_optimizer(optimizer_section("one_cycle", 3e-3, 100))
        >>> isinstance(opt, optim.AdamW), round(opt.state["beta1"].item(), 2)
        (True, 0.95)
    """
    chosen = schedule_configs(family, peak, steps, warmup_steps=warmup_steps)
    section = {"name": "AdamW", "learning_rate": chosen["learning_rate"],
               "weight_decay": float(weight_decay)}
    if chosen["beta1"] is not None:
        section["beta1"] = chosen["beta1"]
    return section


# ---------------------------------------------------------------------------------- outputs
def save_model_dir(model: nn.Module, config: Mapping[str, Any], directory: str | os.PathLike,
                   tokenizer: Any = None) -> str:
    """Write ``model.safetensors`` and ``config.json`` (and the tokenizer's files when given)
    into ``directory``: an mlx-lm model directory (``mlx_lm.utils.load_model`` reads it;
    ``mlx_lm.load`` also needs the tokenizer)."""
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    weights = dict(tree_flatten(model.parameters()))
    mx.eval(weights)
    with atomic_path(os.path.join(directory, "model.safetensors")) as tmp:
        mx.save_safetensors(tmp, weights, metadata={"format": "mlx"})
    write_json(os.path.join(directory, "config.json"), dict(config))
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    return directory


#: the chat template of :func:`make_local_model_dir` (role tags as special tokens)
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>"
                 "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")
SPECIAL_TOKENS = ("<|end|>", "<|user|>", "<|assistant|>", "<|system|>")


def make_local_model_dir(directory: str | os.PathLike, texts: Sequence[str], *,
                         architecture: str = "llama", preset: str = "tiny",
                         vocab_size: int = 384, seed: int = 0, **overrides: Any) -> str:
    """Write a random-weight mlx-lm model directory whose tokenizer is trained here, on
    ``texts`` (a byte-level BPE of ``vocab_size`` tokens with a chat template; nothing is
    downloaded). ``mlx_lm.load(directory)`` loads it.

    Example:
        >>> import tempfile, mlx_lm
        >>> path = make_local_model_dir(tempfile.mkdtemp(), ["def f(x):\\n    return x\\n"] * 9,
        ...                             vocab_size=300)
        >>> model, tokenizer = mlx_lm.load(path)
        >>> tokenizer.decode(tokenizer.encode("return x"))
        'return x'
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers import trainers as token_trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(list(texts), token_trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=SPECIAL_TOKENS[0])
    tokenizer.chat_template = CHAT_TEMPLATE
    mx.random.seed(seed)
    config = model_config(architecture, preset, vocab_size=len(tokenizer), **overrides)
    return save_model_dir(build_model(config), config, directory, tokenizer)


def plot_lm_run(train_rows: Sequence[Mapping[str, Any]], eval_rows: Sequence[Mapping[str, Any]],
                path: str, *, byte_level: bool, title: str = "") -> None:
    """The run's curves against step: the rate (and any scheduled beta1), and the training
    and validation loss (in bits per byte for byte-level data)."""
    from .plotting import pyplot, smooth

    plt = pyplot()
    unit = 1 / np.log(2) if byte_level else 1.0
    steps = np.array([r["step"] for r in train_rows])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    rate_key = next((k for k in (train_rows[0] if train_rows else {})
                     if k.startswith("learning_rate")), "learning_rate")
    axes[0].plot(steps, [r[rate_key] for r in train_rows], color="tab:blue", label=rate_key)
    axes[0].set_ylabel("learning rate")
    axes[0].set_ylim(bottom=0)
    if train_rows and "beta1" in train_rows[0]:
        twin = axes[0].twinx()
        twin.plot(steps, [r["beta1"] for r in train_rows], color="tab:orange", label="beta1")
        twin.set_ylabel("beta1")
    axes[0].set_title("schedule (from optimizer.state)")
    loss = np.array([r["loss"] for r in train_rows]) * unit
    axes[1].plot(steps, loss, color="tab:gray", alpha=0.35, lw=0.8, label="train, per step")
    axes[1].plot(steps, smooth(loss, max(1, len(loss) // 50)), color="tab:red",
                 label="train, moving average")
    if eval_rows:
        axes[1].plot([r["step"] for r in eval_rows],
                     [r["eval_loss"] * unit for r in eval_rows], "o-", color="tab:green", ms=3,
                     label="validation")
    axes[1].set_ylabel("bits per byte" if byte_level else "loss (nats per token)")
    axes[1].set_title("loss")
    axes[1].legend()
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
