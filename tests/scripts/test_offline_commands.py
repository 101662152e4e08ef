"""The two commands of the offline path: ``mlx-schedules tiny-model DIR`` (a model directory
made here) and ``mlx-schedules example-data DIR`` (jsonl data from the interpreter's docstrings).
mlx-lm's own loaders read what they write; the same interpreter gives the same bytes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

mlx_lm = pytest.importorskip("mlx_lm")
from mlx_lm.tuner.datasets import (  # noqa: E402
    ChatDataset,
    CompletionsDataset,
    TextDataset,
    load_local_dataset,
)

from trainers.cli import main  # noqa: E402

SPLITS = ("train", "valid", "test")


def split_of(name: str) -> str:
    """Where the example about ``name`` belongs: valid below 10% of the hash range, test
    below 20% (written out here, independently of the command)."""
    fraction = int(hashlib.sha256(name.encode()).hexdigest()[:16], 16) / 16**16
    return "valid" if fraction < 0.1 else "test" if fraction < 0.2 else "train"


def read_rows(directory: Path) -> dict[str, list[dict]]:
    return {s: [json.loads(line) for line in (directory / f"{s}.jsonl").read_text(
        encoding="utf-8").splitlines()] for s in SPLITS}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "model"
    assert main(["tiny-model", str(path)]) == 0
    return path


# ------------------------------------------------------------------------------ example-data
@pytest.mark.parametrize("form, kind", [("chat", ChatDataset),
                                        ("completions", CompletionsDataset),
                                        ("text", TextDataset)])
def test_example_data_is_what_mlx_lm_reads(form, kind, model_dir, tmp_path, capsys):
    assert main(["example-data", str(tmp_path), "--format", form]) == 0
    out = capsys.readouterr().out
    rows = read_rows(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["test.jsonl", "train.jsonl", "valid.jsonl"]
    for split in SPLITS:
        assert f"{split}.jsonl: {len(rows[split])} rows" in out
    assert len(rows["train"]) > 200 and len(rows["valid"]) >= 10 and len(rows["test"]) >= 10

    _, tokenizer = mlx_lm.load(str(model_dir))
    config = types.SimpleNamespace(mask_prompt=form != "text")
    datasets = load_local_dataset(tmp_path, tokenizer, config)
    for split, dataset in zip(SPLITS, datasets):
        assert isinstance(dataset, kind) and len(dataset) == len(rows[split])
        tokens, offset = dataset.process(dataset[0])
        assert len(tokens) > offset >= 0 and (offset > 0) == (form != "text")


def test_example_rows_hold_the_docstrings_and_their_split(tmp_path):
    assert main(["example-data", str(tmp_path), "--format", "completions"]) == 0
    rows = read_rows(tmp_path)
    by_prompt = {}
    for split, split_rows in rows.items():
        for row in split_rows:
            name = row["prompt"].removeprefix("What does `").removesuffix("` do?")
            assert row["prompt"] == f"What does `{name}` do?"
            assert split_of(name) == split, name
            by_prompt[name] = row["completion"]
    # json.dumps: the first paragraph of its docstring, read here directly
    first = json.dumps.__doc__.split("\n\n")[0]
    assert by_prompt["json.dumps"] == " ".join(first.split())
    assert by_prompt["math.degrees"] == " ".join(__import__("math").degrees.__doc__.split())
    assert len(by_prompt) == sum(map(len, rows.values()))  # each name asked about once


def test_example_data_is_the_same_in_another_process(tmp_path):
    assert main(["example-data", str(tmp_path / "here"), "--format", "chat"]) == 0
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # another order of sets and dicts
    subprocess.run([sys.executable, "-m", "trainers.cli", "example-data",
                    str(tmp_path / "there")], env=env, check=True, capture_output=True)
    for split in SPLITS:
        assert (tmp_path / "here" / f"{split}.jsonl").read_bytes() == \
            (tmp_path / "there" / f"{split}.jsonl").read_bytes()


def test_example_data_keeps_existing_files(tmp_path, capsys):
    (tmp_path / "valid.jsonl").write_text("mine\n")
    assert main(["example-data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "already holds valid.jsonl" in err
    assert sorted(os.listdir(tmp_path)) == ["valid.jsonl"]
    assert (tmp_path / "valid.jsonl").read_text() == "mine\n"


def test_example_data_help_names_the_source_and_licence(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["example-data", "--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "docstrings" in text and "Python Software Foundation License" in text


# -------------------------------------------------------------------------------- tiny-model
def test_tiny_model_loads_in_mlx_lm(model_dir):
    import mlx.core as mx

    config = json.loads((model_dir / "config.json").read_text())
    # the 'tiny' preset (docs: 64 wide, 2 blocks, MLP 192, 4 heads) and the default vocabulary
    assert (config["model_type"], config["hidden_size"], config["num_hidden_layers"],
            config["intermediate_size"], config["vocab_size"]) == ("llama", 64, 2, 192, 512)
    model, tokenizer = mlx_lm.load(str(model_dir))
    text = "What does `json.dumps` do?\nSerialize ``obj`` to a JSON formatted ``str``."
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    # trained on the example data: its question's opening is a handful of tokens, not bytes
    assert len(tokenizer.encode("What does `")) <= 3
    assert len(ids) < 0.7 * len(text.encode())
    assert model(mx.array([ids])).shape == (1, len(ids), 512)
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}],
                                         add_generation_prompt=True, tokenize=False)
    assert chat == "<|user|>hi<|end|><|assistant|>"
    assert tokenizer.eos_token == "<|end|>"


def test_tiny_model_is_the_same_in_another_process(model_dir, tmp_path):
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    run = subprocess.run([sys.executable, "-m", "trainers.cli", "tiny-model",
                          str(tmp_path / "again")], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "mlx-schedules lora --model" in run.stdout and "mlx_lm.load" in run.stdout
    assert "--num-layers -1" in run.stdout  # mlx-lm's default, 16 blocks, is more than 2
    names = sorted(os.listdir(model_dir))
    assert names == sorted(os.listdir(tmp_path / "again"))
    for name in names:
        assert (model_dir / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name


def test_tiny_model_options(tmp_path):
    assert main(["tiny-model", str(tmp_path / "q"), "--arch", "qwen2", "--preset",
                 "small", "--vocab-size", "300", "--seed", "3"]) == 0
    config = json.loads((tmp_path / "q" / "config.json").read_text())
    assert (config["model_type"], config["hidden_size"], config["vocab_size"]) == \
        ("qwen2", 128, 300)


@pytest.mark.parametrize("argv, message", [
    (["--vocab-size", "100"], "vocab_size must be an int >= 260"),
    (["--preset", "huge"], "argument --preset: invalid choice: 'huge'"),
])
def test_tiny_model_bad_flags(argv, message, tmp_path, capsys):
    target = tmp_path / "m"
    try:
        status = main(["tiny-model", str(target), *argv])
    except SystemExit as stop:
        status = stop.code
    assert status == 2
    assert message in capsys.readouterr().err
    assert os.listdir(tmp_path) == []  # nothing written, not even a temporary folder


def test_tiny_model_keeps_a_folder_that_holds_files(tmp_path, capsys):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "notes.txt").write_text("mine")
    assert main(["tiny-model", str(tmp_path / "m")]) == 2
    assert "already exists and is not an empty folder" in capsys.readouterr().err
    assert os.listdir(tmp_path / "m") == ["notes.txt"]
    assert sorted(os.listdir(tmp_path)) == ["m"]
