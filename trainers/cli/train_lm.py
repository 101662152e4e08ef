#!/usr/bin/env python
"""Train a causal language model (an mlx-lm architecture) with our schedules and trainer.

    mlx-schedules train-lm                                # llama 'small', stdlib bytes
    mlx-schedules train-lm --steps 1000 --preset medium --schedule wsd --max-lr 2e-3
    mlx-schedules train-lm --arch qwen2 --bf16 --ema 0.99 --grad-checkpoint --sample 200
    mlx-schedules train-lm --resume runs/lm               # continue a killed run exactly
    mlx-schedules train-lm --resume runs/lm --steps 600   # train a run on to 600 updates
    mlx-schedules train-lm --model-path MODEL_DIR --data-path DATA_DIR --lora-rank 8 \\
        --max-lr 1e-4 --run-dir runs/lora                     # LoRA adapters mlx-lm loads
    mlx.launch -n 2 scripts/train_lm.py --batch-size 32       # data parallel

Data: by default the embedded corpus, the running Python's standard library (its top-level
``*.py`` files as bytes, split into training and validation files by a hash of each name); or,
with ``--data-path DIR``, mlx-lm's ``train.jsonl``/``valid.jsonl`` (``{"text"}``,
``{"messages"}`` or ``{"prompt", "completion"}`` rows), tokenized with the model's tokenizer
(bytes without ``--model-path``).

Model: an mlx-lm architecture (``--arch``) of a size preset (``--preset``) with random weights,
or a local mlx-lm model directory (``--model-path``: weights, config, tokenizer), trained whole
or, with ``--lora-rank R``, through mlx-lm's LoRA layers.

With ``--resume``, the run's own settings apply. ``--steps`` may grow (the run trains on, its
schedule sized to the new length from the resumed step on); ``--eval-every``,
``--checkpoint-every``, ``--log-every`` and ``--no-plots`` may change; any other flag that
differs from the run's value stops the resume, naming it.

Everything is checked before anything is written (exit status 2 and a message naming the
problem, and for a data file its line). The run directory receives ``experiment.json`` (these
settings; ``--resume`` reads them back), the trainer's ``config.json``, ``log.jsonl``/``log.csv``
(a row per step: loss, learning rate, every scheduled hyperparameter, tokens), ``checkpoints/``
and ``best/``, ``summary.json`` (``val_loss``, and ``val_bits_per_byte`` for byte-level data),
``curves.png``, and ``adapters/`` (``adapters.safetensors`` + ``adapter_config.json``: pass it
to ``mlx_lm.load(MODEL_DIR, adapter_path=...)``) or ``model/`` (the trained weights and
config), each written whole, with the user's umask and never through a symbolic link.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
import time
from typing import Any, cast

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from trainers import Trainer, bits_per_byte, causal_lm_loss, tokens_in
from trainers.cli.args import script_parser
from trainers.cli.messages import fresh_start_refused, in_flag_words, report_interrupt
from trainers.experiments.config import build_optimizer
from trainers.experiments.lm_schedules import LM_SCHEDULES, optimizer_section
from trainers.experiments.models import ModelTooLarge, check_model_fits, lm_memory_estimate
from trainers.experiments.paths import first_missing, remove_empty_dirs
from trainers.experiments.plotting import plot_lm_run
from trainers.experiments.run import OnStart, read_log
from trainers.files import write_json_atomic
from trainers.lm import (
    ARCHITECTURES,
    PRESETS,
    Corpus,
    DataFileError,
    apply_lora,
    build_model,
    corpus_batches,
    example_batches,
    generate_tokens,
    load_jsonl_dir,
    load_model_dir,
    model_config,
    read_config,
    save_adapters,
    save_model_dir,
    stdlib_corpus,
    unigram_entropy,
    validation_batches,
    validation_metrics,
)

DEFAULTS: dict[str, Any] = {
    "steps": 300, "batch_size": 16, "seq_len": None, "arch": "llama", "preset": "small",
    "model_path": None, "data_path": None, "lora_rank": None, "lora_layers": None,
    "lora_scale": 20.0, "mask_prompt": False, "schedule": "warmup_cosine", "max_lr": None,
    "warmup_steps": None, "weight_decay": 0.0, "seed": 0, "bf16": False,
    "grad_checkpoint": False, "ema": None, "restore_best": False, "clip_norm": None,
    "eval_every": 100, "checkpoint_every": 100, "log_every": 25, "valid_windows": 256,
    "plots": True,
}
#: the default peak rate: a random-weight model from scratch, or an adaptation of a trained one
DEFAULT_PEAK = {"scratch": 1e-3, "lora": 1e-4, "full": 1e-5}
SEQ_LEN = {"corpus": 128, "jsonl": 2048}
#: the schedules with a warmup of --warmup-steps (default 5% of --steps)
WARMUP_FAMILIES = ("warmup_cosine", "wsd")
SETTINGS_FILE = "experiment.json"
#: the flags that are not settings of the run: they apply to this session only
SESSION_DEFAULTS: dict[str, Any] = {
    "run_dir": "runs/lm", "overwrite": False, "sample": 0, "sample_prompt": "def ",
    "temperature": 0.8, "no_plots": False, "quiet": False,
}
#: the settings a resume may change, and how (every other one must keep its saved value)
RESUME_FLAGS = {
    "steps": "trains on to the new number of updates; the schedule is sized to it from the "
             "resumed step on (its warmup kept), the rows already logged keep their rates",
    "eval_every": "validates at the new interval", "checkpoint_every": "saves at the new "
    "interval", "log_every": "writes the log in blocks of the new size",
    "plots": "--no-plots skips curves.png",
}


class SettingsError(ValueError):
    """A setting is invalid; the message names the flag."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = script_parser(__doc__, "mlx-schedules train-lm")
    add = p.add_argument
    add("--steps", type=int, help=f"optimizer updates (default {DEFAULTS['steps']})")
    add("--run-dir", help="output directory (default runs/lm)")
    add("--overwrite", action="store_true", default=None,
        help="replace a run in --run-dir")
    add("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR with its settings "
        "(a larger --steps trains it on)")
    add("--data-path", metavar="DIR", help="a folder with train.jsonl and valid.jsonl "
        "(default: the embedded standard-library corpus)")
    add("--model-path", metavar="DIR", help="a local mlx-lm model directory to train")
    add("--lora-rank", type=int, metavar="R", help="train LoRA adapters of rank R "
        "(needs --model-path)")
    add("--lora-layers", type=int, help="adapt the last N blocks (default: all)")
    add("--lora-scale", type=float, help="mlx-lm's LoRA scale (default 20)")
    add("--mask-prompt", action="store_true", default=None,
        help="train on answers only (chat/completions)")
    add("--arch", choices=list(ARCHITECTURES), help="architecture of a new model "
        "(default llama)")
    add("--preset", choices=list(PRESETS), help="size of a new model (default small)")
    add("--seq-len", type=int, help="positions per window (default 128), or the longest "
        "jsonl example (default 2048)")
    add("--batch-size", type=int, help=f"sequences per update (default {DEFAULTS['batch_size']})")
    add("--schedule", choices=list(LM_SCHEDULES), help="rate schedule, sized to --steps "
        "(default warmup_cosine)")
    add("--max-lr", type=float, help="peak rate (default 1e-3 from scratch, 1e-4 LoRA, "
        "1e-5 full fine-tuning)")
    add("--warmup-steps", type=int, help="warmup of warmup_cosine/wsd (default 5%% of steps)")
    add("--weight-decay", type=float, help="AdamW weight decay (default 0)")
    add("--clip-norm", type=float, help="clip the global gradient norm")
    add("--seed", type=int, help="weights, data order and dropout (default 0)")
    add("--bf16", action="store_true", default=None,
        help="bfloat16 compute on float32 master weights")
    add("--grad-checkpoint", action="store_true", default=None,
        help="recompute block activations")
    add("--ema", type=float, metavar="DECAY", help="keep an average of the weights")
    add("--restore-best", action="store_true", default=None,
        help="end with the best validation weights")
    add("--eval-every", type=int, help="validate every N updates (default 100)")
    add("--checkpoint-every", type=int, help="checkpoint every N updates (default 100)")
    add("--log-every", type=int, help="updates per block of log rows (default 25)")
    add("--valid-windows", type=int, help="validation windows of the corpus (default 256)")
    add("--sample", type=int, metavar="N", help="print N generated tokens")
    add("--sample-prompt", help="prompt of --sample (default 'def ')")
    add("--temperature", type=float, help="sampling temperature (default 0.8)")
    add("--no-plots", action="store_true", default=None, help="skip curves.png")
    add("--quiet", action="store_true", default=None, help="no console report")
    args = p.parse_args(argv)
    # every flag defaults to None, so that what was given is known (a resume checks it)
    args.given = sorted(k for k, v in vars(args).items() if v is not None)
    for key, value in SESSION_DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


# ---------------------------------------------------------------------------------- settings
def settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The run's settings (plain data, saved as experiment.json), checked. Raises
    SettingsError naming the flag."""
    settings = dict(DEFAULTS)
    for key in DEFAULTS:
        value = getattr(args, key, None)
        if value is not None and value is not False:
            settings[key] = value
    settings["plots"] = not args.no_plots
    for key in ("model_path", "data_path"):
        if settings[key] is not None:
            settings[key] = os.path.abspath(settings[key])
    return check_settings(settings)


def check_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Check every setting; fill the defaults that depend on others (peak rate, seq_len).
    Raises one SettingsError naming every wrong flag (one per line)."""
    problems: list[str] = []

    flag = _flag

    def positive_int(key: str, minimum: int = 1, optional: bool = False) -> None:
        value = settings[key]
        if optional and value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            problems.append(f"{flag(key)} must be an int >= {minimum}, got {value!r}")

    positive_int("steps", 8)
    positive_int("batch_size")
    positive_int("seq_len", 2, optional=True)
    positive_int("seed", 0)
    positive_int("eval_every", 0)
    positive_int("checkpoint_every", 0)
    positive_int("log_every")
    positive_int("valid_windows", optional=True)
    positive_int("lora_rank", optional=True)
    positive_int("lora_layers", optional=True)
    positive_int("warmup_steps", 0, optional=True)
    if settings["arch"] not in ARCHITECTURES:
        problems.append(f"--arch must be one of {list(ARCHITECTURES)}, "
                        f"got {settings['arch']!r}")
    if settings["preset"] not in PRESETS:
        problems.append(f"--preset must be one of {list(PRESETS)}, "
                        f"got {settings['preset']!r}")
    if settings["schedule"] not in LM_SCHEDULES:
        problems.append(f"--schedule must be one of {list(LM_SCHEDULES)}, "
                        f"got {settings['schedule']!r}")
    for key in ("model_path", "data_path"):
        if settings[key] is not None and not os.path.isdir(settings[key]):
            problems.append(f"{flag(key)} {settings[key]}: not a directory")
    if settings["model_path"] is not None and os.path.isdir(settings["model_path"]) and \
            not os.path.isfile(os.path.join(settings["model_path"], "config.json")):
        problems.append(f"--model-path {settings['model_path']}: no config.json (expected "
                        "a local mlx-lm model directory)")
    if settings["lora_rank"] is not None and settings["model_path"] is None:
        problems.append("--lora-rank needs --model-path (adapters adapt a saved model)")
    if settings["lora_layers"] is not None and settings["lora_rank"] is None:
        problems.append("--lora-layers needs --lora-rank")
    if settings["mask_prompt"] and settings["data_path"] is None:
        problems.append("--mask-prompt needs --data-path (chat or completions rows)")
    for key, low, high in (("lora_scale", 0.0, None), ("weight_decay", 0.0, None),
                           ("clip_norm", 0.0, None), ("max_lr", 0.0, None),
                           ("ema", 0.0, 1.0)):
        value = settings[key]
        if value is None:
            continue
        ok = isinstance(value, int | float) and np.isfinite(value) and value >= low and \
            (high is None or value < high) and (key not in ("max_lr", "clip_norm") or value > 0)
        if not ok:
            bound = f"in [{low}, {high})" if high is not None else f"> {low}" if key in (
                "max_lr", "clip_norm") else f">= {low}"
            problems.append(f"{flag(key)} must be a finite number {bound}, got {value!r}")
    if problems:  # the schedule below is sized from the settings above
        raise SettingsError("\n".join(problems))
    if settings["max_lr"] is None:
        kind = "scratch" if settings["model_path"] is None else (
            "lora" if settings["lora_rank"] else "full")
        settings["max_lr"] = DEFAULT_PEAK[kind]
    if settings["seq_len"] is None:
        settings["seq_len"] = SEQ_LEN["jsonl" if settings["data_path"] else "corpus"]
    try:
        optimizer_section(settings["schedule"], settings["max_lr"], settings["steps"],
                          weight_decay=settings["weight_decay"],
                          warmup_steps=settings["warmup_steps"])
    except ValueError as e:
        raise SettingsError(f"--schedule {settings['schedule']}: {e}") from None
    return settings


def read_settings(run_dir: str) -> dict[str, Any]:
    """The settings saved in a run directory's ``experiment.json``, checked."""
    if not os.path.isdir(run_dir):
        raise SettingsError(f"--resume: run directory {run_dir} does not exist")
    path = os.path.join(run_dir, SETTINGS_FILE)
    if not os.path.isfile(path):
        raise SettingsError(f"--resume: {run_dir} holds no {SETTINGS_FILE} "
                            "(not a run directory of mlx-schedules train-lm)")
    saved = read_json_object(path, "--resume")
    unknown = sorted(set(saved) - set(DEFAULTS))
    if unknown:
        raise SettingsError(f"--resume: {path} holds unknown settings {unknown}")
    return check_settings({**DEFAULTS, **saved})


def read_json_object(path: str, what: str) -> dict[str, Any]:
    """A JSON object from ``path``; a SettingsError names the file and the line otherwise."""
    try:
        return read_config(path)
    except ValueError as e:
        raise SettingsError(f"{what}: {e}") from None


def _given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The run settings given on the command line, as they would be saved."""
    given = {}
    for key in args.given:
        if key in DEFAULTS:
            value = getattr(args, key)
            if key in ("model_path", "data_path"):
                value = os.path.abspath(value)
            given[key] = value
    if "no_plots" in args.given:
        given["plots"] = False
    return given


def resume_settings(args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    """The settings of the run to resume with the flags given beside ``--resume`` applied:
    ``(settings, the keys that changed)``. A flag that may change (:data:`RESUME_FLAGS`) is
    applied; one that repeats the saved value is accepted; any other stops the resume with a
    SettingsError naming every such flag."""
    run_dir = args.resume
    if "overwrite" in args.given:
        raise SettingsError("--overwrite with --resume: a resume continues the run in "
                            f"{run_dir}; --overwrite starts a new one (give one of them)")
    if "run_dir" in args.given and os.path.abspath(args.run_dir) != os.path.abspath(run_dir):
        raise SettingsError(f"--run-dir {args.run_dir} with --resume {run_dir}: a resumed run "
                            "continues in its own directory (leave --run-dir out)")
    saved = read_settings(run_dir)
    settings, changed, refused = dict(saved), [], []
    for key, value in _given_settings(args).items():
        if value == saved[key]:
            continue
        if key not in RESUME_FLAGS:
            refused.append(f"{_flag(key)} {_shown(value)} (the run has {_shown(saved[key])})")
            continue
        settings[key] = value
        changed.append(key)
    if refused:
        raise SettingsError(
            f"--resume {run_dir}: {'; '.join(refused)}: a resume continues the run with its "
            f"own settings, so these cannot change (leave them out, or start a new run with "
            f"--run-dir). Flags that may change on a resume: "
            f"{', '.join(_flag(k) for k in RESUME_FLAGS if k != 'plots')}, --no-plots")
    if "steps" in changed:
        if settings["steps"] < saved["steps"]:
            raise SettingsError(f"--steps {settings['steps']} with --resume: the run in "
                                f"{run_dir} is set for {saved['steps']} updates; --steps can "
                                "only extend it")
        if settings["warmup_steps"] is None and settings["schedule"] in WARMUP_FAMILIES:
            # the warmup the run started with (5% of its first length), not 5% of the new one
            settings["warmup_steps"] = max(1, saved["steps"] // 20)
    return check_settings(settings), changed


def _flag(key: str) -> str:
    return "--no-plots" if key == "plots" else "--" + key.replace("_", "-")


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def planned_steps(run_dir: str) -> int | None:
    """The length the run in ``run_dir`` had when it started (the trainer's ``config.json``,
    written at the start only), or None when it cannot be read."""
    try:
        with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as f:
            steps = json.load(f)["max_steps"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return steps if isinstance(steps, int) else None


# ---------------------------------------------------------------------------------- building
def load_model(settings: dict[str, Any]) -> tuple[Any, Any, dict[str, Any], dict | None]:
    """``(model, tokenizer or None, model config, adapter config or None)``."""
    mx.random.seed(settings["seed"])  # the new weights (and the LoRA matrices)
    if settings["model_path"] is None:
        config = model_config(settings["arch"], settings["preset"],
                              max_position_embeddings=max(2048, settings["seq_len"]))
        return build_model(config), None, config, None
    model, tokenizer, config = load_model_dir(settings["model_path"])
    adapter = None
    if settings["lora_rank"]:
        adapter = apply_lora(model, settings["lora_rank"], num_layers=settings["lora_layers"],
                             scale=settings["lora_scale"])
    return model, tokenizer, config, adapter


def load_data(settings: dict[str, Any], tokenizer: Any) -> Corpus:
    if settings["data_path"] is not None:
        return load_jsonl_dir(settings["data_path"], tokenizer,
                              mask_prompt=settings["mask_prompt"])
    corpus = stdlib_corpus()
    if tokenizer is None:
        return corpus
    # a model with its own tokenizer reads the corpus as text, in its own tokens
    encode = [np.asarray(tokenizer.encode(bytes(d).decode("utf-8", "replace")), np.int64)
              for d in (*corpus.train, *corpus.valid)]
    n = len(corpus.train)
    return Corpus(train=encode[:n], valid=encode[n:], train_names=corpus.train_names,
                  valid_names=corpus.valid_names, byte_level=False)


def make_batches(settings: dict[str, Any], corpus: Corpus, vocab_size: int) -> tuple[Any, Any]:
    """Training and validation batches; raises DataFileError naming the file (and what it
    lacks) when the data cannot fill them."""
    size, seq_len, seed = settings["batch_size"], settings["seq_len"], settings["seed"]
    if settings["data_path"] is None:
        train = _batches_of("the embedded corpus's training files", lambda: corpus_batches(
            corpus.train, seq_len, size, seed=seed, vocab_size=vocab_size))
        valid = _batches_of("the embedded corpus's validation files", lambda: validation_batches(
            corpus.valid, seq_len, size, windows=settings["valid_windows"],
            vocab_size=vocab_size))
        return train, valid
    files = {split: os.path.join(settings["data_path"], f"{split}.jsonl")
             for split in ("train", "valid")}
    for split, sequences in (("train", corpus.train), ("valid", corpus.valid)):
        longest = max(len(s) for s in sequences)
        if longest < 2:
            raise DataFileError(
                f"{files[split]}: every row is shorter than 2 tokens (the longest holds "
                f"{longest}); a row needs at least 2, as each token is predicted from the ones "
                "before it")
    train = _batches_of(files["train"], lambda: example_batches(
        corpus.train, size, max_length=seq_len, prompt_lengths=corpus.train_prompts, seed=seed,
        vocab_size=vocab_size))
    valid = _batches_of(files["valid"], lambda: example_batches(
        corpus.valid, size, max_length=seq_len, prompt_lengths=corpus.valid_prompts,
        shuffle=False, vocab_size=vocab_size))
    return train, valid


def _batches_of(source: str, build: Any) -> Any:
    """``build()``; a ValueError becomes a DataFileError naming the data's ``source``."""
    try:
        return build()
    except ValueError as e:
        raise DataFileError(f"{source}: {e}") from None


def vocab_size_of(model: Any, config: dict[str, Any]) -> int:
    size = config.get("vocab_size") or config.get("text_config", {}).get("vocab_size")
    if not size:  # the logits' width is the vocabulary
        size = model(mx.zeros((1, 1), mx.int32)).shape[-1]
    return int(size)


# ---------------------------------------------------------------------------------- the run
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    changed: list[str] = []
    try:
        if args.resume:
            run_dir = args.resume
            settings, changed = resume_settings(args)
        else:
            run_dir = args.run_dir
            settings = settings_from_args(args)
    except SettingsError as e:
        for problem in str(e).splitlines():  # every wrong flag at once
            print(f"error: {problem}", file=sys.stderr)
        return 2
    refused = None if args.resume or args.overwrite else fresh_start_refused(run_dir)
    if refused:
        print(f"error: {refused}", file=sys.stderr)  # before loading anything
        return 2
    allow_changes: tuple[str, ...] = ()
    if args.resume and settings["steps"] != planned_steps(run_dir):
        # a longer run than the one started (now or by an earlier resume): the trainer
        # compares its length and its schedule with the checkpoint's; both follow --steps
        allow_changes = ("max_steps", "schedules")
    try:  # every problem with the model or the data is found here, before anything is written
        model, tokenizer, config, adapter = load_model(settings)
    except ImportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as e:
        print(f"model error: {e}", file=sys.stderr)
        return 2
    try:  # an attention matrix far beyond the machine's memory crashes MLX: refuse it here
        weight_bytes = sum(v.nbytes for _, v in cast(list[tuple[str, mx.array]],
                                                     tree_flatten(model.parameters())))
        check_model_fits(lm_memory_estimate(
            config, weight_bytes=weight_bytes, trainable=count(model, True),
            batch_size=settings["batch_size"],
            seq_len=settings["seq_len"], grad_checkpoint=settings["grad_checkpoint"]),
            field="--seq-len and --batch-size")
    except ModelTooLarge as e:
        print(f"error: {e}; use a shorter --seq-len, a smaller --batch-size or "
              "--grad-checkpoint", file=sys.stderr)
        return 2
    try:
        corpus = load_data(settings, tokenizer)
        vocab_size = vocab_size_of(model, config)
        train, valid = make_batches(settings, corpus, vocab_size)
    except ImportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (DataFileError, FileNotFoundError, ValueError) as e:
        print(f"data error: {e}", file=sys.stderr)
        return 2

    group = mx.distributed.init()
    rank = group.rank()
    unsafe = unsafe_output(run_dir, output_names(settings, adapters=adapter is not None))
    if unsafe:  # every rank sees it (one file system), so every rank stops
        if rank == 0:
            print(f"error: {unsafe}", file=sys.stderr)
        return 2
    optimizer = build_optimizer(optimizer_section(
        settings["schedule"], settings["max_lr"], settings["steps"],
        weight_decay=settings["weight_decay"], warmup_steps=settings["warmup_steps"]))
    byte_level = corpus.byte_level

    described = (f"{config.get('model_type')} from {os.path.basename(settings['model_path'])}"
                 if settings["model_path"] else f"{settings['arch']} '{settings['preset']}'")
    lora = f" + LoRA rank {settings['lora_rank']}" if settings["lora_rank"] else ""
    start_step = []

    def write_settings(event: dict) -> None:
        start_step.append(event["step"])
        if rank != 0:
            return
        # a resume that changed a setting records it, once the trainer has accepted the resume
        if not event["resumed"] or changed:
            write_json_atomic(os.path.join(run_dir, SETTINGS_FILE), settings)
        # the banner, once the trainer owns the run directory (a refusal comes without one)
        data = settings["data_path"] or "the standard library"
        what = (f"{described}{lora} ({count(model)} parameters, "
                f"{count(model, trainable=True)} trained) on {data}: {len(corpus.train)} "
                f"training and {len(corpus.valid)} validation documents, "
                f"{settings['schedule']} peak {settings['max_lr']:g}")
        if event["resumed"]:
            print(f"resuming {run_dir} from step {event['step']} of {settings['steps']}: "
                  f"{what}")
        else:
            print(f"training {what}, {settings['steps']} steps -> {run_dir}")

    started = OnStart(write_settings, owns=(SETTINGS_FILE, "summary.json", "adapters", "model",
                                            "curves.png"))
    best_metric = "ema_eval_loss" if settings["ema"] is not None else "eval_loss"
    trainer = Trainer(
        model, causal_lm_loss, optimizer, train, run_dir=run_dir, max_steps=settings["steps"],
        eval_data=valid, metrics={"bits_per_byte": bits_per_byte} if byte_level else None,
        eval_every=settings["eval_every"] or None,
        checkpoint_every=settings["checkpoint_every"], log_every=settings["log_every"],
        report_every=0 if args.quiet else settings["log_every"], seed=settings["seed"],
        clip_norm=settings["clip_norm"], precision="bfloat16" if settings["bf16"] else "float32",
        ema=settings["ema"], keep_best=(best_metric, "min"),
        restore_best=settings["restore_best"], grad_checkpoint=settings["grad_checkpoint"],
        tokens=tokens_in, callbacks=[started], group=group,
        config={"experiment": settings, "model": config},
    )
    created = first_missing(run_dir)
    start = time.perf_counter()
    try:
        trainer.fit(resume=bool(args.resume), overwrite=args.overwrite,
                    allow_changes=allow_changes)
    except KeyboardInterrupt as e:
        if not started.started:
            raise
        return report_interrupt(e, "train-lm", run_dir) if rank == 0 else 130
    except (ValueError, RuntimeError, OSError) as e:
        if started.started:
            raise
        # The trainer refused the run directory before training: nothing of this run was
        # written there.
        if created is not None and rank == 0:
            remove_empty_dirs(created)
        print(f"error: {in_flag_words(str(e), run_dir)}", file=sys.stderr)
        return 2
    wall = time.perf_counter() - start
    first_step = start_step[0] if start_step else trainer.step
    summary_path = os.path.join(run_dir, "summary.json")
    if args.resume and trainer.step == first_step and os.path.isfile(summary_path):
        # a finished run resumed: summary.json is written last, so every output is there;
        # rewriting them would only change the timings (no update was made)
        if rank == 0:
            print(f"the run in {run_dir} is finished ({trainer.step} steps): nothing to do, "
                  "its outputs are unchanged")
            print_sample(args, model, tokenizer, seed=settings["seed"])
        return 0

    metrics = validation_metrics(model, valid, byte_level=byte_level)
    if rank != 0:
        return 0
    outputs = {}
    if adapter is not None:
        outputs["adapters"] = save_adapters(model, adapter, os.path.join(run_dir, "adapters"),
                                            root=run_dir)
    else:
        outputs["model"] = save_model_dir(model, config, os.path.join(run_dir, "model"),
                                          tokenizer, root=run_dir)
    summary = summarise(run_dir, settings, metrics, corpus, wall_time=wall,
                        start_step=first_step)
    summary.update(outputs)
    summary["parameters"], summary["trained_parameters"] = count(model), count(model, True)
    if settings["plots"]:
        try:
            train_rows, eval_rows = read_log(run_dir)
            plot_lm_run(train_rows, eval_rows, os.path.join(run_dir, "curves.png"),
                        byte_level=byte_level,
                        title=f"{described}{lora}: {settings['schedule']}, peak "
                              f"{settings['max_lr']:g}, batch {settings['batch_size']} x "
                              f"{settings['seq_len']}")
        except RuntimeError as e:
            print(f"warning: no plots: {e}", file=sys.stderr)
    write_json_atomic(summary_path, summary)  # the last output: its presence means all are there
    bits = (f", {metrics['val_bits_per_byte']:.3f} bits/byte" if byte_level else "")
    print(f"done: validation loss {metrics['val_loss']:.4f}{bits} after {summary['steps']} "
          f"steps, {wall:.1f} s, {summary['tokens_per_s']:.0f} tokens/s")
    print_sample(args, model, tokenizer, seed=settings["seed"])
    return 0


def print_sample(args: argparse.Namespace, model: Any, tokenizer: Any, *, seed: int) -> None:
    """Print ``--sample`` tokens generated after ``--sample-prompt`` (nothing without it)."""
    if args.sample:
        print(f"sample ({args.sample} tokens, temperature {args.temperature:g}):")
        print(sample_text(model, tokenizer, args.sample_prompt, args.sample,
                          temperature=args.temperature, seed=seed))


def summarise(run_dir: str, settings: dict[str, Any], metrics: dict[str, float],
              corpus: Corpus, *, wall_time: float, start_step: int) -> dict[str, Any]:
    train_rows, eval_rows = read_log(run_dir)
    tail = [r["loss"] for r in train_rows[-max(1, len(train_rows) // 10):]]
    tokens = sum(r.get("tokens", 0.0) for r in train_rows)
    session_rows = [r for r in train_rows if r["step"] >= start_step]
    best = min(eval_rows, key=lambda r: r["eval_loss"]) if eval_rows else None
    summary: dict[str, Any] = {
        **{k: v for k, v in metrics.items()},
        "steps": int(train_rows[-1]["step"]) + 1 if train_rows else 0,
        "train_loss": float(np.mean(tail)) if tail else None,
        "best_eval_loss": best["eval_loss"] if best else None,
        "best_eval_step": best["step"] if best else None,
        "train_tokens": int(tokens),
        "wall_time_s": wall_time,
        "tokens_per_s": sum(r.get("tokens", 0.0) for r in session_rows) / max(wall_time, 1e-9),
        "schedule": settings["schedule"], "max_lr": settings["max_lr"],
    }
    if corpus.byte_level:
        summary["valid_unigram_bits_per_byte"] = unigram_entropy(corpus.valid)
    return summary


def sample_text(model: Any, tokenizer: Any, prompt: str, count: int, *, temperature: float,
                seed: int) -> str:
    if tokenizer is None:
        tokens = generate_tokens(model, list(prompt.encode("utf-8")), count,
                                 temperature=temperature, seed=seed)
        return prompt + bytes(t % 256 for t in tokens).decode("utf-8", "replace")
    tokens = generate_tokens(model, list(tokenizer.encode(prompt)), count,
                             temperature=temperature, seed=seed)
    return prompt + tokenizer.decode(tokens)


def output_names(settings: dict[str, Any], *, adapters: bool) -> list[str]:
    """The paths this script writes in the run directory after training (folders end in /);
    the trainer checks its own files."""
    names = ["summary.json"]
    if settings["plots"]:
        names.append("curves.png")
    if adapters:
        names += ["adapters/", "adapters/adapters.safetensors", "adapters/adapter_config.json"]
    else:
        names += ["model/", "model/model.safetensors", "model/config.json"]
    return names


def unsafe_output(run_dir: str, names: list[str]) -> str | None:
    """Why an output cannot be written safely (a symbolic link, or a file where a folder goes
    or the reverse), or None. Checked before training, so that a run is not spent and then
    refused at the end; the writers refuse links again when they write."""
    for name in names:
        path = os.path.join(run_dir, name.rstrip("/"))
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        except OSError as e:
            return f"cannot check {path}: {e.strerror or e}"
        if stat.S_ISLNK(st.st_mode):
            return (f"refusing to write {path}: it is a symbolic link; the outputs of a run are "
                    "never written through one (remove it, or choose another run directory)")
        folder = name.endswith("/")
        if folder and not stat.S_ISDIR(st.st_mode):
            return f"refusing to write into {path}: it is not a folder"
        if not folder and not stat.S_ISREG(st.st_mode):
            return f"refusing to write {path}: it is not a regular file"
    return None


def count(model: Any, trainable: bool = False) -> int:
    params = model.trainable_parameters() if trainable else model.parameters()
    return sum(int(v.size) for _, v in cast(list[tuple[str, mx.array]], tree_flatten(params)))


if __name__ == "__main__":
    sys.exit(main())
