"""Language-model data: the embedded corpus, mlx-lm's jsonl forms, and the batches built on them.

Expected values are computed here from the files themselves (``open``, ``hashlib``, plain
NumPy, the tokenizer's own calls), never from the code under test.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import sysconfig

import numpy as np
import pytest

pytest.importorskip("mlx_lm")

from trainers.lm import (  # noqa: E402  (after the skip: mlx-lm is an optional extra)
    corpus_batches,
    example_batches,
    make_local_model_dir,
    stdlib_corpus,
    unigram_entropy,
    validation_batches,
)
from trainers.lm.data import DataFileError, encode_rows, load_jsonl_dir, read_jsonl  # noqa: E402


def _expected_split(fraction: float = 0.1) -> tuple[list[str], list[str]]:
    files = sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py")))
    train, valid = [], []
    for path in files:
        digest = hashlib.sha256(os.path.basename(path).encode()).digest()
        (valid if int.from_bytes(digest[:8], "big") / 2**64 < fraction else train).append(path)
    return train, valid


def test_corpus_split_is_by_file_name_and_deterministic():
    train, valid = _expected_split()
    first, second = stdlib_corpus(), stdlib_corpus()
    assert first.train_names == second.train_names == [os.path.basename(p) for p in train]
    assert first.valid_names == second.valid_names == [os.path.basename(p) for p in valid]
    assert 0 < len(valid) < len(train)
    for docs, paths in ((first.train, train), (first.valid, valid)):
        assert len(docs) == len(paths)
        for doc, path in zip(docs, paths):
            with open(path, "rb") as f:
                assert doc.tobytes() == f.read()
    for a, b in zip(first.train + first.valid, second.train + second.valid):
        assert np.array_equal(a, b)


def test_corpus_is_large_and_its_unigram_entropy_is_about_four_and_a_half_bits():
    corpus = stdlib_corpus()
    data = np.concatenate(corpus.train)
    assert data.size > 2_000_000
    p = np.bincount(data, minlength=256) / data.size
    p = p[p > 0]
    entropy = float(-(p * np.log2(p)).sum())
    assert 4.0 < entropy < 5.0
    assert unigram_entropy(corpus.train) == pytest.approx(entropy, rel=1e-12)


def test_corpus_windows_cover_every_byte_once():
    docs = [np.arange(10, dtype=np.uint8), np.arange(50, 57, dtype=np.uint8)]
    stream = np.concatenate(docs)
    data = corpus_batches(docs, 4, 2, shuffle=False)
    targets = [t for b in data for row, n in zip(b["targets"], b["lengths"]) for t in row[:n]]
    inputs = [t for b in data for row, n in zip(b["inputs"], b["lengths"]) for t in row[:n]]
    assert targets == stream[1:].tolist() and inputs == stream[:-1].tolist()


def test_validation_windows_are_spread_evenly_and_fixed():
    stream = np.arange(1000) % 251
    data = validation_batches([stream[:400], stream[400:]], 16, 4, windows=8)
    starts = [int(round(i * (1000 - 17) / 7)) for i in range(8)]
    got = [row.tolist() for b in data for row in b["inputs"]]
    assert got == [stream[s:s + 16].tolist() for s in starts]
    assert [row.tolist() for b in data for row in b["inputs"]] == got  # same on every pass


# ---------------------------------------------------------------------------------- jsonl
def _write(path, lines):
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    import mlx_lm

    texts = [bytes(d).decode("utf-8") for d in stdlib_corpus().valid[:2]]
    path = make_local_model_dir(tmp_path_factory.mktemp("model"), texts, vocab_size=320)
    return mlx_lm.load(path)[1]


def test_text_rows_are_encoded_with_the_tokenizer_and_end_with_eos(tmp_path, tokenizer):
    _write(tmp_path / "train.jsonl", [json.dumps({"text": "def f(x):\n    return x"}),
                                      "", json.dumps({"text": "import os"})])
    rows, form = read_jsonl(tmp_path / "train.jsonl")
    assert form == "text" and len(rows) == 2  # the blank line is skipped
    sequences, prompts = encode_rows(rows, form, tokenizer)
    assert prompts is None
    expected = tokenizer.encode("def f(x):\n    return x") + [tokenizer.eos_token_id]
    assert sequences[0].tolist() == expected
    assert tokenizer.decode(sequences[1][:-1].tolist()) == "import os"


def test_text_rows_without_a_tokenizer_are_utf8_bytes(tmp_path):
    _write(tmp_path / "train.jsonl", [json.dumps({"text": "é!"})])
    _write(tmp_path / "valid.jsonl", [json.dumps({"text": "ok"})])
    corpus = load_jsonl_dir(tmp_path)
    assert corpus.byte_level
    assert corpus.train[0].tolist() == list("é!".encode()) and corpus.valid[0].tolist() == [111,
                                                                                            107]


def test_chat_and_completions_rows_use_the_chat_template_and_mask_the_prompt(tmp_path,
                                                                              tokenizer):
    chat = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"}]
    _write(tmp_path / "train.jsonl", [json.dumps({"messages": chat})])
    _write(tmp_path / "valid.jsonl", [json.dumps({"prompt": "2+2", "completion": "4"})])
    corpus = load_jsonl_dir(tmp_path, tokenizer, mask_prompt=True)
    full = tokenizer.encode("<|system|>be brief<|end|><|user|>hi<|end|><|assistant|>hello<|end|>")
    head = tokenizer.encode("<|system|>be brief<|end|><|user|>hi<|end|><|assistant|>")
    assert corpus.train[0].tolist() == full and corpus.train_prompts == [len(head)]
    full = tokenizer.encode("<|user|>2+2<|end|><|assistant|>4<|end|>")
    head = tokenizer.encode("<|user|>2+2<|end|><|assistant|>")
    assert corpus.valid[0].tolist() == full and corpus.valid_prompts == [len(head)]
    assert not corpus.byte_level
    # the batches leave the prompt out of the loss: the counted targets are the answer's
    data = example_batches(corpus.valid, 1, max_length=32, prompt_lengths=corpus.valid_prompts,
                           shuffle=False)
    batch = next(iter(data))
    lo, hi = int(batch["offsets"][0]), int(batch["lengths"][0])
    assert batch["targets"][0, lo:hi].tolist() == full[len(head):]


def test_chat_rows_need_a_tokenizer(tmp_path):
    _write(tmp_path / "train.jsonl", [json.dumps({"prompt": "a", "completion": "b"})])
    rows, form = read_jsonl(tmp_path / "train.jsonl")
    with pytest.raises(DataFileError, match="completions rows need a tokenizer"):
        encode_rows(rows, form, None)


@pytest.mark.parametrize("bad, message", [
    ("{not json", "line 3: not valid JSON"),
    ("[1, 2]", "line 3: expected an object with 'text'"),
    ('{"txt": "a"}', "line 3: expected an object with 'text'"),
    ('{"text": 5}', "line 3: 'text' must be a string"),
    ('{"prompt": "a", "completion": "b"}', "line 3: a completions row in a file of text rows"),
])
def test_malformed_rows_are_rejected_with_their_line_number(tmp_path, bad, message):
    _write(tmp_path / "train.jsonl", [json.dumps({"text": "a"}), "", bad])
    with pytest.raises(DataFileError, match=message) as err:
        read_jsonl(tmp_path / "train.jsonl")
    assert "train.jsonl" in str(err.value)


@pytest.mark.parametrize("bad, message", [
    ({"messages": []}, "line 1: 'messages' must be a non-empty list"),
    ({"messages": [{"role": "user"}]}, r"line 1: messages\[0\] must be an object"),
    ({"prompt": "a", "completion": None}, "line 1: 'completion' must be a string"),
])
def test_malformed_chat_rows_are_rejected(tmp_path, bad, message):
    _write(tmp_path / "valid.jsonl", [json.dumps(bad)])
    with pytest.raises(DataFileError, match=message):
        read_jsonl(tmp_path / "valid.jsonl")


def test_missing_and_empty_files_are_named(tmp_path):
    with pytest.raises(DataFileError, match="train.jsonl: no such file"):
        load_jsonl_dir(tmp_path)
    _write(tmp_path / "train.jsonl", [""])
    with pytest.raises(DataFileError, match="train.jsonl: holds no row"):
        read_jsonl(tmp_path / "train.jsonl")


def test_unigram_entropy_of_a_uniform_byte_stream_is_eight_bits():
    assert unigram_entropy([np.arange(256, dtype=np.uint8)] * 3) == pytest.approx(8.0)
    assert math.isclose(unigram_entropy([np.array([1, 1, 2, 3], np.uint8)]), 1.5)
