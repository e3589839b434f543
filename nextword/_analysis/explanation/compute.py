"""Computing an explanation: score every token of a text against the model's full next-token
distribution and group the tokens into words. Rendering lives in the sibling modules."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt

from nextword._analysis.explanation.records import Alternative, Explanation, TokenExplanation, WordExplanation
from nextword._contract.checks import added_first_token, check_length, encode_text
from nextword._contract.protocol import Generator
from nextword._decoding.detok import IncrementalDetokenizer, alternative_text
from nextword._decoding.processors import log_softmax, top_indices
from nextword._types.results import Prediction
from nextword._words.complete import CompleteMode, complete_word, read_typed_word
from nextword._words.search import word_start_mask
from nextword.errors import InvalidInput

__all__ = ["explain"]

_LN2 = math.log(2.0)


def explain(generator: Generator, text: str, *, top: int = 5, complete: CompleteMode = "auto") -> Explanation:
    """Explain ``text`` token by token and word by word under ``generator``'s model.

    Each token after the first is scored against the full next-token distribution given the
    tokens before it, exactly as :meth:`~nextword._contract.protocol.Generator.predict_next` would on that
    prefix (probability, log-probability, rank, surprisal, the ``top`` most likely alternatives).
    Words follow the rule of :func:`nextword._words.search.starts_new_word`; a token the tokenizer added
    before the text (a BOS token) is a word of its own.

    When the text ends inside a word, ``completion`` holds the ``top`` most likely completions of
    that word, as :func:`nextword.predict_next` with ``unit="word"`` gives them for the text
    (:func:`nextword._words.complete.predict_or_complete`). ``complete`` reads the text's end the same
    way: ``"auto"`` completes the last word when the next token more likely continues it than
    starts a new word, ``"word"`` always completes it, ``"next"`` never does (``completion`` is
    then None, as it is with ``top=0`` or when nothing within the search bounds spells the word).

    Costs one next-token distribution per token (through ``open_session`` when the generator has
    it, so a KV-cache backend reads each token once), plus, for ``"auto"``, the distribution
    after the text and, for a completion, one word search. Raises
    :class:`~nextword.errors.InvalidInput` for an empty text or a bad ``top`` or ``complete``
    (and, with ``complete="word"``, when the word cannot be completed), and
    :class:`~nextword.errors.ContextLengthExceeded` when the text does not fit the context window.
    """
    if isinstance(top, bool) or not isinstance(top, int) or top < 0:
        raise InvalidInput(f"top must be a non-negative integer, got {top!r}")
    if complete not in ("auto", "word", "next"):
        raise InvalidInput(f"complete must be 'auto', 'word' or 'next', got {complete!r}")
    generator.capabilities.require("predict_next", generator.backend)
    ids = encode_text(generator, text, "text")
    check_length(len(ids), 0, generator.context_length, "text")

    texts = _token_texts(generator, ids)
    tokens = [TokenExplanation(0, ids[0], texts[0], None, None, None, None)]
    starts: npt.NDArray[np.bool_] | None = None
    word_start = [True]
    for i, logp in enumerate(_distributions(generator, ids), start=1):
        if starts is None:
            starts = word_start_mask(generator, logp.shape[-1])
        token = ids[i]
        lp = float(logp[token])
        rank = 1 + int(np.count_nonzero(logp > lp)) + int(np.count_nonzero(logp[:token] == lp))
        alternatives = tuple(
            Alternative(int(t), alternative_text(generator.detokenize, ids[:i], int(t)), float(math.exp(logp[t])))
            for t in top_indices(logp, top)
        )
        tokens.append(TokenExplanation(i, token, texts[i], math.exp(lp), lp, rank, -lp / _LN2, alternatives))
        word_start.append(bool(starts[token]) if token < starts.shape[-1] else True)
    if len(ids) > 1 and added_first_token(generator, ids, text):
        word_start[1] = True  # the first token was added by the tokenizer (BOS): a word of its own
    return Explanation(
        text=text,
        tokens=tuple(tokens),
        words=_words(tokens, word_start),
        top=top,
        settings=generator.settings,
        completion=_completion(generator, text, top, complete),
    )


def _completion(generator: Generator, text: str, k: int, complete: CompleteMode) -> Prediction | None:
    """The completions of the word ``text`` ends in, when ``complete`` reads it as unfinished
    (the reading and the result of :func:`~nextword._words.complete.predict_or_complete`)."""
    if k == 0 or complete == "next":
        return None
    if complete == "auto":
        done = read_typed_word(generator, text, k)
        return None if done is None else done.prediction(k)
    return complete_word(generator, text, k).prediction(k)


def _distributions(generator: Generator, ids: Sequence[int]) -> Iterator[npt.NDArray[np.float64]]:
    """Log-probabilities of the token after ``ids[:i]``, for i = 1 .. len(ids) - 1."""
    session = generator.open_session(list(ids[:1]))
    for i in range(1, len(ids)):
        yield log_softmax(np.asarray(session.logits()))
        if i + 1 < len(ids):
            session.feed(ids[i])


def _token_texts(generator: Generator, ids: Sequence[int]) -> list[str]:
    detok = IncrementalDetokenizer(generator.detokenize)
    texts = [detok.add(t) for t in ids]
    texts[-1] += detok.flush()
    return texts


def _words(tokens: Sequence[TokenExplanation], word_start: Sequence[bool]) -> tuple[WordExplanation, ...]:
    bounds = [i for i, s in enumerate(word_start) if s] + [len(tokens)]
    words = []
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        group = tokens[start:end]
        text = "".join(t.text for t in group)
        if all(t.logprob is not None for t in group):
            logprob = math.fsum(t.logprob for t in group if t.logprob is not None)
            words.append(WordExplanation(text, start, end, math.exp(logprob), -logprob / _LN2))
        else:
            words.append(WordExplanation(text, start, end, None, None))
    return tuple(words)
