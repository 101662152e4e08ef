"""Example fine-tuning data made here, from the running interpreter's own docstrings.

Each example asks what a function or class of a fixed list of standard-library modules does
(``What does `json.dumps` do?``) and answers with the first paragraph of its docstring. The
text is Python's own documentation, distributed with the interpreter under the Python Software
Foundation License; nothing is downloaded. The rows are written in mlx-lm's jsonl forms
(chat, completions or text) to ``train.jsonl``, ``valid.jsonl`` and ``test.jsonl``.

The output depends on the interpreter only: the same Python build gives the same bytes on
every run. An example goes to ``valid`` or ``test`` by the SHA-256 of its name (about 10% each),
so the split does not move when a later Python adds or changes other docstrings.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

from ..files import fsync_dir, write_bytes_atomic

__all__ = ["EXAMPLE_FORMS", "MODULES", "SPLITS", "Example", "docstring_examples",
           "example_rows", "write_example_data"]

#: the modules whose public functions and classes are asked about (pure-Python behaviour,
#: the same on every platform: no ``os``, whose names depend on the system)
MODULES = ("json", "os.path", "re", "math", "string", "textwrap", "itertools", "functools",
           "collections", "shutil", "random", "statistics", "heapq", "bisect", "base64",
           "hashlib", "difflib", "fnmatch", "glob", "csv", "datetime", "pathlib", "operator",
           "copy", "pprint", "struct", "zlib", "calendar", "fractions", "decimal", "uuid",
           "urllib.parse", "html", "secrets", "tempfile", "shlex", "keyword", "unicodedata",
           "dataclasses", "enum", "typing", "inspect", "contextlib", "abc")

#: the files written, in order
SPLITS = ("train", "valid", "test")
#: the row forms of mlx-lm's jsonl data that :func:`example_rows` writes
EXAMPLE_FORMS = ("chat", "completions", "text")

_MIN_ANSWER, _MAX_ANSWER = 30, 400  # characters of an answer kept


@dataclass(frozen=True)
class Example:
    """One question and its answer: ``name`` (``json.dumps``), ``prompt`` and ``completion``."""

    name: str
    prompt: str
    completion: str

    @property
    def split(self) -> str:
        """``"valid"`` or ``"test"`` for about 10% of names each, else ``"train"``."""
        digest = hashlib.sha256(self.name.encode("utf-8")).digest()
        fraction = int.from_bytes(digest[:8], "big") / 2.0**64
        return "valid" if fraction < 0.1 else "test" if fraction < 0.2 else "train"


def _first_paragraph(doc: str) -> str | None:
    """The docstring's first paragraph on one line, or None when it is no plain sentence
    (a signature line such as ``islice(iterable, stop) --> islice object``, an introduction
    to a list that follows, too short or too long)."""
    paragraph = " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())
    if not _MIN_ANSWER <= len(paragraph) <= _MAX_ANSWER:
        return None
    if "->" in paragraph or paragraph.endswith(":") or not paragraph[0].isupper():
        return None
    return paragraph


def docstring_examples(modules: Sequence[str] = MODULES) -> list[Example]:
    """The examples of ``modules``' public functions and classes, in module order, then by name.

    An object reachable under two names (an alias) is asked about once, under its first name.
    Only an object's own docstring counts (a class without one is left out, not answered with
    its parent's).

    Example:
        >>> examples = docstring_examples(["json"])
        >>> [e.prompt for e in examples if e.name == "json.dumps"]
        ['What does `json.dumps` do?']
    """
    examples: list[Example] = []
    seen: set[int] = set()
    for module_name in modules:
        module = importlib.import_module(module_name)
        names = getattr(module, "__all__", None) or dir(module)
        for name in sorted(set(names)):
            obj = getattr(module, name, None)
            if name.startswith("_") or id(obj) in seen or not (
                    inspect.isfunction(obj) or inspect.isbuiltin(obj) or inspect.isclass(obj)):
                continue
            seen.add(id(obj))
            doc = obj.__doc__ if isinstance(obj.__doc__, str) else None
            answer = _first_paragraph(doc) if doc else None
            if answer:
                full = f"{module_name}.{name}"
                examples.append(Example(full, f"What does `{full}` do?", answer))
    return examples


def example_rows(examples: Sequence[Example], form: str) -> list[dict]:
    """The examples as rows of one of mlx-lm's jsonl forms.

    - ``chat``: ``{"messages": [{"role": "user", ...}, {"role": "assistant", ...}]}``
    - ``completions``: ``{"prompt": ..., "completion": ...}``
    - ``text``: ``{"text": "<prompt>\\n<completion>"}``

    Example:
        >>> e = Example("math.sqrt", "What does `math.sqrt` do?", "Return the square root of x.")
        >>> example_rows([e], "completions")
        [{'prompt': 'What does `math.sqrt` do?', 'completion': 'Return the square root of x.'}]
    """
    if form not in EXAMPLE_FORMS:
        raise ValueError(f"form must be one of {list(EXAMPLE_FORMS)}, got {form!r}")
    if form == "chat":
        return [{"messages": [{"role": "user", "content": e.prompt},
                              {"role": "assistant", "content": e.completion}]}
                for e in examples]
    if form == "completions":
        return [{"prompt": e.prompt, "completion": e.completion} for e in examples]
    return [{"text": f"{e.prompt}\n{e.completion}"} for e in examples]


def write_example_data(directory: str | os.PathLike, form: str = "chat", *,
                       examples: Sequence[Example] | None = None) -> dict[str, int]:
    """Write ``train.jsonl``, ``valid.jsonl`` and ``test.jsonl`` of ``form`` rows into
    ``directory`` (created; it must not hold any of the three files yet). Returns the number
    of rows of each file.

    The three files are written into a temporary folder beside ``directory`` and moved in only
    once all are complete, so a failure leaves no partial data set.

    Raises:
        FileExistsError: ``directory`` already holds one of the files (nothing is written).
        NotADirectoryError: ``directory`` is a file.

    Example:
        >>> import tempfile
        >>> counts = write_example_data(tempfile.mkdtemp(), "completions")
        >>> sorted(counts) == sorted(SPLITS) and all(n > 0 for n in counts.values())
        True
    """
    rows_of: dict[str, list[Example]] = {split: [] for split in SPLITS}
    for e in docstring_examples() if examples is None else examples:
        rows_of[e.split].append(e)
    rows = {split: example_rows(rows_of[split], form) for split in SPLITS}
    directory = os.path.abspath(os.fspath(directory))
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise NotADirectoryError(f"{directory}: exists and is not a directory")
    taken = [f"{s}.jsonl" for s in SPLITS if os.path.lexists(os.path.join(directory, f"{s}.jsonl"))]
    if taken:
        raise FileExistsError(f"{directory} already holds {', '.join(taken)}: choose an empty "
                              "or new folder (nothing was written)")
    os.makedirs(directory, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".example-data-", dir=directory)
    try:
        for split in SPLITS:
            text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[split])
            write_bytes_atomic(os.path.join(staging, f"{split}.jsonl"), text.encode("utf-8"))
        for split in SPLITS:
            os.replace(os.path.join(staging, f"{split}.jsonl"),
                       os.path.join(directory, f"{split}.jsonl"))
        fsync_dir(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {split: len(rows[split]) for split in SPLITS}
