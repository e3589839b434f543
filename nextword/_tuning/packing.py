"""Holding out a validation split by document, and packing token ids into training blocks.

Backend-neutral: a trainer tokenizes each document with its model's tokenizer (an end-of-text
token after each) and uses these functions, so every trainer splits and packs the same way.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence

import numpy as np

from nextword._tuning.documents import Document
from nextword.errors import InvalidInput

__all__ = ["hold_out", "overfit_warning", "pack", "split_single_document"]

_PARAGRAPH = re.compile(r"\n\s*\n")


def split_single_document(documents: Sequence[Document], fraction: float) -> list[Document]:
    """A corpus of one document cannot be split by document: cut it at the paragraph break (else
    the line break) nearest to ``1 - fraction`` of its length; the tail becomes the held-out
    document. Corpora of two or more documents are returned as they are.

    Raises :class:`~nextword.InvalidInput` when the lone document has no line break to cut at.
    """
    if len(documents) != 1:
        return list(documents)
    doc = documents[0]
    text = doc.text
    target = int(len(text.rstrip()) * (1.0 - fraction))
    breaks = [m.span() for m in _PARAGRAPH.finditer(text)] or [m.span() for m in re.finditer(r"\n", text)]
    breaks = [(a, b) for a, b in breaks if a > 0 and text[b:].strip()]
    if not breaks:
        raise InvalidInput(
            f"the corpus is one document ({doc.source}) without line breaks: nothing can be held out "
            "for validation; add more documents or text"
        )
    start, end = min(breaks, key=lambda span: abs(span[1] - target))
    head, tail = text[:start], text[end:]
    return [Document(head, doc.source), Document(tail, f"{doc.source} (held-out tail)")]


def hold_out(
    docs: Sequence[Sequence[int]],
    sources: Sequence[str],
    *,
    fraction: float,
    block_size: int,
    seed: int,
) -> tuple[list[int], list[int]]:
    """Indices of the training and held-out documents.

    ``docs`` are the tokenized documents. With two or more, documents are drawn in a seeded random
    order until the held-out ones hold at least ``fraction`` of the tokens and at least one block
    (``block_size`` tokens); the tail piece of a document cut by :func:`split_single_document` is
    always the held-out one. The training documents must keep at least one block too.

    Raises :class:`~nextword.InvalidInput` with the numbers when the corpus is too small.
    """
    total = sum(len(d) for d in docs)
    if len(docs) < 2:
        raise InvalidInput(f"the corpus has {total} tokens in one document: nothing can be held out")
    target = max(math.ceil(fraction * total), block_size)
    if len(docs) == 2 and sources[1].endswith("(held-out tail)"):
        order = [1]
    else:
        order = list(range(len(docs)))
        random.Random(seed).shuffle(order)
    held: list[int] = []
    held_tokens = 0
    for index in order:
        if held_tokens >= target:
            break
        held.append(index)
        held_tokens += len(docs[index])
    train = sorted(set(range(len(docs))) - set(held))
    train_tokens = total - held_tokens
    if held_tokens < block_size or train_tokens < block_size:
        raise InvalidInput(
            f"the corpus is too small: {total} tokens in {len(docs)} document(s); holding out "
            f"{fraction:.0%} by document leaves {train_tokens} tokens for training and {held_tokens} for "
            f"validation, and each needs at least one block of {block_size} tokens. Add text, or lower "
            "--block-size"
        )
    return train, sorted(held)


def pack(docs: Sequence[Sequence[int]], block_size: int, *, keep_remainder: bool = False) -> list[list[int]]:
    """The documents' ids concatenated and cut into blocks of ``block_size`` (no padding).

    The last, shorter piece is dropped unless ``keep_remainder`` (it is then kept when it has at
    least two tokens, so that it predicts something).
    """
    flat = np.fromiter((t for d in docs for t in d), dtype=np.int64)
    n_full = len(flat) // block_size
    blocks = flat[: n_full * block_size].reshape(n_full, block_size).tolist()
    rest = flat[n_full * block_size :]
    if keep_remainder and len(rest) >= 2:
        blocks.append(rest.tolist())
    return blocks


def overfit_warning(train_tokens: int, passes: float, trainable_parameters: int) -> str | None:
    """A warning (with the numbers) when the run is likely to memorize a small training split:
    fewer than 50,000 training tokens seen more than twice each."""
    if train_tokens < 50_000 and passes > 2.0:
        return (
            f"small corpus: the training split holds {train_tokens:,} tokens and the run passes over it "
            f"{passes:.1f} times with {trainable_parameters:,} trainable parameters; the model may memorize "
            "it. Watch the held-out loss (early stopping keeps the best weights), or add text"
        )
    return None
