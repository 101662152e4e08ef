"""`mlx-schedules lora`, the drop-in for `mlx_lm.lora`: mlx-lm's command lines and YAML configs
(those of its LORA.md that need no network), adapters that mlx-lm loads with our model's
logits bit for bit (LoRA, DoRA, QLoRA on a 4-bit base, full fine-tuning), refusals that write
nothing, accumulation counted in updates, every assistant turn, exact resume, W&B offline.

The model is tiny (16 blocks of width 32, mlx-lm's default --num-layers being 16) and the runs
are a few updates long. Expected values come from elsewhere: mlx-lm's own loader and
evaluation, float64 formulas of the schedules, the tokenizer's rendering of each turn, the
bytes of W&B's own record file.
"""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys
import zlib

import mlx.core as mx
import numpy as np
import pytest

pytest.importorskip("mlx_lm")

import mlx_lm  # noqa: E402
from helpers_scripts import ROOT  # noqa: E402

from trainers import audit_run  # noqa: E402
from trainers.cli import lora  # noqa: E402
from trainers.lm import make_local_model_dir  # noqa: E402
from trainers.lm.turns import assistant_masks  # noqa: E402

PROBE = mx.array([[5, 17, 33, 2, 9, 100, 41, 7]])
QUICK = ["--batch-size", "4", "--quiet"]


def _rows(n: int) -> dict[str, list[dict]]:
    chat = [{"messages": [{"role": "system", "content": "be brief"},
                          {"role": "user", "content": f"what is {i} times 2?"},
                          {"role": "assistant", "content": f"{2 * i}"},
                          {"role": "user", "content": "and plus one?"},
                          {"role": "assistant", "content": f"{2 * i + 1}"}]} for i in range(n)]
    completions = [{"prompt": f"def f{i}(x):", "completion": f" return x * {i}"}
                   for i in range(n)]
    text = [{"text": f"def f{i}(x):\n    return x * {i}\n"} for i in range(n)]
    renamed = [{"input": r["prompt"], "output": r["completion"]} for r in completions]
    # LORA.md's "tools" row, one city per row
    tools = [{"messages": [
        {"role": "user", "content": f"What is the weather in city {i}?"},
        {"role": "assistant", "tool_calls": [{"id": "call_id", "type": "function", "function": {
            "name": "get_current_weather",
            "arguments": json.dumps({"location": f"city {i}", "format": "celsius"})}}]}],
        "tools": [{"type": "function", "function": {
            "name": "get_current_weather", "description": "Get the current weather",
            "parameters": {"type": "object", "properties": {
                "location": {"type": "string", "description": "The city and country"},
                "format": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                "required": ["location", "format"]}}}]} for i in range(n)]
    return {"chat": chat, "completions": completions, "text": text, "renamed": renamed,
            "tools": tools}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny model directory, its 4-bit copy, and one data folder per row form."""
    root = tmp_path_factory.mktemp("lora")
    texts = [f"def f{i}(x):\n    return x * {i}\n" for i in range(40)] + \
        [f"what is {i} times 2? and plus one? be brief" for i in range(20)]
    model = make_local_model_dir(root / "model", texts, vocab_size=300, hidden_size=32,
                                 num_hidden_layers=16, intermediate_size=64,
                                 num_attention_heads=2, num_key_value_heads=2)
    quantized = str(root / "model-4bit")
    mlx_lm.convert(model, mlx_path=quantized, quantize=True, q_group_size=32, q_bits=4)
    data = {}
    for split, n in (("train", 24), ("valid", 8), ("test", 8)):
        for form, rows in _rows(n).items():
            folder = root / form
            folder.mkdir(exist_ok=True)
            with open(folder / f"{split}.jsonl", "w", encoding="utf-8") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows)
            data[form] = str(folder)
    return {"root": root, "model": model, "quantized": quantized, **data}


def _train(argv: list[str]) -> dict:
    status, made = lora.run(argv)
    assert status == 0
    return made


def _logits(model) -> np.ndarray:
    model.eval()
    return np.array(model(PROBE))


def _log_rows(run_dir: str) -> list[dict]:
    with open(os.path.join(run_dir, "log.jsonl"), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return [r for r in rows if r["kind"] == "train"]


# ---------------------------------------------------------------------------------- LORA.md
def test_lora_md_fine_tune_command_and_mlx_lm_loads_the_adapters(world, tmp_path):
    # LORA.md "Fine-tune": mlx_lm.lora --model <path_to_model> --train --data <path_to_data>
    # --iters 600 (the last flag repeated with 8 to keep the test short: argparse keeps the last)
    adapters = str(tmp_path / "adapters")
    made = _train(["--model", world["model"], "--train", "--data", world["chat"],
                   "--iters", "600", "--iters", "8", "--adapter-path", adapters,
                   "--save-every", "4", "--learning-rate", "1e-3", *QUICK])
    names = sorted(os.listdir(adapters))
    assert names == ["0000004_adapters.safetensors", "0000008_adapters.safetensors",
                     "adapter_config.json", "adapters.safetensors", "run"]
    config = json.load(open(os.path.join(adapters, "adapter_config.json")))
    assert (config["fine_tune_type"], config["num_layers"]) == ("lora", 16)
    assert config["lora_parameters"] == {"rank": 8, "scale": 20.0, "dropout": 0.0}
    loaded, _ = mlx_lm.load(world["model"], adapter_path=adapters)
    ours = _logits(made["model"])
    assert np.array_equal(_logits(loaded), ours)  # bit for bit
    base, _ = mlx_lm.load(world["model"])
    assert np.abs(_logits(base) - ours).max() > 1e-4  # the adapters did change the model
    final = mx.load(os.path.join(adapters, "adapters.safetensors"))
    numbered = mx.load(os.path.join(adapters, "0000008_adapters.safetensors"))
    assert all(np.array_equal(np.array(final[k]), np.array(numbered[k])) for k in final)
    # LORA.md "Generate": mlx_lm.generate with the adapters
    text = mlx_lm.generate(loaded, _tokenizer(world), prompt="def f", max_tokens=4)
    assert isinstance(text, str)
    # LORA.md "Fuse": mlx_lm.fuse folds them into the weights (W + scale B A: rounding only)
    fused = tmp_path / "fused"
    subprocess.run([sys.executable, "-m", "mlx_lm", "fuse", "--model", world["model"],
                    "--adapter-path", adapters, "--save-path", str(fused)], check=True,
                   capture_output=True, timeout=120)
    np.testing.assert_allclose(_logits(mlx_lm.load(str(fused))[0]), ours, rtol=0, atol=1e-4)


def _tokenizer(world):
    return mlx_lm.load(world["model"])[1]


def test_lora_md_evaluate_command_gives_the_test_loss(world, tmp_path, capsys):
    adapters = str(tmp_path / "adapters")
    _train(["--model", world["model"], "--train", "--data", world["completions"],
            "--iters", "4", "--adapter-path", adapters, "--learning-rate", "1e-3", *QUICK])
    capsys.readouterr()
    # LORA.md "Evaluate": --model <path_to_model> --adapter-path <path> --data <path> --test
    status, made = lora.run(["--model", world["model"], "--adapter-path", adapters,
                             "--data", world["completions"], "--test", "--batch-size", "4"])
    assert status == 0
    assert f"Test loss {made['test_loss']:.3f}" in capsys.readouterr().out
    # the same loss in float64, row by row, from mlx-lm's own loading of the adapters
    model, tokenizer = mlx_lm.load(world["model"], adapter_path=adapters)
    total = count = 0.0
    for row in _rows(8)["completions"]:
        tokens = tokenizer.apply_chat_template(
            [{"role": "user", "content": row["prompt"]},
             {"role": "assistant", "content": row["completion"]}], return_dict=False)
        logits = np.array(model(mx.array([tokens[:-1]]))[0], np.float64)
        logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1,
                                keepdims=True)) - logits.max(-1, keepdims=True)
        total -= logp[np.arange(len(tokens) - 1), tokens[1:]].sum()
        count += len(tokens) - 1
    expected = total / count
    assert made["test_loss"] == pytest.approx(expected, rel=1e-5)


def test_lora_md_config_file_with_the_example_keys(world, tmp_path):
    # mlx-lm's example lora_config.yaml (model and data replaced, fewer iterations), with its
    # commented lr_schedule switched on
    adapters = str(tmp_path / "adapters")
    config = tmp_path / "config.yaml"
    config.write_text(f"""
model: "{world['model']}"
train: true
fine_tune_type: lora
optimizer: adamw
optimizer_config:
  adamw:
    betas: [0.9, 0.98]
    eps: 1e-6
    weight_decay: 0.05
    bias_correction: true
data: "{world['renamed']}"
prompt_feature: "input"
completion_feature: "output"
seed: 0
num_layers: 16
batch_size: 4
iters: 6
val_batches: 25
learning_rate: 1e-5
steps_per_report: 10
steps_per_eval: 200
resume_adapter_file: null
adapter_path: "{adapters}"
save_every: 100
test: true
test_batches: 100
max_seq_length: 2048
grad_checkpoint: true
lora_parameters:
  keys: ["self_attn.q_proj", "self_attn.v_proj"]
  rank: 8
  scale: 20.0
  dropout: 0.0
lr_schedule:
  name: cosine_decay
  warmup: 2
  warmup_init: 1e-7
  arguments: [1e-5, 1000, 1e-7]
""")
    made = _train(["--config", str(config), "--quiet"])
    trainer = made["trainer"]
    assert type(trainer.optimizer).__name__ == "AdamW"
    assert (trainer.optimizer.betas, trainer.optimizer.eps, trainer.optimizer.weight_decay) == \
        ([0.9, 0.98], 1e-6, 0.05)
    keys = {k.split(".")[-2] for k in mx.load(os.path.join(adapters, "adapters.safetensors"))}
    assert keys == {"q_proj", "v_proj"}
    rates = [r["learning_rate"] for r in _log_rows(made["run_dir"])]
    expected = [1e-7 + (1e-5 - 1e-7) * min(t, 2) / 2 if t < 3 else
                1e-7 + (1e-5 - 1e-7) * 0.5 * (1 + math.cos(math.pi * (t - 3) / 1000))
                for t in range(6)]
    np.testing.assert_allclose(rates, expected, rtol=1e-6)
    assert made["summary"]["test_loss"] > 0
    loaded, _ = mlx_lm.load(world["model"], adapter_path=adapters)
    assert np.array_equal(_logits(loaded), _logits(made["model"]))


def test_lora_md_resume_adapter_file_mask_prompt_and_memory_flags(world, tmp_path):
    first = str(tmp_path / "first")
    _train(["--model", world["model"], "--train", "--data", world["chat"], "--iters", "2",
            "--adapter-path", first, "--learning-rate", "1e-3", *QUICK])
    start = mx.load(os.path.join(first, "adapters.safetensors"))
    # LORA.md: --resume-adapter-file; --mask-prompt; "Memory Issues": --batch-size 1
    # --num-layers 4 (adapters of 16 blocks do not fit 4: refused, where mlx-lm would load the
    # matching part silently)
    status, _ = lora.run(["--model", world["model"], "--train", "--data", world["chat"],
                          "--iters", "2", "--adapter-path", str(tmp_path / "x"),
                          "--num-layers", "4", "--resume-adapter-file",
                          os.path.join(first, "adapters.safetensors"), "--quiet"])
    assert status == 2 and not os.path.exists(tmp_path / "x")
    second = str(tmp_path / "second")
    made = _train(["--model", world["model"], "--train", "--batch-size", "1", "--iters", "1",
                   "--learning-rate", "1e-12", "--data", world["chat"], "--mask-prompt",
                   "--adapter-path", second, "--resume-adapter-file",
                   os.path.join(first, "adapters.safetensors"), "--quiet"])
    after = mx.load(os.path.join(second, "adapters.safetensors"))
    # one update at a negligible rate: the adapters are the resumed ones, not fresh ones
    assert all(np.allclose(np.array(after[k]), np.array(start[k]), atol=1e-9) for k in start)
    assert np.abs(np.array(start[next(k for k in start if "lora_b" in k)])).max() > 0
    rows = _log_rows(made["run_dir"])
    # --mask-prompt: the trained tokens of a one-row batch are those of the last message
    tokenizer = _tokenizer(world)
    lengths = set()
    for row in _rows(24)["chat"]:
        whole = tokenizer.apply_chat_template(row["messages"], return_dict=False)
        head = tokenizer.apply_chat_template(row["messages"][:-1], return_dict=False,
                                             add_generation_prompt=True)
        lengths.add(len(whole) - len(head))
    assert rows[0]["tokens"] in lengths


def test_lora_md_tools_rows_train(world, tmp_path):
    # LORA.md's "tools" format: an assistant turn of tool_calls without content
    adapters = str(tmp_path / "tools")
    made = _train(["--model", world["model"], "--train", "--data", world["tools"],
                   "--iters", "2", "--num-layers", "2", "--adapter-path", adapters, *QUICK])
    tokenizer = _tokenizer(world)
    lengths = {len(tokenizer.apply_chat_template(r["messages"], tools=r["tools"],
                                                 return_dict=False)) - 1
               for r in _rows(24)["tools"]}
    # every update trained on four whole rendered rows (tool call included)
    assert all(4 * min(lengths) <= r["tokens"] <= 4 * max(lengths)
               for r in _log_rows(made["run_dir"]))


def test_valid_jsonl_is_optional_as_in_mlx_lm_0_32(world, tmp_path, capsys):
    data = tmp_path / "train-only"
    data.mkdir()
    with open(data / "train.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in _rows(8)["completions"])
    status, _ = lora.run(["--model", world["model"], "--train", "--data", str(data),
                          "--restore-best", "--adapter-path", str(tmp_path / "x"), "--quiet"])
    assert status == 2 and "--restore-best needs validation data" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    made = _train(["--model", world["model"], "--train", "--data", str(data), "--iters", "2",
                   "--num-layers", "2", "--adapter-path", str(tmp_path / "a"), *QUICK])
    assert "no valid.jsonl" in capsys.readouterr().err
    assert len(_log_rows(made["run_dir"])) == 2 and not _eval_rows(made["run_dir"])


# ---------------------------------------------------------------------------------- kinds
def test_dora_adapters_load_in_mlx_lm_bit_for_bit(world, tmp_path):
    adapters = str(tmp_path / "dora")
    made = _train(["--model", world["model"], "--train", "--data", world["completions"],
                   "--fine-tune-type", "dora", "--num-layers", "-1", "--iters", "4",
                   "--learning-rate", "1e-3", "--adapter-path", adapters, *QUICK])
    config = json.load(open(os.path.join(adapters, "adapter_config.json")))
    assert config["fine_tune_type"] == "dora" and config["num_layers"] == -1
    weights = mx.load(os.path.join(adapters, "adapters.safetensors"))
    assert {k.rsplit(".", 1)[-1] for k in weights} == {"lora_a", "lora_b", "m"}
    assert {int(k.split(".")[2]) for k in weights} == set(range(16))  # -1: every block
    loaded, _ = mlx_lm.load(world["model"], adapter_path=adapters)
    assert np.array_equal(_logits(loaded), _logits(made["model"]))


def test_full_fine_tuning_writes_a_model_directory_mlx_lm_loads(world, tmp_path):
    adapters = str(tmp_path / "full")
    made = _train(["--model", world["model"], "--train", "--data", world["text"],
                   "--fine-tune-type", "full", "--num-layers", "2", "--iters", "3",
                   "--learning-rate", "1e-3", "--adapter-path", adapters, *QUICK])
    ours = _logits(made["model"])
    whole, _ = mlx_lm.load(os.path.join(adapters, "model"))
    assert np.array_equal(_logits(whole), ours)
    via_adapters, _ = mlx_lm.load(world["model"], adapter_path=adapters)
    assert np.array_equal(_logits(via_adapters), ours)
    trained = mx.load(os.path.join(adapters, "adapters.safetensors"))
    assert {int(k.split(".")[2]) for k in trained} == {14, 15}  # the last two blocks only


def test_qlora_on_a_4bit_base_trains_and_its_adapters_load(world, tmp_path):
    adapters = str(tmp_path / "qlora")
    made = _train(["--model", world["quantized"], "--train", "--data", world["completions"],
                   "--iters", "4", "--learning-rate", "1e-3", "--adapter-path", adapters,
                   *QUICK])
    loaded, _ = mlx_lm.load(world["quantized"], adapter_path=adapters)
    assert "QuantizedLinear" in {type(m).__name__ for m in loaded.modules()}
    assert np.array_equal(_logits(loaded), _logits(made["model"]))
    rows = _log_rows(made["run_dir"])
    assert len(rows) == 4 and all(math.isfinite(r["loss"]) for r in rows)
    status, _ = lora.run(["--model", world["quantized"], "--train", "--data",
                          world["completions"], "--fine-tune-type", "full",
                          "--adapter-path", str(tmp_path / "no"), "--quiet"])
    assert status == 2 and not os.path.exists(tmp_path / "no")


# ---------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("extra, named", [
    (["--bogus-flag", "1"], "--bogus-flag"),
    (["--iter", "5"], "--iter"),  # no abbreviation of --iters
])
def test_unknown_flag_exits_2_naming_it_and_writes_nothing(world, tmp_path, extra, named):
    adapters = tmp_path / "adapters"
    proc = subprocess.run(
        [sys.executable, "-m", "trainers.cli", "lora", "--model", world["model"], "--train",
         "--data", world["chat"], "--adapter-path", str(adapters), *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert named in proc.stderr
    assert not adapters.exists()


@pytest.mark.parametrize("yaml_text, flags, named", [
    ("training_mode: normal\n", [], "training_mode"),
    ("hf_dataset:\n  path: billsum\n", [], "hf_dataset"),
    ("lora_parameters:\n  rank: 8\n  alpha: 16\n  dropout: 0.0\n", [], "alpha"),
    ("lr_schedule:\n  name: cosine_decay\n  arguments: [1e-5, 10]\n  warm: 3\n", [], "warm"),
    ("", ["--report-to", "swanlab"], "swanlab"),
    ("", ["--data", "mlx-community/wikisql"], "mlx-community/wikisql"),
    ("", ["--num-layers", "17"], "--num-layers"),
    ("", ["--optimizer", "adamx"], "--optimizer"),
    ("optimizer_config:\n  sgd:\n    momentum: 0.9\n    nesterov_typo: true\n",
     ["--optimizer", "sgd"], "optimizer_config.sgd"),
    ("", ["--schedule", "one_cycle", "--schedule-param", "pct_start=2"], "--schedule"),
])
def test_unhonoured_key_or_value_exits_2_naming_it(world, tmp_path, capsys, yaml_text, flags,
                                                   named):
    config = tmp_path / "c.yaml"
    config.write_text(yaml_text)
    adapters = tmp_path / "adapters"
    argv = ["--model", world["model"], "--train", "--data", world["chat"], "-c", str(config),
            "--adapter-path", str(adapters), "--iters", "2", *flags]
    status, _ = lora.run(argv)
    assert status == 2
    assert named in capsys.readouterr().err
    assert not adapters.exists()


# ---------------------------------------------------------------------------------- counting
def test_grad_accumulation_schedules_count_updates(world, tmp_path):
    made = _train(["--model", world["model"], "--train", "--data", world["completions"],
                   "--iters", "16", "--grad-accumulation-steps", "2", "--schedule",
                   "cosine_decay", "--schedule-param", "end=1e-5", "--learning-rate", "1e-3",
                   "--adapter-path", str(tmp_path / "a"), "--num-layers", "2", *QUICK])
    rows = _log_rows(made["run_dir"])
    assert [r["step"] for r in rows] == list(range(8))  # 16 batches = 8 updates
    # the schedule is sized to the 8 updates: cosine from 1e-3 to 1e-5 over 8 steps
    expected = [1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * t / 8)) for t in range(8)]
    np.testing.assert_allclose([r["learning_rate"] for r in rows], expected, rtol=1e-6)
    assert audit_run(made["run_dir"]).ok  # `mlx-schedules audit` reads the run too
    # each update holds two batches of 4 completions: their trained tokens, counted here
    tokenizer = _tokenizer(world)
    per_row = sorted(len(tokenizer.apply_chat_template(
        [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content":
         r["completion"]}], return_dict=False)) - 1 for r in _rows(24)["completions"])
    assert all(8 * per_row[0] <= r["tokens"] <= 8 * per_row[-1] for r in rows)


def test_every_assistant_turn_is_trained_for_whole_epochs(world, tmp_path):
    tokenizer = _tokenizer(world)
    rows = _rows(24)["chat"]
    tokens, masks = assistant_masks(rows, "chat", tokenizer)
    for row, t, m in zip(rows, tokens, masks):
        answers = [msg["content"] for msg in row["messages"] if msg["role"] == "assistant"]
        assert tokenizer.decode(t[m].tolist()) == "".join(a + "<|end|>" for a in answers)
    made = _train(["--model", world["model"], "--train", "--data", world["chat"],
                   "--all-assistant-turns", "--epochs", "1", "--learning-rate", "1e-3",
                   "--adapter-path", str(tmp_path / "a"), "--num-layers", "2", *QUICK])
    log = _log_rows(made["run_dir"])
    assert len(log) == 24 // 4  # one epoch of batches of 4, --iters not given
    assert sum(r["tokens"] for r in log) == sum(int(m.sum()) for m in masks)


# ---------------------------------------------------------------------------------- resume
def _cli(args: list[str]) -> subprocess.CompletedProcess:
    # one OpenBLAS thread: runs in two processes round alike, bit for bit
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "trainers.cli", "lora", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


def test_resume_continues_the_run_exactly(world, tmp_path):
    common = ["--model", world["model"], "--train", "--data", world["completions"],
              "--iters", "8", "--save-every", "4", "--learning-rate", "1e-3",
              "--num-layers", "2", "--batch-size", "4", "--quiet"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert _cli([*common, "--adapter-path", str(whole)]).returncode == 0
    assert _cli([*common, "--adapter-path", str(cut)]).returncode == 0
    # as if killed after the checkpoint of update 4: the last checkpoint and rows are gone
    import shutil

    shutil.rmtree(cut / "run" / "checkpoints" / "step_00000008")
    (cut / "adapters.safetensors").unlink()
    changed = _cli([*common, "--adapter-path", str(cut), "--resume", "--learning-rate", "2e-3"])
    assert changed.returncode == 2 and "learning_rate" in changed.stderr
    assert _cli([*common, "--adapter-path", str(cut), "--resume"]).returncode == 0
    a = mx.load(str(whole / "adapters.safetensors"))
    b = mx.load(str(cut / "adapters.safetensors"))
    assert all(np.array_equal(np.array(a[k]), np.array(b[k])) for k in a)
    assert _log_rows(str(whole / "run")) == _log_rows(str(cut / "run"))
    occupied = _cli([*common, "--adapter-path", str(cut)])
    assert occupied.returncode == 2 and "--overwrite" in occupied.stderr


def test_restore_best_writes_the_best_weights(world, tmp_path):
    adapters = tmp_path / "a"
    made = _train(["--model", world["model"], "--train", "--data", world["completions"],
                   "--iters", "6", "--steps-per-eval", "2", "--learning-rate", "0.05",
                   "--restore-best", "--num-layers", "2", "--adapter-path", str(adapters),
                   *QUICK])
    with open(os.path.join(made["run_dir"], "log.jsonl"), encoding="utf-8") as f:
        evals = [r for r in map(json.loads, f) if r["kind"] == "eval"]
    best = min(evals, key=lambda r: r["eval_loss"])
    saved = mx.load(os.path.join(made["run_dir"], "best", f"step_{best['step']:08d}",
                                 "model.safetensors"))
    final = mx.load(str(adapters / "adapters.safetensors"))
    assert all(np.array_equal(np.array(final[k]), np.array(saved[k])) for k in final)


def _eval_rows(run_dir: str) -> list[dict]:
    with open(os.path.join(run_dir, "log.jsonl"), encoding="utf-8") as f:
        return [r for r in map(json.loads, f) if r["kind"] == "eval"]


def test_patience_stops_at_the_first_evaluation_without_a_lower_loss(world, tmp_path):
    made = _train(["--model", world["model"], "--train", "--data", world["completions"],
                   "--iters", "12", "--steps-per-eval", "1", "--patience", "0",
                   "--learning-rate", "0.05", "--num-layers", "2",
                   "--adapter-path", str(tmp_path / "a"), *QUICK])
    rows = _eval_rows(made["run_dir"])
    losses, steps = [r["eval_loss"] for r in rows], [r["step"] for r in rows]
    assert steps == list(range(len(rows)))  # before the first update (as mlx-lm), then each
    # the rule, from the logged values: stop at the first loss not below all earlier ones
    # (the untrained model's included)
    first_bad = next((i for i in range(1, len(losses)) if losses[i] >= min(losses[:i])), None)
    assert first_bad is not None, "the rate is meant to make the loss rise within 12 updates"
    assert len(losses) == first_bad + 1
    assert made["summary"]["steps"] == steps[first_bad] < 12


def test_ema_and_bf16_write_the_averaged_weights(world, tmp_path):
    adapters = tmp_path / "a"
    made = _train(["--model", world["model"], "--train", "--data", world["completions"],
                   "--iters", "4", "--ema", "0.5", "--bf16", "--learning-rate", "1e-3",
                   "--num-layers", "2", "--adapter-path", str(adapters), *QUICK])
    config = json.load(open(os.path.join(made["run_dir"], "config.json")))
    assert (config["precision"], config["ema"]) == ("bfloat16", 0.5)
    last = os.path.join(made["run_dir"], "checkpoints", "step_00000004")
    state = mx.load(os.path.join(last, "train_state.safetensors"))
    weights = mx.load(os.path.join(last, "model.safetensors"))
    final = mx.load(str(adapters / "adapters.safetensors"))
    assert all(np.array_equal(np.array(final[k]), np.array(state["ema." + k])) for k in final)
    assert any(not np.array_equal(np.array(final[k]), np.array(weights[k])) for k in final)


# ---------------------------------------------------------------------------------- W&B
def _wandb_records(path: str) -> list[bytes]:
    """The records of a W&B ``.wandb`` file (a LevelDB-style log: a 7-byte header, then
    32 KiB blocks of chunks with a CRC-32, a length and a type: 1 full, 2 first, 3 middle,
    4 last)."""
    data = open(path, "rb").read()
    assert data[:4] == b":W&B"
    records, pending, position = [], b"", 7
    while position + 7 <= len(data):
        block_left = 32768 - position % 32768
        if block_left < 7:
            position += block_left
            continue
        crc, length, kind = struct.unpack("<IHB", data[position:position + 7])
        if length == 0 and kind == 0:
            break
        chunk = data[position + 7:position + 7 + length]
        assert crc == zlib.crc32(bytes([kind]) + chunk) & 0xFFFFFFFF
        pending += chunk
        if kind in (1, 4):
            records.append(pending)
            pending = b""
        position += 7 + length
    return records


def test_report_to_wandb_offline_logs_every_row(world, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    adapters = tmp_path / "adapters"
    made = _train(["--model", world["model"], "--train", "--data", world["completions"],
                   "--iters", "4", "--report-to", "wandb,tensorboard",
                   "--project-name", "lora-test",
                   "--adapter-path", str(adapters), "--num-layers", "2", *QUICK])
    runs = list((adapters / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    from wandb.proto import wandb_internal_pb2

    losses = {}
    for raw in _wandb_records(str(runs[0])):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "history":
            items = {i.key or "/".join(i.nested_key): json.loads(i.value_json)
                     for i in record.history.item}
            if "loss" in items:
                losses[items["_step"]] = items["loss"]
    expected = {r["step"]: r["loss"] for r in _log_rows(made["run_dir"])}
    assert losses == expected
    # TensorBoard beside it, read with TensorBoard's own reader
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(os.path.join(made["run_dir"], "tensorboard"))
    events.Reload()
    written = {e.step: e.value for e in events.Scalars("loss")}
    assert written == pytest.approx(expected, rel=1e-6)  # TensorBoard keeps float32
