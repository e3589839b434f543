"""Incremental detokenization that never splits a character.

Tokens of byte-level vocabularies can end in the middle of a multi-byte UTF-8 character; a
decoder then renders the incomplete bytes as U+FFFD. The detokenizer releases text only once
the decoded tail is complete, so streamed chunks never carry half a character.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["IncrementalDetokenizer", "alternative_text", "context_for", "piece_text", "text_after"]

REPLACEMENT = "\ufffd"


class IncrementalDetokenizer:
    """Turns a growing list of token ids into text deltas.

    ``detokenize`` maps a list of ids to text. Text is decoded from a short window that starts
    at the last released boundary, so the cost per token stays constant and tokenizers that
    treat a leading space specially (SentencePiece) still produce the right delta.
    """

    def __init__(self, detokenize: Callable[[Sequence[int]], str], context: Sequence[int] = ()) -> None:
        """``context``: tokens that come before (the end of a prompt). They are never released,
        but new tokens are decoded after them, so a tokenizer that drops the leading space of
        a text's first token (SentencePiece) keeps the space of the first new token."""
        self._detokenize = detokenize
        self._ids: list[int] = list(context)
        self._prefix = 0  # start of the decoding window
        self._read = len(self._ids)  # ids before this index have been released as text

    def add(self, token_id: int) -> str:
        """Add one token; return the newly completed text (possibly empty)."""
        self._ids.append(token_id)
        return self._release(final=False)

    def flush(self) -> str:
        """Release everything left, incomplete characters included (as U+FFFD)."""
        return self._release(final=True)

    def _release(self, *, final: bool) -> str:
        if self._read == len(self._ids):
            return ""
        window = self._ids[self._prefix :]
        old = self._detokenize(self._ids[self._prefix : self._read]) if self._read > self._prefix else ""
        new = self._detokenize(window)
        if not final and new.endswith(REPLACEMENT):
            return ""
        if not new.startswith(old):
            # The tokenizer re-rendered the window; fall back to decoding everything.
            full_old = self._detokenize(self._ids[: self._read])
            full_new = self._detokenize(self._ids)
            delta = full_new[len(full_old) :]
        else:
            delta = new[len(old) :]
        self._prefix = self._read
        self._read = len(self._ids)
        return delta


def context_for(detokenize: Callable[[Sequence[int]], str], ids: Sequence[int], most: int = 4) -> list[int]:
    """The shortest tail of ``ids`` (at most ``most`` tokens) that decodes to whole characters,
    to decode new tokens after; empty if there is none."""
    for n in range(1, min(most, len(ids)) + 1):
        tail = list(ids[-n:])
        if REPLACEMENT not in detokenize(tail):
            return tail
    return []


def text_after(detokenize: Callable[[Sequence[int]], str], context: Sequence[int], ids: Sequence[int]) -> str:
    """The text ``ids`` add after ``context`` (see :func:`context_for`): decoded together with
    the context and cut after it, so that for SentencePiece the leading space a lone token would
    lose is kept. Without a context, or when the context's text is not a prefix, ``ids`` alone."""
    if context:
        head = detokenize(list(context))
        full = detokenize([*context, *ids])
        if full.startswith(head):
            return full[len(head) :]
    return detokenize(list(ids))


def piece_text(detokenize: Callable[[Sequence[int]], str], context: Sequence[int], token: int) -> str:
    """The text the one ``token`` adds after ``context`` (:func:`text_after` of one token)."""
    return text_after(detokenize, context, [token])


def alternative_text(
    detokenize: Callable[[Sequence[int]], str], before: Sequence[int], token: int, most: int = 8
) -> str:
    """What ``token`` would write in place of the token that follows ``before``.

    Usually the text ``token`` adds after ``before``. When ``before`` ends inside a character
    (byte-fallback tokens of a rare syllable: "똠" is three one-byte tokens), the character's
    bytes so far are not text yet, so the alternative is shown with them: the character it
    would complete ("똥" in place of the last byte of "똠"), or U+FFFD while it would still be
    incomplete. Decodes at most the last ``most`` tokens of ``before``.
    """
    tail = list(before[-most:])
    if tail:
        settled = detokenize(tail).rstrip(REPLACEMENT)  # the text before a pending character
        full = detokenize([*tail, token])
        if full.startswith(settled):
            return full[len(settled) :]
    return detokenize([token])
