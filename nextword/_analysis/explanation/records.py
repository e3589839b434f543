"""What :func:`nextword._analysis.explanation.explain` returns: per-token and per-word likelihoods of a text."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from nextword._types.results import Prediction, Settings, perplexity, to_jsonable

__all__ = ["Alternative", "Explanation", "TokenExplanation", "WordExplanation"]


@dataclasses.dataclass(frozen=True)
class Alternative:
    """A token the model considered at a position: its id, text and probability."""

    token_id: int
    text: str
    prob: float


@dataclasses.dataclass(frozen=True)
class TokenExplanation:
    """One token of the explained text.

    ``text`` is the token's share of the text: the tokens' texts joined give the decoded text (a
    character split across tokens is given whole to the token that completes it). The first token
    has no context to be predicted from, so its ``prob``, ``logprob``, ``rank`` and
    ``surprisal_bits`` are None and it has no alternatives. Otherwise ``prob`` is the probability
    the model gave this token after the tokens before it, ``rank`` its place among all vocabulary
    tokens (1 = most likely; ties ordered by token id, as in ``predict_next``), ``surprisal_bits``
    is ``-log2(prob)`` and ``alternatives`` the ``top`` most likely tokens at this position.
    """

    index: int
    token_id: int
    text: str
    prob: float | None
    logprob: float | None
    rank: int | None
    surprisal_bits: float | None
    alternatives: tuple[Alternative, ...] = ()

    @property
    def scored(self) -> bool:
        """Whether the token was predicted (every token but the first)."""
        return self.prob is not None


@dataclasses.dataclass(frozen=True)
class WordExplanation:
    """A word of the text: tokens ``start`` to ``end - 1``.

    ``prob`` is the product of its tokens' conditional probabilities and ``surprisal_bits`` their
    sum of surprisals; both are None for a word that holds the unscored first token. (Unlike
    :func:`nextword._words.search.predict_words`, no "the word ends here" factor is included: that event is
    the next word's first token, so the word surprisals of a text add up to its total.)
    """

    text: str
    start: int
    end: int
    prob: float | None
    surprisal_bits: float | None


@dataclasses.dataclass(frozen=True)
class Explanation:
    """Per-token and per-word likelihoods of a text under a model."""

    text: str
    tokens: tuple[TokenExplanation, ...]
    words: tuple[WordExplanation, ...]
    top: int
    settings: Settings
    completion: Prediction | None = None
    """When the text ends inside a word (by the ``complete`` switch of
    :func:`~nextword._analysis.explanation.explain`): the ``top`` most likely completions of that word, as
    :func:`nextword.predict_next` gives them for the text with ``unit="word"``
    (``completion.typed`` is the typed part, each candidate's ``remaining`` what is left to
    type, probabilities conditioned on the typed part). None otherwise."""

    @property
    def scored(self) -> tuple[TokenExplanation, ...]:
        """The tokens that were predicted (all but the first)."""
        return tuple(t for t in self.tokens if t.scored)

    @property
    def total_surprisal_bits(self) -> float:
        """Surprisal of the whole text (bits), the first token excepted."""
        return math.fsum(t.surprisal_bits for t in self.tokens if t.surprisal_bits is not None)

    def to_dict(self) -> dict[str, Any]:
        """The explanation as JSON data (settings and derived totals included); read back by
        :func:`nextword._analysis.explanation.from_json`."""
        data = {f.name: to_jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}
        data.update(total_surprisal_bits=self.total_surprisal_bits, perplexity=to_jsonable(self.perplexity))
        return data

    @property
    def perplexity(self) -> float:
        """exp(mean negative log-likelihood) over the scored tokens (nan when none were scored)."""
        return perplexity(t.logprob for t in self.tokens if t.logprob is not None)
