"""Comparing two generators that run the same weights (two backends, two file types of one model):
greedy choices with a near-tie tolerance, top-k log-probabilities, KL divergence and scores, and
an explanation of where and how they diverge.

The reference's greedy path is followed; at each step both next-token distributions are read
for the same token ids, so one early difference does not make every later step differ. A step
where the two engines pick different tokens counts as a near tie (not a divergence) when the
reference's own top-2 logits are at most ``tie_margin`` apart: engines that round differently
may legitimately order two almost equal tokens either way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from nextword._contract.base import BaseGenerator
from nextword._contract.protocol import Generator
from nextword._contract.spec import BackendSpec
from nextword._decoding.branches import SessionBranches
from nextword._decoding.processors import log_softmax

__all__ = ["Comparison", "Divergence", "OneByOne", "Primitives", "compare_generators", "compare_scores"]


@dataclass(frozen=True)
class Divergence:
    """A step where the two generators' most likely tokens differ although the reference's top-2
    gap is above the tie margin. Gaps are differences of raw logits (top-1 minus top-2)."""

    prompt: str
    step: int
    reference_token: int
    other_token: int
    reference_gap: float
    other_gap: float
    reference_text: str = ""
    other_text: str = ""

    def __str__(self) -> str:
        return (
            f"{self.prompt!r}, step {self.step}: reference picks {self.reference_text!r} ({self.reference_token}, "
            f"top-2 gap {self.reference_gap:.4g}), other picks {self.other_text!r} ({self.other_token}, "
            f"top-2 gap {self.other_gap:.4g})"
        )


@dataclass(frozen=True)
class Comparison:
    """What :func:`compare_generators` found over every step of every prompt."""

    steps: int
    agreed: int
    near_ties: int
    divergences: tuple[Divergence, ...]
    mean_kl: float
    max_topk_logprob_diff: float
    clear_steps: int = 0
    kls: tuple[float, ...] = field(default=(), repr=False)

    @property
    def top1_agreement(self) -> float:
        """Fraction of steps where both picked the same token."""
        return self.agreed / self.steps if self.steps else math.nan

    @property
    def clear_fraction(self) -> float:
        """Fraction of steps whose reference top-2 gap was above the tie margin (the steps that
        could count as divergences): a check that passes by skipping shows up here."""
        return self.clear_steps / self.steps if self.steps else math.nan

    def explain(self) -> str:
        """A readable summary, with every divergence."""
        lines = [
            f"{self.steps} steps: top-1 agreement {self.top1_agreement:.1%}, {self.near_ties} near ties, "
            f"{len(self.divergences)} divergences; mean KL {self.mean_kl:.3g} nats; "
            f"max |Δ log-prob| over the top-k {self.max_topk_logprob_diff:.3g}"
        ]
        lines += [f"  {d}" for d in self.divergences]
        return "\n".join(lines)


def _top2_gap(logits: npt.NDArray[np.float64]) -> float:
    top2 = np.partition(logits, -2)[-2:]
    return float(top2[1] - top2[0])


def compare_generators(
    reference: Generator,
    other: Generator,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 32,
    tie_margin: float = 0.0,
    top_k: int = 5,
) -> Comparison:
    """Follow ``reference``'s greedy path from each prompt for ``max_new_tokens`` tokens (EOS
    included, so the path has a fixed length) and compare both generators' next-token
    distributions at every step on the same token ids (the prompt's last position included).

    Records top-1 agreement, near ties (different picks where the reference's top-2 logit gap is
    at most ``tie_margin``), divergences (the rest, with both top-2 gaps), the mean
    KL(reference || other) and the largest log-probability difference over the union of both
    top-``top_k`` sets. Both generators must share a tokenizer; the prompt is tokenized by the
    reference.
    """
    steps = agreed = ties = clear = 0
    divergences: list[Divergence] = []
    kls: list[float] = []
    max_diff = 0.0
    for prompt in prompts:
        ids = list(reference.tokenize(prompt))
        path = reference.generate(prompt, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens)
        for step, token in enumerate([*path.token_ids, None]):
            ref = np.asarray(reference.next_token_logits(ids), dtype=np.float64)
            oth = np.asarray(other.next_token_logits(ids), dtype=np.float64)
            p, q = log_softmax(ref), log_softmax(oth)
            a, b = int(np.argmax(ref)), int(np.argmax(oth))
            gap = _top2_gap(ref)
            steps += 1
            clear += gap > tie_margin
            if a == b:
                agreed += 1
            elif gap <= tie_margin:
                ties += 1
            else:
                divergences.append(
                    Divergence(
                        prompt, step, a, b, gap, _top2_gap(oth), reference.detokenize([a]), other.detokenize([b])
                    )
                )
            kls.append(float(np.sum(np.exp(p) * (p - q))))
            top = np.union1d(np.argsort(p)[-top_k:], np.argsort(q)[-top_k:])
            max_diff = max(max_diff, float(np.max(np.abs(p[top] - q[top]))))
            if token is not None:
                ids.append(token)
    return Comparison(
        steps=steps,
        agreed=agreed,
        near_ties=ties,
        divergences=tuple(divergences),
        mean_kl=float(np.mean(kls)) if kls else math.nan,
        max_topk_logprob_diff=max_diff,
        clear_steps=clear,
        kls=tuple(kls),
    )


def compare_scores(reference: Generator, other: Generator, texts: Sequence[str]) -> float:
    """The largest difference between the two generators' per-token log-likelihoods
    (:meth:`~nextword._contract.protocol.Generator.score`) over ``texts``; both must tokenize alike."""
    worst = 0.0
    for text in texts:
        a, b = reference.score(text), other.score(text)
        if [t.token_id for t in a.tokens] != [t.token_id for t in b.tokens]:
            raise AssertionError(f"the two generators tokenize {text!r} differently")
        worst = max(worst, max((abs(x - y) for x, y in zip(a.logprobs, b.logprobs, strict=True)), default=0.0))
    return worst


class OneByOne:
    """``inner`` with the default ``open_branches`` instead of its own, so that the word search
    evaluates one path at a time through ``inner``'s sessions: the reference that the batched
    search is compared with, in tests and in ``benchmarks/bench_words.py``."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def open_branches(self, prompt_ids: Sequence[int]) -> SessionBranches:
        """Paths evaluated one by one through ``inner.open_session``."""
        return SessionBranches(self._inner, self._inner.check_token_ids(prompt_ids))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class Primitives(BaseGenerator):
    """A generator made of ``inner``'s primitives alone (``tokenize``, ``detokenize``,
    ``next_token_logits``, ``context_length``, ``eos_token_ids``, and ``token_bytes`` unless
    ``token_bytes=False``) with :class:`~nextword.backend.BaseGenerator`'s default for every
    engine feature: every distribution is ``next_token_logits`` on the whole sequence. The
    reference that a backend's fast paths (KV-cache sessions, batched branches, one-pass
    sequence logits) are compared with; it reports ``inner``'s backend name and capabilities."""

    def __init__(self, inner: Any, *, token_bytes: bool = True) -> None:
        spec = BackendSpec(
            name=inner.backend, load=type(self), default_model=inner.model, capabilities=inner.capabilities
        )
        super().__init__(inner.model, dict(inner.settings.options), spec=spec)
        self._inner = inner
        self._keep_bytes = token_bytes

    @property
    def context_length(self) -> int:
        return int(self._inner.context_length)

    @property
    def eos_token_ids(self) -> frozenset[int]:
        return frozenset(self._inner.eos_token_ids)

    def tokenize(self, text: str) -> list[int]:
        return list(self._inner.tokenize(text))

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return str(self._inner.detokenize(token_ids))

    def next_token_logits(self, token_ids: Sequence[int]) -> npt.NDArray[np.floating]:
        return np.asarray(self._inner.next_token_logits(token_ids))

    def token_bytes(self, token_id: int) -> bytes | None:
        return self._inner.token_bytes(token_id) if self._keep_bytes else None
