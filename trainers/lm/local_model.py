"""A tiny mlx-lm model directory made entirely here: random weights and a byte-level BPE
tokenizer trained on local text, with a chat template (tests, benchmarks and trying the
fine-tuning path with nothing downloaded)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import mlx.core as mx

from .models import build_model, model_config, save_model_dir

__all__ = ["CHAT_TEMPLATE", "SPECIAL_TOKENS", "make_local_model_dir"]


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
