"""The shared base of the conformance suite's checks: the knobs, the ``generator`` fixture and
the helpers every check uses."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import pytest

from nextword._contract.protocol import Generator
from nextword._decoding.logprobs import top_logprobs
from nextword._decoding.processors import log_softmax, top_p_filter
from nextword.errors import (
    UnsupportedOption,
)

__all__ = ["SAMPLE_VALUES", "SuiteBase"]

SAMPLE_VALUES: dict[str, dict[str, Any]] = {
    "max_new_tokens": {"max_new_tokens": 3},
    "max_length": {"max_length": 12},
    "min_new_tokens": {"min_new_tokens": 2},
    "do_sample": {"do_sample": True, "seed": 1},
    "temperature": {"temperature": 0.7, "seed": 1},
    "top_k": {"top_k": 5, "seed": 1},
    "top_p": {"top_p": 0.9, "seed": 1},
    "min_p": {"min_p": 0.05, "seed": 1},
    "typical_p": {"typical_p": 0.9, "seed": 1},
    "repetition_penalty": {"repetition_penalty": 1.3},
    "no_repeat_ngram_size": {"no_repeat_ngram_size": 2},
    "num_return_sequences": {"num_return_sequences": 2, "do_sample": True, "seed": 1},
    "stop": {"stop": ["."]},
    "seed": {"seed": 3, "do_sample": True},
}
"""A non-default value for each decoding option, used to check that unsupported options raise."""


class _Distribution:
    """Next-token log-probabilities as a test can see them: the whole vocabulary for a backend with
    full logits, the listed top N (every other token reads -inf) for one without."""

    def __init__(self, generator: Generator, ids: Sequence[int], n: int = 20) -> None:
        self.full = generator.capabilities.logits
        if self.full:
            self._logits = np.array(generator.next_token_logits(list(ids)), dtype=np.float64)
            self._logp = log_softmax(self._logits)
            self._listed: dict[int, float] = {}
        else:
            limit = generator.capabilities.max_logprobs
            top = top_logprobs(generator, ids, n if limit is None else min(n, limit))
            self._listed = top.as_dict()
            self._sorted = list(top.logprobs)

    def __getitem__(self, token: int) -> float:
        if self.full:
            return float(self._logp[token])
        return self._listed.get(int(token), -math.inf)

    def snapshot(self) -> tuple[Any, ...]:
        """Everything visible, for exact comparisons."""
        return tuple(self._logits.tolist()) if self.full else tuple(sorted(self._listed.items()))

    def best(self) -> float:
        return float(np.max(self._logp)) if self.full else self._sorted[0]

    def kth(self, k: int) -> float:
        """The ``k``-th largest log-probability."""
        return float(np.sort(self._logp)[-k]) if self.full else self._sorted[k - 1]

    def nucleus_floor(self, top_p: float) -> float:
        """The smallest log-probability inside the ``top_p`` nucleus (-inf when the listed tokens
        do not reach ``top_p``: the nucleus then reaches past what the backend shows)."""
        if self.full:
            kept = top_p_filter(self._logits.copy(), top_p)
            return float(self._logp[np.isfinite(kept)].min())
        total = 0.0
        for lp in self._sorted:
            total += math.exp(lp)
            if total >= top_p:
                return lp
        return -math.inf


class SuiteBase:
    """Knobs, fixtures and helpers shared by the conformance suite's checks (see
    :class:`~nextword.testing.conformance.GeneratorConformance`)."""

    prompts: ClassVar[tuple[str, ...]] = ("I love cats because", "The weather today is", "Once upon a time")

    new_tokens: ClassVar[int] = 16

    logit_tolerance: ClassVar[float] = 1e-4

    @pytest.fixture
    def generator(self) -> Generator:
        """Override in the subclass: return the loaded generator under test."""
        raise NotImplementedError("provide a `generator` fixture in your GeneratorConformance subclass")

    def _supports(self, generator: Generator, option: str) -> bool:
        return generator.capabilities.supports(option)

    def _expect_unsupported(self, generator: Generator, option: str) -> None:
        with pytest.raises(UnsupportedOption):
            generator.generate(self.prompts[0], max_new_tokens=2, **SAMPLE_VALUES[option])

    def _dist(self, generator: Generator, ids: Sequence[int]) -> _Distribution:
        return _Distribution(generator, ids)

    def _clear_winner(self, logits: np.ndarray) -> bool:
        top2 = np.sort(np.asarray(logits, dtype=np.float64))[-2:]
        return bool(top2[1] - top2[0] > self.logit_tolerance)

    def _added_prefix(self, generator: Generator, ids: list[int], text: str) -> int:
        """How many leading ids the tokenizer added before ``text`` (0, or 1 for a BOS token)."""
        if generator.detokenize(ids) == text:
            return 0
        assert generator.detokenize(ids[1:]) == text, f"tokenize/detokenize do not round-trip {text!r}"
        return 1

    def _assert_samples_within(self, generator: Generator, option: str, value: Any, floor: Any) -> None:
        """Sample with ``option=value`` under three seeds; at every step the chosen token's
        log-probability must reach ``floor(distribution)`` (the smallest of the allowed set), less
        the tolerance (tokens tied with the set's last member count as in it)."""
        prompt = self.prompts[2]
        for seed in (1, 2, 3):
            result = generator.generate(
                prompt, max_new_tokens=self.new_tokens, do_sample=True, seed=seed, **{option: value}
            )
            ids = generator.tokenize(prompt)
            for token in result.token_ids:
                dist = self._dist(generator, ids)
                assert dist[token] >= floor(dist) - self.logit_tolerance, (
                    f"a token sampled with {option}={value} lies outside the allowed set"
                )
                ids.append(token)
