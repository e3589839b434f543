"""The word rule: which tokens start a new word, per generator, cached.

A word is a first token and every token up to, not including, the next one that starts a new
word (see :func:`starts_new_word`); the search and the completion read the rule from here."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from nextword._contract.protocol import Generator
from nextword._words.cache import PerGenerator

_APOSTROPHES = "'\u2019"
_SENTENCEPIECE_SPACE = "\u2581"
REPLACEMENT = "\ufffd"


def starts_new_word(piece: str) -> bool:
    """Whether a token whose text is ``piece`` begins a new word (rather than continuing one).

    True when the text is empty (control tokens), or begins with whitespace (SentencePiece's
    ``▁`` included), punctuation or a symbol (Unicode categories P* and S*). False for letters,
    digits and marks; for an apostrophe (``'`` or ``’``), which continues a word whether the
    tokenizer keeps it alone or joined (``" don" + "'t"``, ``" don" + "'" + "t"``, ``" dogs" + "'"``);
    and for a text that begins with U+FFFD: the token holds the middle or end of a character split
    across tokens (byte-level vocabularies), which continues the word.
    """
    if not piece:
        return True
    first = piece[0]
    if first == REPLACEMENT or first in _APOSTROPHES:
        return False
    if first.isspace() or first == _SENTENCEPIECE_SPACE:
        return True
    return unicodedata.category(first)[0] in "PS"


MASKS = PerGenerator()
STARTS = PerGenerator()  # token id -> starts a word, for top-N backends


def word_start_mask(generator: Generator, vocab_size: int) -> npt.NDArray[np.bool_]:
    """For every token id below ``vocab_size``: does that token start a new word?

    Each token's text is taken as it reads *inside* a text (a SentencePiece decoder that drops
    the leading space of a whole text is handled by decoding the token after a reference token),
    then classified by :func:`starts_new_word`; end-of-text tokens, and ids the tokenizer cannot
    decode (padding rows of the output layer), start a new word. Computed once per generator and
    vocabulary size (one ``detokenize`` call per token, or two for SentencePiece-style decoders).
    """
    masks: dict[int, npt.NDArray[np.bool_]] = MASKS.get(generator, dict)
    mask = masks.get(vocab_size)
    if mask is None:
        mask = masks[vocab_size] = _build_mask(generator, vocab_size)
    return mask


def _build_mask(generator: Generator, vocab_size: int) -> npt.NDArray[np.bool_]:
    piece = piece_reader(generator)
    mask = np.empty(vocab_size, dtype=np.bool_)
    for t in range(vocab_size):
        try:
            mask[t] = starts_new_word(piece(t))
        except Exception:  # an id the tokenizer does not know: treat it as a word of its own
            mask[t] = True
    for t in eos_ids(generator):
        if 0 <= t < vocab_size:
            mask[t] = True
    mask.flags.writeable = False
    return mask


def piece_reader(generator: Generator) -> Callable[[int], str]:
    """A function giving a token's text as it reads after other text.

    Byte-level BPE decoders render a lone token as it reads anywhere (``" the"``); SentencePiece
    decoders may drop the leading space of the whole text (``"▁the"`` alone gives ``"the"``). One
    probe tells which; for the second kind each token is decoded after a reference token.
    """
    detok = generator.detokenize
    probe = generator.tokenize("x the")
    if probe and detok(probe[-1:]).startswith((" ", _SENTENCEPIECE_SPACE)):
        return lambda t: detok([t])
    ref = generator.tokenize("x")[-1:]
    head = detok(ref)

    def after_ref(t: int) -> str:
        text = detok([*ref, t])
        return text[len(head) :] if text.startswith(head) else detok([t])

    return after_ref


def eos_ids(generator: Generator) -> frozenset[int]:
    return frozenset(int(t) for t in generator.eos_token_ids)


def token_starts_word(generator: Generator, token: int) -> bool:
    """Whether the token ``token`` starts a new word (as :func:`word_start_mask` says), for one
    token at a time: what a backend without full logits needs, cached per generator."""
    starts: dict[Any, Any] = STARTS.get(generator, dict)
    known = starts.get(token)
    if known is None:
        piece = starts.get("piece")
        if piece is None:
            piece = starts["piece"] = piece_reader(generator)
        try:
            known = starts_new_word(piece(token)) or token in eos_ids(generator)
        except Exception:  # an id the tokenizer does not know: a word of its own
            known = True
        starts[token] = known
    return bool(known)
