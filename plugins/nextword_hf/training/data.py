"""Turning the corpus into token blocks with the base model's own tokenizer."""

from __future__ import annotations

import dataclasses
from typing import Any

from nextword.backend import Document, hold_out, pack, split_single_document

__all__ = ["Blocks", "prepare_blocks"]


@dataclasses.dataclass(frozen=True)
class Blocks:
    """Training blocks (all ``block_size`` long) and held-out blocks (the last may be shorter)."""

    train: list[list[int]]
    validation: list[list[int]]
    train_tokens: int
    validation_tokens: int
    validation_documents: int
    notes: tuple[str, ...] = ()


def prepare_blocks(tokenizer: Any, documents: list[Document], *, block_size: int, fraction: float, seed: int) -> Blocks:
    """Tokenize each document (the tokenizer's own special tokens, then an end-of-text token),
    hold out documents for validation and pack both sides into blocks."""
    docs = split_single_document(documents, fraction)
    notes: list[str] = []
    eos = tokenizer.eos_token_id
    if eos is None:
        notes.append("the tokenizer has no end-of-text token: documents are joined without a separator")
    ids: list[list[int]] = []
    for doc in docs:
        encoded = list(tokenizer(doc.text, add_special_tokens=True, verbose=False)["input_ids"])
        ids.append(encoded + ([eos] if eos is not None else []))
    train_idx, val_idx = hold_out(ids, [d.source for d in docs], fraction=fraction, block_size=block_size, seed=seed)
    train_docs = [ids[i] for i in train_idx]
    val_docs = [ids[i] for i in val_idx]
    return Blocks(
        train=pack(train_docs, block_size),
        validation=pack(val_docs, block_size, keep_remainder=True),
        train_tokens=sum(len(d) for d in train_docs),
        validation_tokens=sum(len(d) for d in val_docs),
        validation_documents=len(val_idx),
        notes=tuple(notes),
    )
