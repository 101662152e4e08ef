"""Training on every assistant turn of a chat.

mlx-lm's ``--mask-prompt`` trains on a chat's last message only. Here each assistant message
of a multi-turn chat is trained on, and nothing else (system, user and tool messages, and the
template's own tags before each answer): a token mask per example, carried into the batches by
:class:`trainers.SequenceBatches` (``token_masks``) and read by :func:`masked_lm_loss`.

An assistant turn ``i`` spans from the end of the template rendered up to message ``i`` with
the generation prompt (``<|assistant|>`` or its like) to the end of the template rendered
through message ``i``: the same prefix rule mlx-lm's ``--mask-prompt`` relies on for the last
turn. A template whose renderings are not prefixes of the whole chat is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mlx.core as mx
import numpy as np

from ..losses import masked_cross_entropy
from .data import DataFileError, messages_of

__all__ = ["assistant_masks", "masked_lm_loss"]


def _render(tokenizer: Any, messages: list, tools: Any, generation: bool = False) -> list[int]:
    return list(tokenizer.apply_chat_template(messages, tools=tools, return_dict=False,
                                              add_generation_prompt=generation))


def assistant_masks(rows: Sequence[dict], form: str, tokenizer: Any, *,
                    source: str = "data") -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Token sequences of chat or completions rows and, for each, a boolean mask that is true
    on the tokens of every assistant message.

    Raises:
        DataFileError: text rows (no turns), or a chat template whose partial renderings are
            not prefixes of the whole chat (names the row).

    Example:
        >>> class Chars:  # a toy tokenizer: one token per character
        ...     def apply_chat_template(self, messages, tools=None, return_dict=False,
        ...                             add_generation_prompt=False):
        ...         text = "".join(f"<{m['role'][0]}>{m['content']}" for m in messages)
        ...         return [ord(c) for c in text + ("<a>" if add_generation_prompt else "")]
        >>> chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"},
        ...         {"role": "user", "content": "?"}, {"role": "assistant", "content": "!"}]
        >>> tokens, masks = assistant_masks([{"messages": chat}], "chat", Chars())
        >>> "".join(chr(t) for t, m in zip(tokens[0], masks[0]) if m)
        'yo!'
    """
    if form == "text":
        raise DataFileError(f"{source}: --all-assistant-turns needs chat or completions rows, "
                            "not text rows")
    sequences, masks = [], []
    for index, row in enumerate(rows):
        messages, tools = messages_of(row, form), row.get("tools")
        tokens = _render(tokenizer, messages, tools)
        mask = np.zeros(len(tokens), bool)
        for i, message in enumerate(messages):
            if message.get("role") != "assistant":
                continue
            start = len(_render(tokenizer, messages[:i], tools, generation=True))
            through = _render(tokenizer, messages[:i + 1], tools)
            if tokens[:len(through)] != through or start > len(through):
                raise DataFileError(
                    f"{source} row {index + 1}: the chat template does not render message "
                    f"{i} as a prefix of the whole chat; --all-assistant-turns cannot find "
                    "its tokens")
            mask[start:len(through)] = True
        sequences.append(np.asarray(tokens, np.int64))
        masks.append(mask)
    return sequences, masks


def masked_lm_loss(model: Any, inputs: mx.array, targets: mx.array, lengths: mx.array,
                   mask: mx.array) -> mx.array:
    """Mean next-token cross-entropy over the masked targets of a batch of
    :class:`trainers.SequenceBatches` made with ``token_masks`` (its ``mask`` already
    excludes padding; ``lengths`` is accepted with it and not needed).

    Example:
        >>> model = lambda x: mx.zeros((*x.shape, 4))
        >>> batch = dict(inputs=mx.zeros((1, 3), mx.int32), targets=mx.ones((1, 3), mx.int32),
        ...              lengths=mx.array([3]), mask=mx.array([[False, True, True]]))
        >>> round(masked_lm_loss(model, **batch).item(), 6)  # log 4
        1.386294
    """
    return masked_cross_entropy(model(inputs), targets, mask=mask)
