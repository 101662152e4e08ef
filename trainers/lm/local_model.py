"""A tiny mlx-lm model directory made entirely here: random weights and a byte-level BPE
tokenizer trained on local text, with a chat template (tests, benchmarks and trying the
fine-tuning path with nothing downloaded)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from typing import Any

import mlx.core as mx

from ..files import fsync_dir
from .models import build_model, model_config, save_model_dir

__all__ = ["CHAT_TEMPLATE", "SPECIAL_TOKENS", "make_local_model_dir", "write_tiny_model"]


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


def write_tiny_model(directory: str | os.PathLike, *, architecture: str = "llama",
                     preset: str = "tiny", vocab_size: int = 512, seed: int = 0) -> str:
    """A new tiny model directory for trying the fine-tuning path offline: random weights of
    ``architecture`` at size ``preset``, and a tokenizer of ``vocab_size`` tokens trained on
    the example data's text (:func:`trainers.lm.example_data.docstring_examples`: the running
    interpreter's docstrings), so that data encodes in few tokens.

    The directory is written beside its final place and renamed into it when complete:
    ``directory`` must not exist yet or be an empty folder, and a failure leaves nothing.

    Raises:
        FileExistsError: ``directory`` exists and is not an empty folder (nothing is written).
        ValueError: an unknown architecture or preset, or a vocabulary too small.
    """
    from .example_data import docstring_examples

    directory = os.path.abspath(os.fspath(directory))
    if os.path.lexists(directory) and not (os.path.isdir(directory)
                                           and not os.path.islink(directory)
                                           and not os.listdir(directory)):
        raise FileExistsError(f"{directory} already exists and is not an empty folder: choose "
                              "a new name (nothing was written)")
    model_config(architecture, preset)  # an unknown architecture or preset fails here, first
    minimum = 256 + len(SPECIAL_TOKENS)  # every byte, and the special tokens
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < minimum:
        raise ValueError(f"vocab_size must be an int >= {minimum} (the 256 bytes and "
                         f"{len(SPECIAL_TOKENS)} special tokens), got {vocab_size!r}")
    texts = [f"{e.prompt}\n{e.completion}" for e in docstring_examples()]
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    # os.mkdir, not tempfile.mkdtemp: the folder keeps the user's usual permissions
    staging = os.path.join(parent, f".{os.path.basename(directory)}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)  # left by a killed run of this process id
    os.mkdir(staging)
    try:
        make_local_model_dir(staging, texts, architecture=architecture, preset=preset,
                             vocab_size=vocab_size, seed=seed)
        os.replace(staging, directory)  # replaces an empty folder, never a full one
        fsync_dir(parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory
