"""Logits processing and token choice in NumPy, with the semantics of transformers' processors.

Order and rules follow ``transformers.GenerationMixin``: repetition penalty, no-repeat n-grams,
the min-new-tokens EOS ban, then (sampling only) temperature, top-k, top-p, min-p, typical-p,
and finally a draw from the softmax.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import numpy.typing as npt

from nextword._types.decoding_config import DecodingConfig
from nextword.errors import EngineError, InvalidConfig

__all__ = [
    "LogitsPipeline",
    "apply_repetition_penalty",
    "banned_ngram_tokens",
    "log_softmax",
    "top_indices",
    "top_k_filter",
    "top_p_filter",
    "min_p_filter",
    "typical_filter",
]

FloatArray = npt.NDArray[np.floating]
NEG_INF = -np.inf


def log_softmax(logits: FloatArray) -> npt.NDArray[np.float64]:
    """Log-probabilities (float64) along the last axis: of a logits vector, or of each row of a
    (positions, vocabulary) array. -inf logits get -inf; in a row where some scores overflowed
    to +inf, those share all the probability. NaN scores raise :class:`EngineError`."""
    x = np.asarray(logits, dtype=np.float64)
    if np.isnan(x).any():
        raise EngineError("the model returned NaN scores; the model file or the engine is broken")
    m = np.max(x, axis=-1, keepdims=True)
    overflowed = np.isposinf(m)
    m = np.where(overflowed | np.isneginf(m), 0.0, m)
    with np.errstate(invalid="ignore", divide="ignore"):
        shifted = x - m
        out = shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))
    if overflowed.any():
        top = np.isposinf(x)
        n_top = np.count_nonzero(top, axis=-1, keepdims=True)
        shared = np.where(top, -np.log(np.maximum(n_top, 1)), -np.inf)
        out = np.where(overflowed, shared, out)
    return out


def top_indices(scores: FloatArray, n: int) -> npt.NDArray[np.intp]:
    """Indices of the ``n`` largest entries of a 1-D array, largest first, ties by lower index."""
    n = min(n, scores.shape[-1])
    if n <= 0:
        return np.empty(0, dtype=np.intp)
    top = np.argpartition(-scores, n - 1)[:n] if n < scores.shape[-1] else np.arange(scores.shape[-1])
    return top[np.lexsort((top, -scores[top]))]


def _softmax(logits: FloatArray) -> npt.NDArray[np.float64]:
    return np.exp(log_softmax(logits))


def apply_repetition_penalty(logits: FloatArray, context: Sequence[int], penalty: float) -> FloatArray:
    """Penalize every token id present in ``context``: positive logits are divided by
    ``penalty``, negative ones multiplied (the CTRL rule that transformers uses)."""
    if penalty == 1.0 or not context:
        return logits
    ids = np.unique(np.asarray(context, dtype=np.int64))
    ids = ids[ids < logits.shape[-1]]
    vals = logits[ids]
    logits[ids] = np.where(vals < 0, vals * penalty, vals / penalty)
    return logits


def banned_ngram_tokens(context: Sequence[int], n: int) -> set[int]:
    """Tokens that would complete an n-gram already present in ``context`` (prompt included)."""
    if n <= 0 or len(context) < n:
        return set()
    prefix = tuple(context[len(context) - n + 1 :]) if n > 1 else ()
    banned: set[int] = set()
    for start in range(len(context) - n + 1):
        if tuple(context[start : start + n - 1]) == prefix:
            banned.add(int(context[start + n - 1]))
    return banned


def top_k_filter(logits: FloatArray, k: int) -> FloatArray:
    """Keep the ``k`` largest logits (ties with the k-th kept), the rest to -inf."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = np.partition(logits, -k)[-k]
    logits[logits < kth] = NEG_INF
    return logits


_NUCLEUS_HEAD = 1024  # tokens sorted first when looking for the nucleus; grows as needed


def top_p_filter(logits: FloatArray, top_p: float) -> FloatArray:
    """Nucleus filter: drop the least likely tokens whose cumulative probability is <= 1 - top_p.

    Same result as sorting the whole vocabulary (as transformers does), but only the most likely
    tokens are sorted when they already hold more than ``top_p`` of the mass: every other token's
    cumulative probability is then below ``1 - top_p``, so it is dropped either way.
    """
    if top_p >= 1.0:
        return logits
    probs = _softmax(logits)
    head = _nucleus_head(probs, top_p)
    if head is None:
        order = np.argsort(logits, kind="stable")  # ascending, as transformers sorts
        cum = np.cumsum(probs[order])
    else:
        order = head[np.argsort(logits[head], kind="stable")]
        cum = (1.0 - probs[head].sum()) + np.cumsum(probs[order])
        outside = np.ones(logits.shape[-1], dtype=bool)
        outside[head] = False
        logits[outside] = NEG_INF
    remove = cum <= (1.0 - top_p)
    remove[-1] = False
    logits[order[remove]] = NEG_INF
    return logits


def _nucleus_head(probs: npt.NDArray[np.float64], top_p: float) -> npt.NDArray[np.intp] | None:
    """Indices of the most likely tokens when they hold more than ``top_p`` of the mass and no
    token left out ties with them; None when the whole vocabulary must be sorted."""
    n = probs.shape[-1]
    m = _NUCLEUS_HEAD
    while m < n:
        head = np.argpartition(probs, n - m)[n - m :]
        kth = probs[head].min()
        if probs[head].sum() > top_p + 1e-9 and np.count_nonzero(probs >= kth) == m:
            return head
        m *= 8
    return None


def min_p_filter(logits: FloatArray, min_p: float) -> FloatArray:
    """Drop tokens whose probability is below ``min_p`` times the top token's probability."""
    if min_p <= 0.0:
        return logits
    probs = _softmax(logits)
    remove = probs < min_p * probs.max()
    remove[int(np.argmax(probs))] = False
    logits[remove] = NEG_INF
    return logits


def typical_filter(logits: FloatArray, mass: float) -> FloatArray:
    """Locally typical filter: keep the tokens whose surprisal is closest to the entropy,
    up to probability ``mass``."""
    if mass >= 1.0:
        return logits
    logp = log_softmax(logits)
    p = np.exp(logp)
    ent = -np.sum(np.multiply(logp, p, out=np.zeros_like(p), where=p > 0))
    shifted = np.abs(-logp - ent)
    order = np.argsort(shifted, kind="stable")
    sorted_shifted = shifted[order]
    cum = np.cumsum(_softmax(logits[order]))
    last = min(int(np.sum(cum < mass)), len(order) - 1)
    remove = sorted_shifted > sorted_shifted[last]
    remove[0] = False
    logits[order[remove]] = NEG_INF
    return logits


class LogitsPipeline:
    """Turns a step's raw logits into the next token, following a :class:`DecodingConfig`.

    ``context`` is the prompt plus the tokens generated so far; ``n_generated`` how many of
    them were generated. ``eos_token_ids`` are needed for ``min_new_tokens``.
    """

    def __init__(self, config: DecodingConfig, eos_token_ids: Collection[int] = ()) -> None:
        self.config = config
        self.eos_token_ids = sorted(eos_token_ids)
        self._eos = frozenset(self.eos_token_ids)
        # Greedy with no processor but (perhaps) the min-new-tokens EOS ban: the argmax of the
        # raw logits is the answer unless it is a banned EOS token.
        self._argmax_first = (
            not config.sampling and config.repetition_penalty == 1.0 and not config.no_repeat_ngram_size
        )

    def process(self, logits: FloatArray, context: Sequence[int], n_generated: int) -> FloatArray:
        """The logits after every processor and warper; returns a new float32/64 array."""
        cfg = self.config
        out = np.array(logits, dtype=np.float64, copy=True)
        apply_repetition_penalty(out, context, cfg.repetition_penalty)
        if cfg.no_repeat_ngram_size:
            banned = banned_ngram_tokens(context, cfg.no_repeat_ngram_size)
            if banned:
                out[list(banned)] = NEG_INF
        if self.eos_token_ids and n_generated < cfg.min_new_tokens:
            out[self.eos_token_ids] = NEG_INF
        if cfg.sampling:
            if cfg.temperature is not None and cfg.temperature != 1.0:
                with np.errstate(over="ignore"):
                    scaled = out / cfg.temperature
                if np.isposinf(scaled).any():
                    # So small a temperature that the scores overflow: its limit, greedy.
                    best = int(np.argmax(out))
                    scaled = np.full(out.shape, NEG_INF)
                    scaled[best] = 0.0
                out = scaled
            if cfg.top_k and cfg.top_k < out.shape[-1]:
                # The later filters give the same result on the top-k survivors alone (a -inf
                # logit has probability 0 in each of them), and that is far cheaper.
                kth = np.partition(out, -cfg.top_k)[-cfg.top_k]
                keep = np.flatnonzero(out >= kth)
                compact = self._warp(out[keep])
                out = np.full(out.shape, NEG_INF)
                out[keep] = compact
            else:
                self._warp(out)
        return out

    def _warp(self, logits: FloatArray) -> FloatArray:
        cfg = self.config
        if cfg.top_p is not None:
            top_p_filter(logits, cfg.top_p)
        if cfg.min_p is not None:
            min_p_filter(logits, cfg.min_p)
        if cfg.typical_p is not None:
            typical_filter(logits, cfg.typical_p)
        return logits

    def choose(self, processed: FloatArray, rng: np.random.Generator) -> int:
        """Greedy argmax, or a draw from softmax(processed) when sampling."""
        if not self.config.sampling:
            return int(np.argmax(processed))
        candidates = np.flatnonzero(np.isfinite(processed))
        if candidates.size == 0:
            raise InvalidConfig(
                "the decoding options ruled out every token (for example no_repeat_ngram_size with a "
                "long text on a small vocabulary); relax them"
            )
        cum = np.cumsum(_softmax(processed[candidates]))
        pick = int(np.searchsorted(cum, rng.random() * cum[-1], side="right"))
        return int(candidates[min(pick, candidates.size - 1)])

    def next_token(self, logits: FloatArray, context: Sequence[int], n_generated: int, rng: np.random.Generator) -> int:
        """Process ``logits`` and choose the next token."""
        if self._argmax_first:
            # One pass: argmax propagates NaN (it returns the first NaN's index), so the chosen
            # score is NaN exactly when some score is. When the EOS ban applies, the argmax
            # stands unless it is a banned EOS token (banning scores below the maximum, or tied
            # with it at a higher index, moves neither the maximum nor its first index).
            best = int(np.argmax(logits))
            if np.isnan(logits[best]):
                raise EngineError("the model returned NaN scores; the model file or the engine is broken")
            if n_generated >= self.config.min_new_tokens or best not in self._eos:
                return best
        if np.isnan(logits).any():
            raise EngineError("the model returned NaN scores; the model file or the engine is broken")
        return self.choose(self.process(logits, context, n_generated), rng)
