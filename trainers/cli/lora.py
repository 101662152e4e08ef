#!/usr/bin/env python
"""Fine-tune a language model from an mlx_lm.lora command line or YAML config, with our trainer.

    mlx-schedules lora --model MODEL --train --data DATA --iters 600
    mlx-schedules lora -c lora_config.yaml                   # mlx-lm's YAML keys
    mlx-schedules lora --model MODEL --train --data DATA --fine-tune-type dora --num-layers -1
    mlx-schedules lora --model MODEL --train --data DATA --optimizer adamw \\
        --grad-accumulation-steps 4 --mask-prompt --test
    mlx-schedules lora --model MODEL --train --data DATA --schedule one_cycle --epochs 3 \\
        --patience 3 --restore-best --report-to tensorboard,wandb
    mlx-schedules lora --model MODEL --train --data DATA --resume   # continue a killed run
    mlx-schedules lora --model MODEL --adapter-path adapters --data DATA --test

Every flag of mlx_lm.lora 0.32 and every key of its YAML config is read as mlx-lm reads it
(docs/lora-flags.md lists each with what happens to it); a flag or key that cannot be honoured
stops the command with exit status 2, naming it, before anything is written.

Counting: --iters counts batches as in mlx-lm; with --grad-accumulation-steps K the run makes
iters // K optimizer updates, and every schedule counts updates. --steps-per-report,
--steps-per-eval and --save-every count batches too: each acts at the first update at or after
that many batches (every ceil(N / K) updates).

Output: ADAPTER_PATH (default adapters/) receives what mlx_lm.lora writes there:
adapter_config.json, adapters.safetensors (the final weights; the best ones with
--restore-best) and, every --save-every batches, NNNNNNN_adapters.safetensors; full
fine-tuning also writes ADAPTER_PATH/model/, a whole model directory. mlx_lm.load(MODEL,
adapter_path=ADAPTER_PATH), mlx_lm.generate and mlx_lm.fuse take them. Our run directory
(--run-dir, default ADAPTER_PATH/run) holds lora.json (these settings), the trainer's
config.json, log.jsonl/log.csv (a row per update: loss, learning rate, tokens),
checkpoints/ (verified; --resume continues from the newest exactly), best/ (the best
validation loss) and summary.json.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import sys
import time
from typing import Any, cast

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from trainers import EarlyStopping, MLflow, TensorBoard, Trainer, WandB, causal_lm_loss, tokens_in
from trainers.errors import NonFiniteError
from trainers.experiments.paths import first_missing, remove_empty_dirs
from trainers.experiments.run import OnStart, compile_wanted
from trainers.files import write_json_atomic
from trainers.lm import (
    DataFileError,
    adapter_weights,
    apply_lora,
    encode_rows,
    example_batches,
    mlx_lm_module,
    read_jsonl,
    save_adapter_file,
    save_adapters,
    save_model_dir,
)
from trainers.lm.mlx_lm_config import (
    FEATURE_KEYS,
    LoraConfigError,
    build_optimizer,
    build_parser,
    resolve,
)
from trainers.lm.turns import assistant_masks, masked_lm_loss

SETTINGS_FILE = "lora.json"
#: settings a --resume may differ in (they do not change what is trained)
_NOT_COMPARED = ("resume", "overwrite", "quiet", "explicit", "config", "report_to",
                 "project_name", "test", "test_batches")


def _parser() -> Any:
    first, _, rest = __doc__.strip("\n").partition("\n\n")
    return build_parser("mlx-schedules lora", first, rest)


class _Refused(Exception):
    """Stop before anything is written: exit status 2 with this message."""


# ---------------------------------------------------------------------------------- model
def load_base(settings: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
    """mlx-lm's loader: a local directory or a repository id it resolves."""
    mlx_lm = mlx_lm_module()
    trust = settings["trust_remote_code"]
    try:
        return mlx_lm.load(settings["model"], tokenizer_config={"trust_remote_code": trust},
                           trust_remote_code=trust, return_config=True)
    except Exception as e:  # any loader failure (missing files, no network) stops here
        raise _Refused(f"--model {settings['model']}: cannot load it ({type(e).__name__}: "
                       f"{e})") from None


def prepare_model(model: Any, config: dict[str, Any], settings: dict[str, Any]) -> None:
    """Freeze the model and make trainable what --fine-tune-type asks (mlx-lm's layers and
    rules), then load --resume-adapter-file."""
    blocks = len(model.layers)
    num_layers = settings["num_layers"]
    if num_layers > blocks:
        raise _Refused(f"--num-layers {num_layers}: the model has only {blocks} blocks "
                       "(-1 adapts them all)")
    chosen = blocks if num_layers == -1 else num_layers
    kind = settings["fine_tune_type"]
    mx.random.seed(settings["seed"])  # the adapters' initial weights, as mlx-lm
    if kind == "full":
        if "quantization" in config or "quantization_config" in config:
            raise _Refused("--fine-tune-type full: the model is quantized; train LoRA or DoRA "
                           "adapters on it (QLoRA) or start from the unquantized model")
        model.freeze()
        for layer in model.layers[-chosen:]:
            layer.unfreeze()
    else:
        lora = settings["lora_parameters"]
        try:
            apply_lora(model, lora["rank"], num_layers=chosen, scale=lora["scale"],
                       dropout=lora["dropout"], keys=lora.get("keys"), dora=kind == "dora")
        except (ValueError, KeyError) as e:
            raise _Refused(f"--fine-tune-type {kind}: {e}") from None
        if not adapter_weights(model):
            raise _Refused(f"lora_parameters.keys (config) {lora.get('keys')}: no layer of the "
                           "model has these names")
    path = settings["resume_adapter_file"]
    if path is not None:
        trainable = dict(cast(list[tuple[str, mx.array]],
                              tree_flatten(model.trainable_parameters())))
        try:
            weights = mx.load(path)
        except Exception as e:  # an unreadable file stops here, before anything is written
            raise _Refused(f"--resume-adapter-file {path}: cannot read it ({e})") from None
        if not isinstance(weights, dict):
            raise _Refused(f"--resume-adapter-file {path}: holds one array, not named weights "
                           "(expected adapters.safetensors)")
        wrong = [f"{k} {tuple(v.shape)}" for k, v in weights.items()
                 if k not in trainable or trainable[k].shape != v.shape]
        if wrong:
            raise _Refused(f"--resume-adapter-file {path}: tensors that are not trainable "
                           f"weights of this model (name, shape): {wrong[:5]}")
        model.load_weights(list(weights.items()), strict=False)


# ---------------------------------------------------------------------------------- data
def load_split(settings: dict[str, Any], split: str, tokenizer: Any
               ) -> tuple[list[np.ndarray], dict[str, Any]] | None:
    """A split's token sequences and what batches need to mask them (``None`` when the file
    is missing)."""
    path = os.path.join(settings["data"], f"{split}.jsonl")
    if not os.path.isfile(path):
        return None
    keys = {settings[k]: v for k, v in FEATURE_KEYS.items() if settings[k] not in (None, v)}
    rows, form = read_jsonl(path, keys=keys or None)
    if settings["all_assistant_turns"]:
        sequences, masks = assistant_masks(rows, form, tokenizer, source=path)
        return sequences, {"token_masks": masks}
    if settings["mask_prompt"] and form == "text":
        raise DataFileError(f"{path}: --mask-prompt needs chat or completions rows (mlx-lm: "
                            "'Prompt masking not supported for text dataset')")
    sequences, prompts = encode_rows(rows, form, tokenizer, mask_prompt=settings["mask_prompt"])
    return sequences, ({"prompt_lengths": prompts} if prompts is not None else {})


def make_batches(settings: dict[str, Any], split: tuple, vocab_size: int, *, train: bool,
                 limit: int = -1) -> Any:
    sequences, masking = split
    data = example_batches(sequences, settings["batch_size"],
                           max_length=settings["max_seq_length"] - 1, seed=settings["seed"],
                           shuffle=train, vocab_size=vocab_size, **masking)
    if train or limit == -1:
        return data
    return list(itertools.islice(data.epoch(0), limit))


def evaluate(model: Any, loss_fn: Any, count: Any, batches: Any) -> float:
    """The token-weighted mean loss over ``batches`` (mlx-lm's test loss)."""
    total, tokens = mx.array(0.0), mx.array(0.0)
    was_training = model.training
    model.train(False)
    try:
        for batch in batches:
            batch = {k: mx.array(v) for k, v in batch.items()}
            n = count(batch).astype(mx.float32)
            total = total + loss_fn(model, **batch) * n
            tokens = tokens + n
            mx.eval(total, tokens)
    finally:
        model.train(was_training)
    return float(np.asarray(total / mx.maximum(tokens, 1.0)))


# ---------------------------------------------------------------------------------- output
def adapter_config(settings: dict[str, Any]) -> dict[str, Any]:
    """``adapter_config.json``: mlx-lm's settings as mlx_lm.lora writes them (its loader reads
    ``fine_tune_type``, ``num_layers`` and ``lora_parameters``), our additions apart."""
    from trainers.lm.mlx_lm_config import EXTRA_DEFAULTS

    ours = set(EXTRA_DEFAULTS) | {"explicit", "resume", "overwrite", "quiet"}
    config = {k: v for k, v in settings.items() if k not in ours}
    if config["fine_tune_type"] == "full":
        config["lora_parameters"] = None  # as mlx-lm
    config["mlx_schedules"] = {k: settings[k] for k in sorted(EXTRA_DEFAULTS)}
    return dict(sorted(config.items()))


class AdapterFiles:
    """Writes mlx-lm's adapter files at each checkpoint: ``adapters.safetensors`` and, every
    --save-every batches, ``NNNNNNN_adapters.safetensors`` (numbered by batches, as mlx-lm)."""

    def __init__(self, directory: str, every: int, batches_per_update: int):
        self.directory, self.every, self.per_update = directory, every, batches_per_update
        self.trainer: Trainer | None = None

    def weights(self) -> dict[str, mx.array]:
        assert self.trainer is not None
        if self.trainer.settings.ema is not None and not self.trainer.settings.restore_best:
            return dict(tree_flatten(self.trainer.train_state["ema"]))
        return adapter_weights(self.trainer.model)

    def __call__(self, event: dict) -> None:
        if event.get("event") != "checkpoint" or event["step"] % self.every:
            return
        assert self.trainer is not None
        if self.trainer.rank != 0:  # the main process writes (the weights agree on all ranks)
            return
        weights = self.weights()
        save_adapter_file(weights, os.path.join(self.directory, "adapters.safetensors"))
        name = f"{event['step'] * self.per_update:07d}_adapters.safetensors"
        save_adapter_file(weights, os.path.join(self.directory, name))


def _trackers(settings: dict[str, Any], run_dir: str) -> list[Any]:
    names = [n.strip().lower() for n in (settings["report_to"] or "").split(",") if n.strip()]
    plain = {k: v for k, v in settings.items() if k not in ("explicit",)}
    made: list[Any] = []
    for name in names:
        if name == "wandb":
            # as mlx-lm: the project named, the run named and kept in the adapter path
            made.append(WandB(settings["project_name"],
                              name=os.path.basename(os.path.normpath(settings["adapter_path"])),
                              dir=settings["adapter_path"], config=plain))
        elif name == "tensorboard":
            made.append(TensorBoard(os.path.join(run_dir, "tensorboard")))
        elif name == "mlflow":
            made.append(MLflow(settings["project_name"] or "mlx-schedules",
                               params={k: json.dumps(v) for k, v in plain.items()}))
    return made


def _check_trackers_installed(settings: dict[str, Any]) -> None:
    import importlib.util

    modules = {"wandb": ("wandb", "wandb"), "tensorboard": ("tensorboardX", "tensorboard"),
               "mlflow": ("mlflow", "mlflow")}
    for name in [n.strip().lower() for n in (settings["report_to"] or "").split(",")]:
        if name in modules and importlib.util.find_spec(modules[name][0]) is None:
            raise _Refused(f"--report-to {name}: {modules[name][0]} is not installed "
                           f"(pip install \"mlx-schedules[{modules[name][1]}]\")")


def _compare_saved(run_dir: str, settings: dict[str, Any]) -> None:
    path = os.path.join(run_dir, SETTINGS_FILE)
    if not os.path.isfile(path):
        return  # a run killed before its first update: nothing to compare with
    with open(path, encoding="utf-8") as f:
        saved = json.load(f)
    now = json.loads(json.dumps(settings))
    changed = sorted(k for k in set(saved) | set(now)
                     if k not in _NOT_COMPARED and saved.get(k) != now.get(k))
    if changed:
        raise _Refused("--resume: these settings differ from the run in "
                       f"{run_dir}: " + "; ".join(f"{k} was {saved.get(k)!r}, now "
                                                  f"{now.get(k)!r}" for k in changed))


# ---------------------------------------------------------------------------------- the run
def run(argv: list[str] | None = None) -> tuple[int, dict[str, Any]]:
    """The command: ``(exit status, what it made)`` (the model, trainer and numbers: tests
    read them)."""
    try:
        settings = resolve(argv, _parser())
        _check_trackers_installed(settings)
    except (LoraConfigError, _Refused) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2, {}
    try:
        model, tokenizer, config = load_base(settings)
        if not settings["train"]:
            return _test_only(settings, model, tokenizer)
        return _train(settings, model, tokenizer, config)
    except (_Refused, LoraConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2, {}
    except NonFiniteError as e:  # training diverged: not a refusal, a failed run
        print(f"error: {e}", file=sys.stderr)
        return 1, {}
    except (DataFileError, ValueError) as e:
        print(f"data error: {e}", file=sys.stderr)
        return 2, {}


def _losses(settings: dict[str, Any]) -> tuple[Any, Any]:
    """The loss and the token count (``tokens_in`` reads a batch's ``mask`` when it has one)."""
    return (masked_lm_loss if settings["all_assistant_turns"] else causal_lm_loss), tokens_in


def _test_only(settings: dict[str, Any], model: Any, tokenizer: Any) -> tuple[int, dict]:
    from mlx_lm.tuner.utils import load_adapters

    if settings["adapter_path"] != "":  # mlx-lm: an empty path tests the base model
        if not os.path.isfile(os.path.join(settings["adapter_path"], "adapter_config.json")):
            raise _Refused(f"--adapter-path {settings['adapter_path']}: no adapter_config.json "
                           "(train adapters first, or pass --adapter-path '' for the base model)")
        load_adapters(model, settings["adapter_path"])
    test = load_split(settings, "test", tokenizer)
    if test is None:
        raise _Refused(f"--test: {settings['data']} holds no test.jsonl")
    loss_fn, count = _losses(settings)
    batches = make_batches(settings, test, _vocab_size(model), train=False,
                           limit=settings["test_batches"])
    loss = evaluate(model, loss_fn, count, batches)
    print(f"Test loss {loss:.3f}, Test ppl {math.exp(loss):.3f}.")
    return 0, {"model": model, "test_loss": loss}


def _size(tree: Any) -> int:
    # without ``destination`` tree_flatten returns a list (its stub is the union with dict)
    return sum(v.size for _, v in cast(list[tuple[str, mx.array]], tree_flatten(tree)))


def _vocab_size(model: Any) -> int:
    return int(model(mx.zeros((1, 1), mx.int32)).shape[-1])


def _train(settings: dict[str, Any], model: Any, tokenizer: Any,
           config: dict[str, Any]) -> tuple[int, dict]:
    adapter_path = settings["adapter_path"]
    run_dir = settings["run_dir"] or os.path.join(adapter_path, "run")
    prepare_model(model, config, settings)
    vocab_size = _vocab_size(model)
    splits = {s: load_split(settings, s, tokenizer) for s in ("train", "valid")}
    if splits["train"] is None:
        raise _Refused(f"--data {settings['data']}: no train.jsonl (mlx-lm: 'Training set not "
                       "found or empty')")
    test = load_split(settings, "test", tokenizer) if settings["test"] else None
    if settings["test"] and test is None:
        raise _Refused(f"--test: {settings['data']} holds no test.jsonl")
    if splits["valid"] is None:
        for key in ("restore_best", "patience"):
            if settings[key] not in (None, False):
                raise _Refused(f"--{key.replace('_', '-')} needs validation data: "
                               f"{settings['data']} holds no valid.jsonl")
        print("warning: no valid.jsonl: training without validation (as mlx-lm)",
              file=sys.stderr)
    train = make_batches(settings, splits["train"], vocab_size, train=True)
    valid = None if splits["valid"] is None else make_batches(
        settings, splits["valid"], vocab_size, train=False, limit=settings["val_batches"])
    test_batches = None if test is None else make_batches(
        settings, test, vocab_size, train=False, limit=settings["test_batches"])

    k = settings["grad_accumulation_steps"]
    epochs = settings["epochs"]
    max_steps = settings["iters"] // k if (epochs is None or "iters" in settings["explicit"]) \
        else None
    updates: int = settings["iters"] // k
    if epochs is not None:
        from_epochs = epochs * len(train) // k
        if from_epochs < 1:
            raise _Refused(f"--epochs {epochs}: {len(train)} batches per epoch give no update "
                           f"of --grad-accumulation-steps {k}")
        updates = min(from_epochs, max_steps or from_epochs)
    optimizer = build_optimizer(settings, updates)
    if settings["lr_schedule"] is not None and "learning_rate" in settings["explicit"]:
        print("note: learning_rate is unused: lr_schedule sets the rate (as in mlx-lm)",
              file=sys.stderr)

    def every(batches: int) -> int:  # the first update at or after that many batches
        return max(1, -(-batches // k))

    loss_fn, count = _losses(settings)
    best_metric = "ema_eval_loss" if settings["ema"] is not None else "eval_loss"
    files = AdapterFiles(adapter_path, every(settings["save_every"]), k)
    callbacks: list[Any] = [files]
    if settings["patience"] is not None:
        callbacks.append(EarlyStopping(best_metric, patience=settings["patience"]))
    callbacks += _trackers(settings, run_dir)
    record = {k_: v for k_, v in settings.items() if k_ not in ("resume", "overwrite", "quiet")}

    def on_start(event: dict) -> None:
        if event["resumed"] or trainer.rank != 0:
            return
        write_json_atomic(os.path.join(run_dir, SETTINGS_FILE), record)
        os.makedirs(adapter_path, exist_ok=True)
        write_json_atomic(os.path.join(adapter_path, "adapter_config.json"),
                          adapter_config(settings))

    started = OnStart(on_start, owns=(SETTINGS_FILE, "summary.json", "tensorboard", "mlflow",
                                      "wandb"))
    report = every(settings["steps_per_report"])
    trainer = Trainer(
        model, loss_fn, optimizer, train, run_dir=run_dir, max_steps=max_steps, epochs=epochs,
        eval_data=valid, eval_every=every(settings["steps_per_eval"]) if valid else None,
        eval_at_start=bool(valid),  # as mlx-lm: a validation before the first update
        checkpoint_every=files.every, log_every=report,
        report_every=0 if settings["quiet"] else report, seed=settings["seed"], grad_accum=k,
        compile=compile_wanted("auto"),
        precision="bfloat16" if settings["bf16"] else "float32", ema=settings["ema"],
        keep_best=(best_metric, "min") if valid else None,
        restore_best=settings["restore_best"], grad_checkpoint=settings["grad_checkpoint"],
        cache_limit=settings["clear_cache_threshold"] or None, tokens=count,
        callbacks=[started, *callbacks], config={"lora": record},
    )
    files.trainer = trainer
    if settings["resume"]:
        _compare_saved(run_dir, record)
    trained, total = _size(model.trainable_parameters()), _size(model.parameters())
    print(f"fine-tuning ({settings['fine_tune_type']}) {settings['model']}: {trained} of "
          f"{total} parameters trained, {trainer.total_steps} updates of "
          f"{settings['batch_size']} x {k} examples, {type(optimizer).__name__} -> "
          f"{adapter_path} (run: {run_dir})")
    created = first_missing(adapter_path) or first_missing(run_dir)
    start = time.perf_counter()
    try:
        result = trainer.fit(resume=settings["resume"], overwrite=settings["overwrite"])
    except (ValueError, RuntimeError, OSError) as e:
        if started.started:
            raise
        # refused before training (an occupied or busy run directory): nothing was written
        if created is not None:
            remove_empty_dirs(created)
        hint = (" (pass --resume to continue it or --overwrite to replace it)"
                if "--resume" not in str(e) else "")
        print(f"error: {e}{hint}", file=sys.stderr)
        return 2, {}
    wall = time.perf_counter() - start

    if settings["ema"] is not None and not settings["restore_best"]:
        model.update(trainer.train_state["ema"])  # the adapters are the average
    if trainer.rank != 0:
        return 0, {"model": model, "trainer": trainer}
    save_adapters(model, adapter_config(settings), adapter_path)
    outputs: dict[str, Any] = {"adapters": os.path.join(adapter_path, "adapters.safetensors")}
    if settings["fine_tune_type"] == "full":
        outputs["model"] = save_model_dir(model, config, os.path.join(adapter_path, "model"),
                                          tokenizer)
    summary: dict[str, Any] = {
        "steps": result["step"], "wall_time_s": wall,
        "val_loss": result.get("eval_loss"), "best_step": result.get("best_step"),
        "best_val_loss": result.get("best_value"), **outputs,
    }
    if test_batches is not None:
        summary["test_loss"] = evaluate(model, loss_fn, count, test_batches)
        print(f"Test loss {summary['test_loss']:.3f}, Test ppl "
              f"{math.exp(summary['test_loss']):.3f}.")
    write_json_atomic(os.path.join(run_dir, "summary.json"), summary)
    print(f"done: {result['step']} updates in {wall:.1f} s; adapters in {adapter_path}")
    return 0, {"model": model, "tokenizer": tokenizer, "trainer": trainer, "summary": summary,
               "run_dir": run_dir}


def main(argv: list[str] | None = None) -> int:
    return run(argv)[0]


if __name__ == "__main__":
    sys.exit(main())
