"""Result types returned by the public API. All are immutable and carry the settings they ran with."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator
from typing import Any, Literal

from nextword._types.decoding_config import DecodingConfig

__all__ = [
    "Candidate",
    "FinishReason",
    "Generation",
    "Prediction",
    "Score",
    "Completion",
    "Settings",
    "TokenScore",
    "perplexity",
    "to_jsonable",
]


def to_jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: an object with a ``to_dict()`` method (results, settings,
    decoding config) through it, other dataclasses field by field, tuples as lists, and
    non-finite floats (nan, inf) as None, which JSON cannot hold. The one conversion every
    result's ``to_dict()`` and the CLI's ``--json`` output use."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    to_dict = getattr(type(value), "to_dict", None)
    if to_dict is not None:
        return to_dict(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    return value


def _fields_dict(result: Any, **derived: Any) -> dict[str, Any]:
    """The fields of the dataclass ``result`` as JSON data, then the ``derived`` values."""
    data = {f.name: to_jsonable(getattr(result, f.name)) for f in dataclasses.fields(result)}
    data.update({k: to_jsonable(v) for k, v in derived.items()})
    return data


def perplexity(logprobs: Iterable[float]) -> float:
    """exp(-mean) of the natural-log probabilities ``logprobs``: nan when there are none, inf
    where the exponential would overflow a float."""
    values = list(logprobs)
    if not values:
        return math.nan
    mean_nll = -math.fsum(values) / len(values)
    return math.exp(mean_nll) if mean_nll < 709 else math.inf  # exp overflows past 709


FinishReason = Literal["length", "stop", "eos"]
"""Why a sequence ended: the token budget ran out, a stop string matched, or the model emitted EOS."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """The effective settings a call ran with, and where each came from."""

    backend: str
    model: str
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Backend options (device, dtype, threads, ...)."""
    decoding: DecodingConfig = dataclasses.field(default_factory=DecodingConfig)
    sources: dict[str, str] = dataclasses.field(default_factory=dict)
    """For each setting, where its value came from (argument, environment, a config file, default)."""

    def with_decoding(self, decoding: DecodingConfig) -> Settings:
        """A copy with another decoding config."""
        return dataclasses.replace(self, decoding=decoding)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {
            "backend": self.backend,
            "model": self.model,
            "options": dict(self.options),
            "decoding": self.decoding.to_dict(),
            "sources": dict(self.sources),
        }


@dataclasses.dataclass(frozen=True)
class Completion:
    """One generated continuation.

    ``token_ids`` are the tokens the engine produced (an EOS token included, and the token that
    completed a stop string included); ``text`` is their text without EOS, cut right before a stop
    string.
    """

    text: str
    token_ids: tuple[int, ...]
    finish_reason: FinishReason

    @property
    def completion_tokens(self) -> int:
        """Number of generated tokens."""
        return len(self.token_ids)


@dataclasses.dataclass(frozen=True)
class Generation:
    """The result of generating from one prompt: one or more sequences."""

    prompt: str
    prompt_token_ids: tuple[int, ...]
    sequences: tuple[Completion, ...]
    settings: Settings

    @property
    def text(self) -> str:
        """The first sequence's text (the only one unless ``num_return_sequences > 1``)."""
        return self.sequences[0].text

    @property
    def token_ids(self) -> tuple[int, ...]:
        """The first sequence's generated token ids."""
        return self.sequences[0].token_ids

    @property
    def finish_reason(self) -> FinishReason:
        """Why the first sequence ended."""
        return self.sequences[0].finish_reason

    @property
    def texts(self) -> list[str]:
        """The text of every sequence."""
        return [s.text for s in self.sequences]

    @property
    def prompt_tokens(self) -> int:
        """Number of prompt tokens."""
        return len(self.prompt_token_ids)

    @property
    def completion_tokens(self) -> int:
        """Generated tokens over all sequences."""
        return sum(s.completion_tokens for s in self.sequences)

    def __str__(self) -> str:
        return self.text

    def to_dict(self) -> dict[str, Any]:
        """The generation as JSON data: its fields (settings included) and ``prompt_tokens``."""
        return _fields_dict(self, prompt_tokens=self.prompt_tokens)


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One candidate for the next token (or word): its text, id(s) and probability."""

    text: str
    token_ids: tuple[int, ...]
    prob: float
    logprob: float
    remaining: str | None = None
    """For the completion of a word being typed: the characters of ``text`` still to type (``text``
    is the whole word, the typed part included); None otherwise."""

    @property
    def token_id(self) -> int:
        """The first (for a token candidate, the only) token id."""
        return self.token_ids[0]


@dataclasses.dataclass(frozen=True)
class Prediction:
    """The most likely next tokens after a prompt, most likely first."""

    prompt: str
    candidates: tuple[Candidate, ...]
    settings: Settings
    unit: Literal["token", "word"] = "token"
    unexplored_mass: float = 0.0
    """Probability mass not covered by any candidate that was examined (word predictions only)."""
    typed: str | None = None
    """For the completion of a word being typed: its typed part as the model writes it (``" ca"``
    for ``"I love ca"``); the probabilities are then conditioned on the word starting with it.
    None for a next-word or next-token prediction."""
    prefix_prob: float | None = None
    """For a completion: the probability (as far as examined) that the next word starts with
    ``typed`` at all, before conditioning."""

    def __iter__(self) -> Iterator[Candidate]:
        return iter(self.candidates)

    def __len__(self) -> int:
        return len(self.candidates)

    def __getitem__(self, index: int) -> Candidate:
        return self.candidates[index]

    @property
    def top(self) -> Candidate:
        """The most likely candidate."""
        return self.candidates[0]

    def to_dict(self) -> dict[str, Any]:
        """The prediction as JSON data (candidates and settings included)."""
        return _fields_dict(self)


@dataclasses.dataclass(frozen=True)
class TokenScore:
    """A token of a scored text with its log-probability given everything before it."""

    token_id: int
    text: str
    logprob: float


@dataclasses.dataclass(frozen=True)
class Score:
    """Log-likelihood of a text under the model.

    The first token has no context to be predicted from (GPT-style models have no BOS), so it
    is not scored: ``tokens`` holds the second token onwards.
    """

    text: str
    first_token_id: int
    tokens: tuple[TokenScore, ...]
    settings: Settings

    @property
    def logprob(self) -> float:
        """Total log-likelihood (natural log) of the scored tokens."""
        return math.fsum(t.logprob for t in self.tokens)

    @property
    def mean_logprob(self) -> float:
        """Average log-likelihood per scored token (nan when nothing was scored)."""
        return self.logprob / len(self.tokens) if self.tokens else math.nan

    @property
    def perplexity(self) -> float:
        """exp(-mean log-likelihood) over the scored tokens."""
        return perplexity(t.logprob for t in self.tokens)

    @property
    def logprobs(self) -> list[float]:
        """The per-token log-probabilities."""
        return [t.logprob for t in self.tokens]

    def to_dict(self) -> dict[str, Any]:
        """The score as JSON data: its fields, ``logprob`` and ``perplexity`` (None when not finite)."""
        return _fields_dict(self, logprob=self.logprob, perplexity=self.perplexity)
