"""The results of a word search: each complete word found, and the search's accounting."""

from __future__ import annotations

import dataclasses
import math

from nextword._types.results import Candidate, Prediction, Settings

# ---- results -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ExaminedWord:
    """A complete next word found by the search.

    ``prob`` is the sum over ``paths`` (token paths spelling ``text``, most likely first, each with
    the probability of that path followed by a word start); ``logprob`` is its natural log.
    """

    text: str
    prob: float
    logprob: float
    paths: tuple[tuple[tuple[int, ...], float], ...]

    @property
    def token_ids(self) -> tuple[int, ...]:
        """The most likely token path spelling this word."""
        return self.paths[0][0]

    def to_candidate(self) -> Candidate:
        """This word as a :class:`~nextword._types.results.Candidate` (its most likely token path)."""
        return Candidate(text=self.text, token_ids=self.token_ids, prob=self.prob, logprob=self.logprob)


@dataclasses.dataclass(frozen=True)
class WordSearch:
    """Everything a word search found, with its mass accounting.

    ``words`` are all the complete words examined, most likely first. The identity
    ``sum(w.prob for w in words) + unexplored_mass + excluded_mass == 1`` holds up to float
    rounding (``excluded_mass`` is 0 unless the search was restricted by ``allowed``).
    ``model_calls`` counts the next-token distributions computed (the prompt's included; a
    batched search may compute a few it then does not need), ``model_batches`` the engine calls
    that computed them.
    """

    prompt: str
    words: tuple[ExaminedWord, ...]
    unexplored_mass: float
    model_calls: int
    beam_width: int
    min_prob: float
    max_tokens: int
    settings: Settings
    excluded_mass: float = 0.0
    model_batches: int = 0

    @property
    def examined_mass(self) -> float:
        """Total probability of the words examined."""
        return math.fsum(w.prob for w in self.words)

    def prediction(self, k: int) -> Prediction:
        """The ``k`` most likely words as a ``unit="word"`` :class:`~nextword._types.results.Prediction`."""
        return Prediction(
            prompt=self.prompt,
            candidates=tuple(w.to_candidate() for w in self.words[:k]),
            settings=self.settings,
            unit="word",
            unexplored_mass=self.unexplored_mass,
        )
