"""scripts/train_lm.py end to end: bad input, learning on the embedded corpus, exact resume
after SIGKILL, LoRA adapters that mlx-lm loads, samples.

The models are tiny (d=64, 2 blocks, windows of at most 64 bytes): MLX's CPU backend is slow
on transformers. Expected values are computed here independently: the validation windows from
the files themselves, the loss with NumPy from the saved model's logits, LoRA's output from
the adapter file's matrices.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

pytest.importorskip("mlx_lm")

import mlx_lm  # noqa: E402
from helpers_scripts import ROOT, SCRIPTS, assert_png, load_script  # noqa: E402
from mlx_lm.utils import load_model  # noqa: E402

from trainers.lm import make_local_model_dir  # noqa: E402

SCRIPT = os.path.join(SCRIPTS, "train_lm.py")
TINY = ["--preset", "tiny", "--quiet", "--no-plots"]


@pytest.fixture(scope="module")
def train_lm():
    return load_script("train_lm")


def _run_script(args: list[str], **kwargs) -> subprocess.Popen:
    # OpenBLAS's threaded kernels (the mlx-fastblas path) round differently from one process
    # to the next (measured: two uninterrupted runs differ in a loss's last bit); one thread
    # each makes runs bit-reproducible, which the resume test needs.
    env = dict(os.environ, PYTHONHASHSEED="0", OPENBLAS_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, SCRIPT, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _valid_bytes() -> np.ndarray:
    files = sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py")))
    chosen = [p for p in files if int.from_bytes(
        hashlib.sha256(os.path.basename(p).encode()).digest()[:8], "big") < 0.1 * 2**64]
    return np.frombuffer(b"".join(open(p, "rb").read() for p in chosen), np.uint8)


def _log_softmax_loss(logits: np.ndarray, targets: np.ndarray) -> float:
    logits = logits.astype(np.float64)
    top = logits.max(-1, keepdims=True)
    log_z = np.log(np.exp(logits - top).sum(-1)) + top[..., 0]
    picked = np.take_along_axis(logits, targets[..., None], -1)[..., 0]
    return float((log_z - picked).mean())


def test_help_shows_the_usage_examples(train_lm, capsys):
    with pytest.raises(SystemExit) as stop:
        train_lm.main(["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "mlx-schedules train-lm --resume runs/lm" in out and "--lora-rank R" in out


# ---------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("args, message", [
    (["--steps", "3"], "--steps must be an int >= 8, got 3"),
    (["--lora-rank", "4"], "--lora-rank needs --model-path"),
    (["--batch-size", "0"], "--batch-size must be an int >= 1, got 0"),
    (["--max-lr", "-1"], "--max-lr must be a finite number > 0.0, got -1.0"),
    (["--ema", "1.5"], r"--ema must be a finite number in \[0.0, 1.0\), got 1.5"),
    (["--data-path", "no/such/dir"], "--data-path .*no/such/dir: not a directory"),
    (["--model-path", "."], "--model-path .*: no config.json"),
    (["--mask-prompt"], "--mask-prompt needs --data-path"),
    # tiny: 2 layers x 4 heads; 8 bytes x 16 x 4 x 100000^2 x 2 = 10.24 TB of attention alone
    # (MLX crashed with a segmentation fault trying to allocate it)
    (["--seq-len", "100000"], r"--seq-len and --batch-size: the model needs about 10.\d TB "
                              r"to train .* attention scores and probabilities \(batch 16 x "
                              r"4 heads x 100000\^2 x 2 layers\); use a shorter --seq-len"),
])
def test_bad_settings_exit_2_before_writing_anything(train_lm, tmp_path, capsys, args, message):
    run_dir = tmp_path / "run"
    assert train_lm.main([*args, "--run-dir", str(run_dir), *TINY]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not run_dir.exists()


def test_a_malformed_jsonl_row_exits_2_naming_its_line(train_lm, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text('{"text": "a b c"}\n{"text": "d"}\n{"text": 7}\n')
    (data / "valid.jsonl").write_text('{"text": "a b c"}\n')
    run_dir = tmp_path / "run"
    assert train_lm.main(["--data-path", str(data), "--run-dir", str(run_dir), *TINY]) == 2
    err = capsys.readouterr().err
    assert "train.jsonl line 3: 'text' must be a string" in err
    assert not run_dir.exists()


def test_resume_of_a_folder_without_settings_exits_2(train_lm, tmp_path, capsys):
    assert train_lm.main(["--resume", str(tmp_path)]) == 2
    assert "holds no experiment.json" in capsys.readouterr().err


# ---------------------------------------------------------------------------------- learning
@pytest.mark.slow
def test_a_tiny_model_learns_the_corpus_far_below_its_unigram_entropy(train_lm, tmp_path,
                                                                      capsys):
    run_dir = tmp_path / "run"
    seq_len, windows = 64, 64
    code = train_lm.main(["--steps", "300", "--seq-len", str(seq_len), "--batch-size", "8",
                          "--eval-every", "150", "--checkpoint-every", "0",
                          "--valid-windows", str(windows), "--run-dir", str(run_dir),
                          "--sample", "40", "--preset", "tiny", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    valid = _valid_bytes()
    counts = np.bincount(valid, minlength=256) / valid.size
    unigram = float(-(counts[counts > 0] * np.log2(counts[counts > 0])).sum())
    assert summary["valid_unigram_bits_per_byte"] == pytest.approx(unigram, rel=1e-9)
    # an untrained byte model sits at 8 bits; the best context-free model at `unigram` (~4.4)
    assert summary["val_bits_per_byte"] < unigram - 0.8
    assert summary["val_bits_per_byte"] == pytest.approx(summary["val_loss"] / math.log(2))

    # the summary's loss, recomputed from the saved model and the files themselves
    model, _ = load_model(Path(run_dir / "model"))
    starts = np.linspace(0, valid.size - seq_len - 1, windows).round().astype(int)
    rows = np.stack([valid[s:s + seq_len + 1] for s in starts]).astype(np.int32)
    logits = np.array(model(mx.array(rows[:, :-1])).astype(mx.float32))
    assert _log_softmax_loss(logits, rows[:, 1:]) == pytest.approx(summary["val_loss"],
                                                                   rel=1e-4)
    assert summary["steps"] == 300 and summary["train_tokens"] == 300 * 8 * seq_len
    assert_png(str(run_dir / "curves.png"))
    sample = out.split("sample (40 tokens, temperature 0.8):\n")[1]
    assert sample.startswith("def ") and len(sample) > 20  # the sample follows the prompt


# ---------------------------------------------------------------------------------- resume
def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 240.0) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"the run ended before {path} appeared: "
                                 f"{process.stderr.read()}")
        if time.monotonic() > end:
            process.kill()
            raise AssertionError(f"{path} did not appear in {timeout} s")
        time.sleep(0.02)


@pytest.mark.slow
def test_sigkill_then_resume_gives_byte_identical_logs_and_weights(tmp_path):
    args = ["--steps", "24", "--seq-len", "32", "--batch-size", "4", "--eval-every", "8",
            "--checkpoint-every", "8", "--log-every", "4", "--valid-windows", "8",
            "--schedule", "one_cycle", "--ema", "0.9", *TINY]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    first = _run_script([*args, "--run-dir", str(straight)])
    second = _run_script([*args, "--run-dir", str(killed)])
    _wait_for(killed / "checkpoints" / "step_00000016", second)
    second.send_signal(signal.SIGKILL)
    second.wait()
    assert first.wait(timeout=600) == 0, first.stderr.read()
    assert not (killed / "summary.json").exists()
    resumed = _run_script(["--resume", str(killed)])
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
    for name in ("log.jsonl", "experiment.json", "model/model.safetensors",
                 "checkpoints/step_00000024/model.safetensors",
                 "checkpoints/step_00000024/optimizer.safetensors"):
        assert (killed / name).read_bytes() == (straight / name).read_bytes(), name
    rows = [json.loads(line) for line in (killed / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "train"] == list(range(24))
    assert "beta1" in rows[0]  # one_cycle cycles AdamW's beta1, logged per step
    for a, b in zip(json.loads((killed / "summary.json").read_text()).items(),
                    json.loads((straight / "summary.json").read_text()).items()):
        if a[0] not in ("wall_time_s", "tokens_per_s", "model"):
            assert a == b


# ---------------------------------------------------------------------------------- LoRA
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    texts = [open(os.path.join(sysconfig.get_paths()["stdlib"], n), encoding="utf-8").read()
             for n in ("abc.py", "this.py")]
    return make_local_model_dir(tmp_path_factory.mktemp("model"), texts, vocab_size=320)


def _completions(path: Path, count: int, offset: int) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for i in range(offset, offset + count):
            f.write(json.dumps({"prompt": f"square of {i}?", "completion": f"{i * i}"}) + "\n")


@pytest.mark.slow
def test_lora_adapters_load_in_mlx_lm_and_change_its_outputs_exactly_as_ours(model_dir,
                                                                            tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    _completions(data / "train.jsonl", 64, 0)
    _completions(data / "valid.jsonl", 8, 100)
    run_dir = tmp_path / "run"
    proc = _run_script(["--model-path", model_dir, "--data-path", str(data), "--lora-rank", "4",
                        "--lora-layers", "1", "--mask-prompt", "--steps", "16",
                        "--batch-size", "4", "--max-lr", "1e-2", "--eval-every", "8",
                        "--checkpoint-every", "16", "--run-dir", str(run_dir), "--sample", "5",
                        "--sample-prompt", "square", "--quiet", "--no-plots"])
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    adapters = run_dir / "adapters"
    config = json.loads((adapters / "adapter_config.json").read_text())
    assert config == {"fine_tune_type": "lora", "num_layers": 1,
                      "lora_parameters": {"rank": 4, "scale": 20.0, "dropout": 0.0}}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert "val_bits_per_byte" not in summary and summary["adapters"] == str(adapters)

    tokens = mx.array([[5, 17, 42, 99, 3, 250, 1, 77]])
    base, _ = mlx_lm.load(model_dir)
    adapted, _ = mlx_lm.load(model_dir, adapter_path=str(adapters))
    base_logits, adapted_logits = np.array(base(tokens)), np.array(adapted(tokens))
    assert np.abs(adapted_logits - base_logits).max() > 1e-3  # the adapters were trained

    # our model at the end of training: the final checkpoint holds every weight
    ours, _ = mlx_lm.load(model_dir)
    from trainers.lm import apply_lora

    apply_lora(ours, 4, num_layers=1)
    ours.load_weights(str(run_dir / "checkpoints" / "step_00000016" / "model.safetensors"))
    ours.eval()
    assert np.array_equal(np.array(ours(tokens)), adapted_logits)

    # the adapter file holds W + scale * A B on the last block only: check one projection
    weights = mx.load(str(adapters / "adapters.safetensors"))
    last = len(base.layers) - 1
    assert {k.split(".")[2] for k in weights} == {str(last)}
    a = np.array(weights[f"model.layers.{last}.self_attn.q_proj.lora_a"], np.float64)
    b = np.array(weights[f"model.layers.{last}.self_attn.q_proj.lora_b"], np.float64)
    w = np.array(base.layers[last].self_attn.q_proj.weight, np.float64)
    x = np.random.default_rng(0).normal(size=(3, w.shape[1]))
    expected = x @ w.T + 20.0 * (x @ a) @ b
    got = np.array(adapted.layers[last].self_attn.q_proj(mx.array(x, mx.float32)))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert out.split("sample (5 tokens, temperature 0.8):\n")[1].startswith("square")


def test_full_fine_tuning_writes_a_model_directory_mlx_lm_loads(model_dir, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps({"text": f"x = {i}"}) + "\n"
                                              for i in range(16)))
    (data / "valid.jsonl").write_text(json.dumps({"text": "y = 1"}) + "\n")
    run_dir = tmp_path / "run"
    proc = _run_script(["--model-path", model_dir, "--data-path", str(data), "--steps", "8",
                        "--batch-size", "4", "--seq-len", "32", "--eval-every", "8",
                        "--checkpoint-every", "8", "--run-dir", str(run_dir), "--quiet",
                        "--no-plots"])
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    trained, tokenizer = mlx_lm.load(str(run_dir / "model"))
    saved = mx.load(str(run_dir / "checkpoints" / "step_00000008" / "model.safetensors"))
    tokens = mx.array([tokenizer.encode("x = 3")])
    ours, _ = mlx_lm.load(model_dir)
    ours.load_weights(list(saved.items()))
    assert np.array_equal(np.array(trained(tokens)), np.array(ours(tokens)))
    base, _ = mlx_lm.load(model_dir)
    assert not np.array_equal(np.array(base(tokens)), np.array(trained(tokens)))


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["qwen2", "phi"])
def test_bf16_gradient_checkpointing_and_other_architectures_train(train_lm, tmp_path, arch):
    run_dir = tmp_path / "run"
    assert train_lm.main(["--arch", arch, "--bf16", "--grad-checkpoint", "--steps", "8",
                          "--seq-len", "32", "--batch-size", "4", "--valid-windows", "8",
                          "--eval-every", "8", "--run-dir", str(run_dir), *TINY]) == 0
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if r["kind"] == "train"]
    assert len(losses) == 8 and all(math.isfinite(v) for v in losses)
    assert losses[0] == pytest.approx(math.log(256), rel=0.15)  # random weights: ~uniform
    config = json.loads((run_dir / "model" / "config.json").read_text())
    assert config["model_type"] == arch
    model, _ = load_model(Path(run_dir / "model"))  # mlx-lm reads the saved model back
    assert type(model).__module__ == f"mlx_lm.models.{arch}"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["val_bits_per_byte"] < 8.5


@pytest.mark.slow
@pytest.mark.distributed
def test_data_parallel_under_mlx_launch_matches_one_process(tmp_path, mlx_launch):
    args = ["--steps", "8", "--seq-len", "32", "--batch-size", "4", "--valid-windows", "8",
            "--eval-every", "8", "--log-every", "4", *TINY]
    proc = subprocess.Popen([*mlx_launch(2), sys.executable, SCRIPT, *args,
                             "--run-dir", str(tmp_path / "two")], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:  # a hung collective must fail, not stall the suite
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"mlx.launch timed out:\n{proc.communicate()[0][-3000:]}")
    assert proc.returncode == 0, output[-3000:]
    single = _run_script([*args, "--run-dir", str(tmp_path / "one")])
    assert single.wait(timeout=600) == 0, single.stderr.read()

    def rows(name):
        lines = (tmp_path / name / "log.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines]

    two, one = rows("two"), rows("one")
    assert [(r["kind"], r["step"]) for r in two] == [(r["kind"], r["step"]) for r in one]
    for a, b in zip(two, one):  # the global batch's loss and tokens, the same rates
        assert a.get("loss", a.get("eval_loss")) == pytest.approx(
            b.get("loss", b.get("eval_loss")), rel=1e-4)
        assert a.get("tokens") == b.get("tokens") and a.get("learning_rate") == \
            b.get("learning_rate")
    w2 = mx.load(str(tmp_path / "two" / "model" / "model.safetensors"))
    w1 = mx.load(str(tmp_path / "one" / "model" / "model.safetensors"))
    for key in w1:
        np.testing.assert_allclose(np.array(w2[key]), np.array(w1[key]), rtol=1e-4, atol=1e-5,
                                   err_msg=key)
