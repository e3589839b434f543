"""The bytes each token of a Hugging Face tokenizer adds to a text.

Byte-level BPE vocabularies (GPT-2 style) spell each byte as a printable stand-in character;
SentencePiece-style ones write a space as ``"▁"`` and bytes outside the vocabulary as ``<0xHH>``.
Knowing a token's bytes (rather than its decoded text, where half a character reads U+FFFD) lets
the core follow characters split across tokens exactly (word completion).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["TokenBytes"]

_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")
_SENTENCEPIECE_SPACE = "\u2581"


def _byte_level_alphabet() -> dict[str, int]:
    """The stand-in character of every byte in byte-level BPE vocabularies, mapped back to the byte.

    Printable Latin-1 bytes stand for themselves; the other 68 bytes take the code points from
    256 upwards, in byte order.
    """
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    kept = set(keep)
    table = {chr(b): b for b in keep}
    extra = 0
    for b in range(256):
        if b not in kept:
            table[chr(256 + extra)] = b
            extra += 1
    return table


class TokenBytes:
    """``token_bytes(token_id)`` for a transformers tokenizer: the token's bytes; ``b""`` for a
    special token or an id the tokenizer does not know."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._special = frozenset(int(t) for t in getattr(tokenizer, "all_special_ids", ()) or ())
        backend = getattr(tokenizer, "backend_tokenizer", None)
        decoder = getattr(backend, "decoder", None)
        self._byte_level = type(decoder).__name__ == "ByteLevel"
        self._alphabet = _byte_level_alphabet() if self._byte_level else {}
        self._cache: dict[int, bytes] = {}

    def __call__(self, token_id: int) -> bytes:
        t = int(token_id)
        if t in self._cache:
            return self._cache[t]
        value = self._compute(t)
        self._cache[t] = value
        return value

    def _compute(self, t: int) -> bytes:
        if t in self._special or t < 0:
            return b""
        try:
            token = self._tokenizer.convert_ids_to_tokens(t)
        except (IndexError, KeyError, OverflowError, TypeError):
            return b""
        if not isinstance(token, str):
            return b""
        if self._byte_level:
            try:
                return bytes(self._alphabet[c] for c in token)
            except KeyError:  # an added token written as plain text
                return token.encode("utf-8")
        match = _BYTE_TOKEN.fullmatch(token)
        if match:
            return bytes([int(match.group(1), 16)])
        return token.replace(_SENTENCEPIECE_SPACE, " ").encode("utf-8")
