"""The most likely next tokens with their log-probabilities, from any generator.

A backend with full logits (``capabilities.logits``) gives the whole distribution; a backend that
can only return the top N (a remote server) implements ``next_token_top_logprobs`` and declares
``logits=False`` and ``max_logprobs=N``. :func:`top_logprobs` hides the difference: callers get
the ``n`` most likely tokens either way, and :attr:`TopLogprobs.mass` says how much of the
distribution they cover, so nothing downstream mistakes a top-N list for the whole distribution.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from nextword._decoding.processors import log_softmax, top_indices
from nextword.errors import EngineError

__all__ = ["TopLogprobs", "top_logprobs"]


@dataclasses.dataclass(frozen=True)
class TopLogprobs:
    """The most likely next tokens, most likely first, with their natural-log probabilities
    under the full distribution (not renormalized over the list)."""

    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.token_ids) != len(self.logprobs):
            raise EngineError("top log-probabilities: token ids and log-probabilities differ in length")

    def __len__(self) -> int:
        return len(self.token_ids)

    @property
    def mass(self) -> float:
        """Total probability of the listed tokens (1.0 when they are the whole vocabulary)."""
        return math.fsum(math.exp(lp) for lp in self.logprobs)

    def as_dict(self) -> dict[int, float]:
        """``{token id: log-probability}``."""
        return dict(zip(self.token_ids, self.logprobs, strict=True))

    @classmethod
    def from_logits(cls, logits: Any, n: int) -> TopLogprobs:
        """The ``n`` most likely entries of a full logits vector (ties by lower id)."""
        logp = log_softmax(np.asarray(logits))
        top = top_indices(logp, n)
        top = top[np.isfinite(logp[top])]
        return cls(tuple(int(t) for t in top), tuple(float(logp[t]) for t in top))

    @classmethod
    def from_pairs(cls, pairs: Sequence[tuple[int, float]]) -> TopLogprobs:
        """From ``(token id, log-probability)`` pairs in any order: sorted most likely first
        (ties by lower id), duplicates refused."""
        ordered = sorted(pairs, key=lambda p: (-p[1], p[0]))
        ids = [int(t) for t, _ in ordered]
        if len(set(ids)) != len(ids):
            raise EngineError("top log-probabilities list a token twice")
        return cls(tuple(ids), tuple(float(lp) for _, lp in ordered))


def top_logprobs(generator: Any, token_ids: Sequence[int], n: int) -> TopLogprobs:
    """The ``n`` most likely tokens after ``token_ids``.

    Uses ``generator.next_token_top_logprobs`` when the generator declares no full logits
    (``capabilities.logits`` False; ``n`` is then checked against ``max_logprobs`` and
    :class:`~nextword.errors.UnsupportedOption` raised above it), else its full logits.
    """
    caps = generator.capabilities
    if caps.logits:
        return TopLogprobs.from_logits(generator.next_token_logits(list(token_ids)), n)
    caps.check_logprobs(n, generator.backend)
    result: TopLogprobs = generator.next_token_top_logprobs(list(token_ids), n)
    return result
