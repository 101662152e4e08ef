"""Language-model data: the embedded corpus and mlx-lm's ``train.jsonl``/``valid.jsonl`` layout.

The embedded corpus is the running interpreter's own standard library: every top-level
``*.py`` file of ``sysconfig.get_paths()["stdlib"]``, read as bytes (token ids 0-255, no
tokenizer to fetch). A file goes to validation when the SHA-256 of its name falls in the
``valid_fraction`` lowest part of the hash range, so the split depends on the file's name only:
the same on every load and every machine, and a file added to a later Python does not move any
other file across the split.

The jsonl layout is mlx-lm's: one JSON object per line, all rows in one form, the form of the
first row:

- ``{"text": str}``: the text, then the tokenizer's end-of-sequence token (as mlx-lm adds it);
- ``{"messages": [{"role": str, "content": str}, ...]}`` (optionally ``"tools"``): a chat,
  rendered with the tokenizer's chat template;
- ``{"prompt": str, "completion": str}``: a user turn and an assistant turn, rendered the
  same way.

A malformed row (not UTF-8, not JSON, another form, a chat role the chat template does not know)
stops the load with an error naming the file and the line number.
"""

from __future__ import annotations

import difflib
import glob
import hashlib
import json
import os
import sysconfig
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..sequences import read_byte_documents
from .chat_roles import STANDARD_ROLES, chat_roles

__all__ = ["FORMS", "Corpus", "DataFileError", "encode_rows", "load_jsonl_dir", "read_jsonl",
           "row_form", "stdlib_corpus", "stdlib_files", "unigram_entropy"]

FORMS = ("text", "chat", "completions")


class DataFileError(ValueError):
    """A data file is missing or malformed; the message names the file and the line."""


@dataclass(frozen=True)
class Corpus:
    """Token sequences of a training and a validation split (one array per document)."""

    train: list[np.ndarray]
    valid: list[np.ndarray]
    train_names: list[str]
    valid_names: list[str]
    byte_level: bool = True
    #: tokens before which nothing is trained (prompt tokens), per training sequence, or None
    train_prompts: list[int] | None = None
    valid_prompts: list[int] | None = None


def stdlib_files(stdlib: str | None = None) -> list[str]:
    """The top-level ``*.py`` files of the standard library, sorted by name.

    Example:
        >>> any(os.path.basename(p) == "os.py" for p in stdlib_files())
        True
    """
    folder = stdlib or sysconfig.get_paths()["stdlib"]
    files = sorted(glob.glob(os.path.join(folder, "*.py")))
    if not files:
        raise DataFileError(f"no *.py files in the standard library folder {folder}")
    return files


def _in_validation(name: str, valid_fraction: float) -> bool:
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") < valid_fraction * 2**64


def stdlib_corpus(valid_fraction: float = 0.1, *, stdlib: str | None = None) -> Corpus:
    """The embedded corpus: the standard library's top-level modules as byte sequences, split
    into training and validation files by a hash of each file's name.

    Args:
        valid_fraction: the expected share of files in validation (0 < f < 1).
        stdlib: another folder of ``*.py`` files (default: the running interpreter's).

    Example:
        >>> corpus = stdlib_corpus()
        >>> set(corpus.train_names) & set(corpus.valid_names), corpus.train[0].dtype
        (set(), dtype('uint8'))
    """
    if not (isinstance(valid_fraction, float | int) and 0 < valid_fraction < 1):
        raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction!r}")
    files = stdlib_files(stdlib)
    names = [os.path.basename(p) for p in files]
    chosen = [_in_validation(n, valid_fraction) for n in names]
    if all(chosen) or not any(chosen):
        raise DataFileError(f"valid_fraction={valid_fraction} leaves one split of the "
                            f"{len(files)} files empty")
    docs = read_byte_documents(files)
    return Corpus(
        train=[d for d, v in zip(docs, chosen) if not v],
        valid=[d for d, v in zip(docs, chosen) if v],
        train_names=[n for n, v in zip(names, chosen) if not v],
        valid_names=[n for n, v in zip(names, chosen) if v],
    )


def unigram_entropy(documents: Sequence[np.ndarray], vocab_size: int = 256) -> float:
    """Entropy in bits per token of the documents' token frequencies (the loss of the best
    model that ignores context).

    Example:
        >>> unigram_entropy([np.array([0, 1, 0, 1], np.uint8)])
        1.0
    """
    counts = np.zeros(vocab_size, np.int64)
    for d in documents:
        counts += np.bincount(np.asarray(d, np.int64), minlength=vocab_size)[:vocab_size]
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


# ---------------------------------------------------------------------------------- jsonl
def row_form(row: Any) -> str | None:
    """The form of a jsonl row: ``"completions"``, ``"chat"``, ``"text"``, or ``None``.

    Example:
        >>> row_form({"text": "hi"}), row_form({"prompt": "a", "completion": "b"})
        ('text', 'completions')
    """
    if not isinstance(row, dict):
        return None
    if "prompt" in row and "completion" in row:
        return "completions"
    if "messages" in row:
        return "chat"
    if "text" in row:
        return "text"
    return None


def _check_row(row: dict, form: str, roles: Collection[str] = STANDARD_ROLES) -> str | None:
    """What is wrong with a row of a known form (``None`` if nothing)."""
    if form == "text":
        return None if isinstance(row["text"], str) else "'text' must be a string"
    if form == "completions":
        for key in ("prompt", "completion"):
            if not isinstance(row[key], str):
                return f"{key!r} must be a string"
        return None
    messages = row["messages"]
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list"
    for i, m in enumerate(messages):
        # mlx-lm's "tools" rows: an assistant turn may hold tool_calls instead of content
        calls = isinstance(m, dict) and isinstance(m.get("tool_calls"), list) and \
            m.get("content") is None
        if not (isinstance(m, dict) and isinstance(m.get("role"), str)
                and (isinstance(m.get("content"), str) or calls)):
            return (f"messages[{i}] must be an object with string 'role' and 'content' (or "
                    "'tool_calls')")
        if m["role"] not in roles:
            near = difflib.get_close_matches(m["role"], sorted(roles), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            return (f"messages[{i}] has role {m['role']!r}{hint}; the chat template knows "
                    f"{', '.join(sorted(roles))}")
    return None


def read_jsonl(path: str | os.PathLike, *,
               roles: Collection[str] = STANDARD_ROLES,
               keys: dict[str, str] | None = None) -> tuple[list[dict], str]:
    """The rows of an mlx-lm jsonl file and their form (that of the first row).

    Blank lines are skipped. Every row must be UTF-8 text, a JSON object in the first row's
    form; a chat message's role must be one of ``roles`` (default: mlx-lm's ``system``,
    ``user``, ``assistant`` and ``tool``; :func:`trainers.lm.chat_roles.chat_roles` gives
    those of a tokenizer's chat template). ``keys`` renames a row's keys before its form is
    read (``{"input": "prompt"}``: mlx-lm's ``prompt_feature`` and the other ``*_feature``
    settings).

    Raises:
        DataFileError: the file is missing or empty, or a row is malformed (names the line).

    Example:
        >>> import tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "train.jsonl")
        >>> _ = open(path, "w").write('{"text": "a"}\\n{"text": "b"}\\n')
        >>> read_jsonl(path)
        ([{'text': 'a'}, {'text': 'b'}], 'text')
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataFileError(f"{path}: no such file")
    rows: list[dict] = []
    form = None
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataFileError(f"{path} line {number}: not UTF-8 text (byte "
                                    f"0x{raw[e.start]:02x} at column {e.start + 1})") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataFileError(f"{path} line {number}: not valid JSON ({e.msg})") from None
            if keys and isinstance(row, dict):
                row = {keys.get(k, k): v for k, v in row.items()}
            kind = row_form(row)
            if kind is None:
                raise DataFileError(
                    f"{path} line {number}: expected an object with 'text', 'messages', or "
                    f"'prompt' and 'completion', got {line.strip()[:80]!r}")
            if form is None:
                form = kind
            elif kind != form:
                raise DataFileError(f"{path} line {number}: a {kind} row in a file of {form} "
                                    "rows (all rows take the first row's form)")
            problem = _check_row(row, form, roles)
            if problem:
                raise DataFileError(f"{path} line {number}: {problem}")
            rows.append(row)
    if not rows or form is None:
        raise DataFileError(f"{path}: holds no row")
    return rows, form


def messages_of(row: dict, form: str) -> list[dict]:
    """The chat messages of a ``chat`` row, or of a ``completions`` row (its prompt as the
    user's message, its completion as the assistant's), as chat templates take them.

    Example:
        >>> messages_of({"prompt": "2+2?", "completion": "4"}, "completions")[1]
        {'role': 'assistant', 'content': '4'}
    """
    if form == "chat":
        return row["messages"]
    return [{"role": "user", "content": row["prompt"]},
            {"role": "assistant", "content": row["completion"]}]


def encode_rows(rows: Sequence[dict], form: str, tokenizer: Any = None, *,
                mask_prompt: bool = False) -> tuple[list[np.ndarray], list[int] | None]:
    """Token sequences of jsonl rows, and with ``mask_prompt`` the prompt length of each.

    Args:
        rows, form: from :func:`read_jsonl`.
        tokenizer: the model's tokenizer (mlx-lm's ``TokenizerWrapper`` or a Hugging Face
            tokenizer). ``None``: byte-level tokens (UTF-8 bytes of ``text`` rows only; the
            chat forms need a tokenizer's chat template).
        mask_prompt: train on the answer only: for chat rows, everything before the last
            message; for completions, the prompt (mlx-lm's ``--mask-prompt``).

    Example:
        >>> seqs, prompts = encode_rows([{"text": "hi"}], "text")
        >>> seqs[0].tolist(), prompts
        ([104, 105], None)
    """
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    if tokenizer is None:
        if form != "text":
            raise DataFileError(f"{form} rows need a tokenizer with a chat template "
                                "(give --model-path)")
        if mask_prompt:
            raise ValueError("mask_prompt needs chat or completions rows")
        return [np.frombuffer(r["text"].encode("utf-8"), np.uint8) for r in rows], None
    sequences, prompts = [], []
    eos = getattr(tokenizer, "eos_token_id", None)
    for row in rows:
        if form == "text":
            if mask_prompt:
                raise ValueError("mask_prompt needs chat or completions rows")
            tokens = list(tokenizer.encode(row["text"]))
            if eos is not None and (not tokens or tokens[-1] != eos):
                tokens.append(eos)
            sequences.append(np.asarray(tokens, np.int64))
            continue
        messages, tools = messages_of(row, form), row.get("tools")
        tokens = tokenizer.apply_chat_template(messages, tools=tools, return_dict=False)
        sequences.append(np.asarray(tokens, np.int64))
        if mask_prompt:
            ends_with_answer = messages[-1].get("role") == "assistant"
            head = tokenizer.apply_chat_template(messages[:-1], tools=tools,
                                                 add_generation_prompt=ends_with_answer,
                                                 return_dict=False)
            prompts.append(len(head))
    return sequences, (prompts if mask_prompt else None)


def load_jsonl_dir(path: str | os.PathLike, tokenizer: Any = None, *,
                   mask_prompt: bool = False) -> Corpus:
    """``train.jsonl`` and ``valid.jsonl`` of a directory, tokenized (see :func:`encode_rows`).

    Chat rows' roles are checked against those of the tokenizer's chat template
    (:func:`trainers.lm.chat_roles.chat_roles`).

    Raises:
        DataFileError: a file is missing or a row is malformed (names the file and line).
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise DataFileError(f"--data-path {path}: not a directory (expected one holding "
                            "train.jsonl and valid.jsonl)")
    splits = {}
    roles = STANDARD_ROLES if tokenizer is None else chat_roles(tokenizer)
    for split in ("train", "valid"):
        file = os.path.join(path, f"{split}.jsonl")
        rows, form = read_jsonl(file, roles=roles)
        try:
            splits[split] = encode_rows(rows, form, tokenizer, mask_prompt=mask_prompt)
        except DataFileError:
            raise
        except Exception as e:  # the tokenizer or its chat template refused a row
            raise _encoding_error(file, rows, form, tokenizer, mask_prompt, e) from e
    (train, train_prompts), (valid, valid_prompts) = splits["train"], splits["valid"]
    return Corpus(train=train, valid=valid,
                  train_names=[f"train.jsonl:{i}" for i in range(len(train))],
                  valid_names=[f"valid.jsonl:{i}" for i in range(len(valid))],
                  byte_level=tokenizer is None, train_prompts=train_prompts,
                  valid_prompts=valid_prompts)


def _encoding_error(path: str, rows: Sequence[dict], form: str, tokenizer: Any,
                    mask_prompt: bool, error: Exception) -> DataFileError:
    """``error`` (raised while encoding ``rows``) as a DataFileError naming the file and the
    line of the first row that raises it. Only on this error path are the rows encoded one
    by one, and the file scanned again for the line (blank lines hold no row)."""
    failing = None
    for index, row in enumerate(rows):
        try:
            encode_rows([row], form, tokenizer, mask_prompt=mask_prompt)
        except Exception as e:
            failing, error = index, e
            break
    if failing is None:
        return DataFileError(f"{path}: encoding failed: {type(error).__name__}: {error}")
    with open(path, "rb") as f:
        lines = [n for n, raw in enumerate(f, start=1) if raw.strip()]
    return DataFileError(f"{path} line {lines[failing]}: the tokenizer or its chat template "
                         f"refused the row ({type(error).__name__}: {error})")
