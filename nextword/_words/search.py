"""Next-*word* prediction on any :class:`~nextword._contract.protocol.Generator`.

Language models predict tokens, and a word is often several tokens (``" bi" + "cycle"``). This
module searches the tree of token continuations for the most likely *complete* next words, using
only the public primitives ``tokenize``, ``detokenize`` and ``next_token_logits`` (plus
``open_session`` when the generator has one, so that a KV-cache backend extends a prefix by one
token instead of re-reading the prompt, and ``open_branches`` when it can evaluate several
prefixes in one engine call: see :mod:`nextword._decoding.branches`).

What a word is
    The next word is the first token after the prompt followed by every token up to, not
    including, the next token that *starts a new word* (see :func:`starts_new_word`): one whose
    text begins with whitespace, punctuation or a symbol, or an end-of-text token (one of the
    generator's ``eos_token_ids``, when it has that attribute). This is the
    byte-level BPE convention (``" cat"`` starts a word, ``"s"`` continues it) and, because the rule
    reads the detokenized text, also SentencePiece's (``"▁cat"`` detokenizes to ``" cat"``). The
    first token always belongs to the word, so after ``"I love ca"`` the word can be ``"ts"``.
    An end-of-text token as the first token is a word of its own.

What its probability is
    For a word reached by the token path ``t1 .. tn``::

        P(word) = p(t1) * p(t2 | t1) * ... * p(tn | t1..tn-1) * p(end | t1..tn)

    where ``p(end | ...)`` is the total probability of the tokens that start a new word (end of
    text included). The last factor makes the words *disjoint* events ("the next word is exactly
    ``" cat"``", not ``" cats"``), so the probabilities of all words sum to 1. When several token
    paths spell the same text, the word's probability is the sum over the paths examined (except
    for texts holding U+FFFD, an incomplete character: distinct byte sequences read alike there,
    so each path stays a word of its own).

How exact it is
    The search is best-first: word prefixes are extended in order of decreasing probability, so
    every prefix more likely than the ``k``-th best word is extended unless one of the bounds
    stops it: at most ``beam_width`` prefixes of each length are extended, none below
    ``min_prob``, none longer than ``max_tokens`` tokens (nor past the context window). See
    :func:`search_words` for the accounting (``unexplored_mass``).

    A backend that returns only the top N log-probabilities per position (``capabilities.logits``
    False, a remote server) is searched over the listed tokens only: a word's end factor counts the
    listed word starts, and the unlisted mass after every prefix stays unexplored. The accounting
    identity still holds, each word's probability is then a lower bound, and ``unexplored_mass``
    says how much the server's limit left unknown.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from nextword._contract.checks import check_length, encode_text
from nextword._contract.protocol import Generator
from nextword._decoding.branches import Branches
from nextword._types.results import Prediction
from nextword._words.cache import LRU, PerGenerator
from nextword._words.results import ExaminedWord, WordSearch
from nextword._words.rule import MASKS, STARTS, starts_new_word, token_starts_word, word_start_mask
from nextword._words.tree import Allowed, Search, TopNSearch
from nextword.errors import InvalidInput, UnsupportedOption

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "MAX_BEAM_WIDTH",
    "MAX_WORDS",
    "MAX_WORD_TOKENS",
    "ExaminedWord",
    "WordSearch",
    "clear_cache",
    "default_beam_width",
    "predict_words",
    "search_words",
    "search_words_from_ids",
    "starts_new_word",
    "token_starts_word",
    "word_start_mask",
]

#: Most tokens a word may have unless ``max_tokens`` says otherwise.
DEFAULT_MAX_TOKENS = 16

#: Largest ``k`` a word search accepts: its cost grows with ``k`` (through the default beam
#: width), and a list longer than this is no longer a prediction a reader can use.
MAX_WORDS = 100

#: Largest ``beam_width``: the search may evaluate up to ``beam_width * max_tokens`` prefixes.
MAX_BEAM_WIDTH = 256

#: Largest ``max_tokens`` (tokens in one word).
MAX_WORD_TOKENS = 64

#: How many results :func:`predict_words` keeps per generator.
CACHE_SIZE = 256


def default_beam_width(k: int) -> int:
    """The beam width used when none is given: ``max(16, 2 * k)``."""
    return max(16, 2 * k)


_RESULTS = PerGenerator()


def search_words(
    generator: Generator,
    prompt: str,
    k: int = 5,
    *,
    beam_width: int | None = None,
    min_prob: float = 0.0,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    allowed: Allowed | None = None,
) -> WordSearch:
    """Search for the ``k`` most likely next words after ``prompt`` (uncached; see
    :func:`predict_words`), returning every word examined and the mass accounting.

    The search extends word prefixes best-first (most probable first). A prefix is *extended* by
    computing the next-token distribution after it (one model call); that completes the word it
    spells, with probability ``P(prefix) * p(end | prefix)``, and makes its continuations (the
    tokens that do not start a new word) candidate prefixes. The first tokens after the prompt
    are the initial candidates; an end-of-text token among them is a complete word at no cost.
    On a backend that evaluates several continuations at once (its ``open_branches``), the prefixes the search is about
    to extend are evaluated together, in one engine call; the result is the same.

    It stops when the next candidate is no more likely than the ``k``-th best word found (no
    word below it can be more likely: the top ``k`` are then exact), or when no candidate is
    left within the bounds:

    * ``beam_width`` (default :func:`default_beam_width`): at most this many prefixes of each
      token length are extended, and only the ``beam_width`` most likely continuations of each
      prefix are candidates;
    * ``min_prob``: a prefix less likely than this is never extended;
    * ``max_tokens``: a word has at most this many tokens; prompt plus word must also fit the
      context window.

    ``allowed`` (optional) restricts the words: ``allowed(path)`` is a boolean mask over the
    vocabulary of the tokens that may follow the token path ``path`` (``()`` for the first
    token), or None for no restriction. A word-start token ruled out after ``path`` means the
    word may not end there. The mass of the tokens ruled out is ``excluded_mass``.

    ``unexplored_mass`` is the total probability of the candidate prefixes that were *not*
    extended (pruned by a bound, or left when the search stopped). Every next word either is one
    of ``words`` through an examined token path, or begins with one of those prefixes (or was
    ruled out by ``allowed``), so::

        sum(word.prob for word in words) + unexplored_mass + excluded_mass == 1   (up to rounding)

    and the true probability of any word is at most its examined probability plus
    ``unexplored_mass`` (another spelling of it may hide in an unexplored prefix). A word not
    examined is no more likely than the most likely unexplored prefix.

    Raises :class:`~nextword.errors.InvalidInput` for an empty or non-string prompt or bad
    bounds, :class:`~nextword.errors.ContextLengthExceeded` when the prompt does not fit, and
    :class:`~nextword.errors.UnsupportedOption` when the backend cannot predict.
    """
    beam, floor, depth_limit = check_bounds(k, beam_width, min_prob, max_tokens)
    generator.capabilities.require("predict_next", generator.backend)
    prompt_ids = _encode(generator, prompt)
    check_length(len(prompt_ids), 1, generator.context_length)
    room = generator.context_length - len(prompt_ids)  # most tokens a word can have here
    search: Search
    if generator.capabilities.logits:
        search = Search(generator, prompt_ids, k, beam, floor, min(depth_limit, room), allowed)
    elif allowed is not None:
        raise UnsupportedOption(
            f"the {generator.backend!r} backend lists only its top log-probabilities; a restricted word "
            "search (allowed=...) needs full logits",
            option="allowed",
            backend=generator.backend,
        )
    else:
        search = TopNSearch(generator, prompt_ids, k, beam, floor, min(depth_limit, room))
    try:
        search.start()
        while (candidate := search.next_candidate()) is not None:
            search.extend(*candidate)
    finally:
        search.evaluator.close()
    return search.result(prompt, max_tokens)


def search_words_from_ids(
    generator: Generator,
    prompt_ids: Sequence[int],
    k: int = 5,
    *,
    prompt: str = "",
    starts: Sequence[tuple[tuple[int, ...], float]] | None = None,
    beam_width: int | None = None,
    min_prob: float = 0.0,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    branches: Branches | None = None,
) -> WordSearch:
    """:func:`search_words` after the token ids ``prompt_ids`` (``prompt`` is only copied into the
    result); with ``starts``, beginning from those word prefixes instead of from every first token.

    ``branches``, when given, is the state after ``prompt_ids`` to evaluate the paths from (see
    :mod:`nextword._decoding.branches`; for instance a
    :class:`~nextword._decoding.branches.SharedBranches` that several searches from the same
    prompt use); the call does not close it. By default one is opened and closed.

    ``starts`` are token paths, each with its absolute natural-log probability after
    ``prompt_ids``; no path may be a prefix of another (the events must be disjoint), and a
    path's tokens after the first must continue the word. The words found are the words that
    begin with one of these paths, and the mass accounting holds with the starts' total in
    place of 1: ``examined_mass + unexplored_mass == sum(exp(logprob))`` (this is how
    :mod:`nextword._words.complete` searches the completions of a typed word).
    """
    beam, floor, depth_limit = check_bounds(k, beam_width, min_prob, max_tokens)
    generator.capabilities.require("predict_next", generator.backend)
    prompt_ids = list(prompt_ids)
    check_length(len(prompt_ids), 1, generator.context_length)
    depth_limit = min(depth_limit, generator.context_length - len(prompt_ids))
    paths = None if starts is None else [(tuple(int(t) for t in path), float(lp)) for path, lp in starts]
    if paths is not None and any(not path or len(path) > depth_limit for path, _ in paths):
        raise InvalidInput(f"every start path must hold 1 to {depth_limit} tokens (max_tokens, and the context)")
    search = Search(generator, prompt_ids, k, beam, floor, depth_limit, None, branches)
    try:
        if paths is None:
            search.start()
        else:
            search.start_from(paths)
        while (candidate := search.next_candidate()) is not None:
            search.extend(*candidate)
    finally:
        search.evaluator.close()
    return search.result(prompt, max_tokens)


def predict_words(
    generator: Generator,
    prompt: str,
    k: int = 5,
    *,
    beam_width: int | None = None,
    min_prob: float = 0.0,
    max_tokens: int = DEFAULT_MAX_TOKENS,
) -> Prediction:
    """The ``k`` most likely next *words* after ``prompt``, most likely first.

    Returns a :class:`~nextword._types.results.Prediction` with ``unit="word"``. Each candidate's
    ``text`` is the word as the model writes it (leading space included: ``" cat"``),
    ``token_ids`` its most likely token path, ``prob`` the probability that the next word is
    exactly this one (its tokens, then a word start; summed over the token paths examined), and
    ``logprob`` its natural log. ``unexplored_mass`` is the probability the search left
    unexplored (see :func:`search_words` for the definition, the bounds and the stopping rule):
    the top ``k`` are exact unless a bound stopped the search before it could prove them, and
    ``sum(probs) + unexplored_mass <= 1``, the difference being the examined words not returned.
    Fewer than ``k`` candidates come back only when the bounds leave fewer complete words.

    Results are cached per generator (least recently used, :data:`CACHE_SIZE` entries) by prompt
    and parameters; :func:`clear_cache` empties the cache.

    The bounds are capped so that one call stays short: ``k`` at most :data:`MAX_WORDS`,
    ``beam_width`` at most :data:`MAX_BEAM_WIDTH`, ``max_tokens`` at most
    :data:`MAX_WORD_TOKENS` (:class:`~nextword.errors.InvalidInput` above them);
    :func:`search_words` has no caps.
    """
    beam, floor, depth = check_bounds(k, beam_width, min_prob, max_tokens, capped=True)
    if not isinstance(prompt, str):
        raise InvalidInput(f"the prompt must be a string, got {type(prompt).__name__}")
    key = (prompt, k, beam, floor, depth)
    cache: LRU = _RESULTS.get(generator, lambda: LRU(CACHE_SIZE))
    hit = cache.get(key)
    if hit is not None:
        return dataclasses.replace(hit, settings=generator.settings)
    search = search_words(generator, prompt, k, beam_width=beam, min_prob=floor, max_tokens=depth)
    result = search.prediction(k)
    cache.put(key, result)
    return result


def clear_cache() -> None:
    """Forget every cached word prediction (and every generator's word-start table and kept
    word-search trees)."""
    from nextword._words.trees import clear_all  # the trees import the search

    _RESULTS.clear()
    MASKS.clear()
    STARTS.clear()
    clear_all()


# ---- validation ----------------------------------------------------------------------------------


def check_bounds(
    k: object, beam_width: object, min_prob: object, max_tokens: object, *, capped: bool = False
) -> tuple[int, float, int]:
    """The checked search bounds; ``capped`` also enforces :data:`MAX_WORDS`,
    :data:`MAX_BEAM_WIDTH` and :data:`MAX_WORD_TOKENS` (as :func:`predict_words` does)."""
    k = _bounded_int("k", k, MAX_WORDS if capped else None, " (for more candidates use unit='token')")
    if beam_width is None:
        beam_width = default_beam_width(k)
    beam_width = _bounded_int("beam_width", beam_width, MAX_BEAM_WIDTH if capped else None)
    if isinstance(min_prob, bool) or not isinstance(min_prob, (int, float)) or not 0.0 <= min_prob < 1.0:
        raise InvalidInput(f"min_prob must be a number in [0, 1), got {min_prob!r}")
    max_tokens = _bounded_int("max_tokens", max_tokens, MAX_WORD_TOKENS if capped else None)
    return beam_width, float(min_prob), max_tokens


def _bounded_int(name: str, value: object, high: int | None, hint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{name} must be a positive integer, got {value!r}")
    if high is not None and value > high:
        shown = repr(value) if len(repr(value)) <= 60 else f"{repr(value)[:40]}..."
        raise InvalidInput(f"{name} must be at most {high} for a word prediction{hint}, got {shown}")
    return value


def _encode(generator: Generator, prompt: object) -> list[int]:
    ids = encode_text(generator, prompt)
    check_length(len(ids), 0, generator.context_length)
    return ids
