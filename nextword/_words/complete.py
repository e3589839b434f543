"""Completing the word being typed (token healing for word prediction).

A prompt that ends inside a word ("I love ca") is a problem for a language model: the tokenizer
split the half word (``" ca"``) differently from how the model saw the whole word in training
(``" cats"`` is one token), so the model's continuations of ``" ca"`` are those of a rare token
sequence. The remedy is *token healing*: back up over the tokens of the partial word, then
constrain the continuation to spell the typed characters. This module does that exactly for
word prediction:

1. The partial word is found the way the word search finds words (:func:`~nextword._words.search.starts_new_word`):
   the prompt's last token that starts a word, and every token after it. Its text as the model
   writes it (``" ca"``, leading space included) is the *typed* text ``T``; the tokens before it
   are the context.
2. The token paths after the context that spell ``T`` and go beyond it (or end exactly on it)
   are enumerated from the vocabulary's token texts, most likely first, whatever the
   segmentation (``" cat"``; ``" c" + "at"``; a character split across byte tokens) within the
   bounds below: these *covering* paths are disjoint events whose total is
   ``P(the next word starts with T | context)``.
3. The word search (:func:`nextword._words.search.search_words_from_ids`) runs from those paths, so each
   completed word's probability is the exact product of token probabilities with the
   end-of-word factor, summed over its paths, divided by that total:
   ``P(word | context, the word starts with T)``.

Bounds and accounting follow the word search: covering paths are searched best-first within
``beam_width`` paths per length, ``min_prob`` and ``max_tokens``, and none holding less than
:data:`PATH_SHARE` of the mass found (``T`` cut into pieces the tokenizer never makes); a path that
still spells only part of ``T`` and was not extended leaves its mass *unresolved*. Probabilities are divided by the
examined covering mass plus that unresolved mass, so that the returned probabilities, the other
examined words and ``unexplored_mass`` add up to 1, and each probability is a lower bound of the
exact conditional probability (equal to it when nothing is unexplored).
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

from nextword._contract.checks import added_first_token, check_length, encode_text
from nextword._contract.protocol import Generator
from nextword._decoding.branches import Branches
from nextword._decoding.detok import text_after
from nextword._types.results import Candidate, Prediction
from nextword._words.cache import PerGenerator
from nextword._words.pieces import PieceIndex, piece_index
from nextword._words.results import WordSearch
from nextword._words.rule import eos_ids, word_start_mask
from nextword._words.search import DEFAULT_MAX_TOKENS, check_bounds, predict_words, search_words_from_ids
from nextword._words.tree import Evaluator, is_batched
from nextword._words.trees import Trees, shared_trees
from nextword.errors import InvalidInput, UnsupportedOption

__all__ = [
    "CompleteMode",
    "WordCompletion",
    "complete_after",
    "complete_word",
    "FINISHED_WORD",
    "next_words",
    "partial_word",
    "predict_or_complete",
    "read_typed_word",
]

CompleteMode = Literal["auto", "word", "next"]
"""How :func:`predict_or_complete` reads a prompt: ``"word"`` completes the word the prompt ends
in, ``"next"`` predicts the word after the prompt, ``"auto"`` decides (see there)."""

_PIECES = PerGenerator()


def partial_word(generator: Generator, prompt: str) -> tuple[list[int], list[int], str]:
    """Split ``prompt``'s tokens into the context and the word being typed.

    Returns ``(context_ids, word_ids, typed)``: the word is the last token that starts a word
    (by :func:`~nextword._words.search.word_start_mask`) and the tokens after it; ``typed`` is the text
    those tokens add after the context (``" ca"`` for ``"I love ca"``). When the word begins the
    text and the tokenizer put no token before it, the context is the generator's end-of-text
    token (how GPT-style models see the start of a document); without one,
    :class:`~nextword.errors.InvalidInput` is raised.
    """
    ids = encode_text(generator, prompt)
    check_length(len(ids), 0, generator.context_length)
    vocab = _vocab_size(generator, ids)
    mask = word_start_mask(generator, vocab)
    first = 1 if len(ids) > 1 and added_first_token(generator, ids, prompt) else 0
    start = len(ids) - 1
    while start > first and not (ids[start] >= vocab or mask[ids[start]]):
        start -= 1
    context, word = ids[:start], ids[start:]
    if not context:
        eos = sorted(eos_ids(generator))
        if not eos:
            raise InvalidInput(
                f"nothing precedes the word being typed in {prompt!r} and the model has no "
                "end-of-text token to stand for the start of the text; give some context"
            )
        context = [eos[0]]
        return context, word, text_after(generator.detokenize, [], word)
    return context, word, text_after(generator.detokenize, context[-1:], word)


def _vocab_size(generator: Generator, ids: Sequence[int]) -> int:
    cached: dict[str, int] = _PIECES.get(generator, dict)
    if "vocab" not in cached:
        cached["vocab"] = int(np.asarray(generator.next_token_logits(list(ids))).shape[-1])
    return cached["vocab"]


# ---- the completion ---------------------------------------------------------------------------------

#: A completion follows no token path holding less than this share of the typed word's mass
#: (the mass of the paths found that spell the typed text: a pending path is not extended below
#: this share of the mass found before it, best-first; the word search extends no prefix below
#: this share of the whole). Such paths are the typed text cut
#: into pieces the tokenizer never makes (``" b" + "e" + "gin"``); following them cost most of a
#: keystroke's engine rows deep inside a word. Their mass stays in the accounting (unexplored).
PATH_SHARE = 1e-6


@dataclasses.dataclass(frozen=True)
class WordCompletion:
    """The completions of a typed word, with the mass accounting.

    ``search`` is the word search run from the covering paths (absolute probabilities after the
    context); ``prefix_mass`` is the total probability of those paths (``P(next word starts with
    typed)`` as far as examined) and ``unresolved_mass`` the probability of the paths that spell
    only part of ``typed`` and were left unexplored by the bounds; ``covering_paths`` counts the
    paths the search started from. ``normalizer`` is the sum of the two masses:
    conditional probabilities are absolute ones divided by it.
    """

    prompt: str
    typed: str
    context_ids: tuple[int, ...]
    search: WordSearch
    prefix_mass: float
    unresolved_mass: float
    model_calls: int
    covering_paths: int
    dropped_mass: float = 0.0
    """Mass of the covering paths the search could not reach within its beam (unexplored)."""

    @property
    def normalizer(self) -> float:
        """``prefix_mass + unresolved_mass``."""
        return self.prefix_mass + self.unresolved_mass

    @property
    def unexplored_mass(self) -> float:
        """Conditional probability left unexplored (in covering paths or unresolved ones)."""
        if self.normalizer <= 0.0:
            return 1.0
        rest = self.search.unexplored_mass + self.dropped_mass + self.unresolved_mass
        return min(1.0, rest / self.normalizer)

    def prob_of(self, text: str) -> float:
        """Conditional probability of the word ``text`` (0.0 when it was not examined)."""
        for word in self.search.words:
            if word.text == text:
                return word.prob / self.normalizer
        return 0.0

    def prediction(self, k: int) -> Prediction:
        """The ``k`` most likely completions as a ``unit="word"`` prediction with ``typed`` set."""
        norm = self.normalizer
        candidates = []
        for word in self.search.words[:k]:
            prob = word.prob / norm
            candidates.append(
                Candidate(
                    text=word.text,
                    token_ids=word.token_ids,
                    prob=prob,
                    logprob=word.logprob - math.log(norm),
                    remaining=word.text[len(self.typed) :],
                )
            )
        return Prediction(
            prompt=self.prompt,
            candidates=tuple(candidates),
            settings=self.search.settings,
            unit="word",
            unexplored_mass=self.unexplored_mass,
            typed=self.typed,
            prefix_prob=self.prefix_mass,
        )


def complete_word(
    generator: Generator,
    prompt: str,
    k: int = 5,
    *,
    beam_width: int | None = None,
    min_prob: float = 0.0,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    trees: Trees | None = None,
) -> WordCompletion:
    """Complete the word ``prompt`` ends in (see the module docstring for the method).

    The word being typed is found by :func:`partial_word`; its completions are the words that
    begin with its text, with probabilities conditioned on that. The bounds are those of
    :func:`nextword._words.search.search_words` and apply to the covering paths too; ``max_tokens``
    counts every token of the word, typed ones included. Raises
    :class:`~nextword.errors.InvalidInput` for bad arguments and when no word can be found,
    :class:`~nextword.errors.ContextLengthExceeded` when the prompt does not fit. With ``trees``
    (see :mod:`nextword._words.trees`) the search runs on the kept tree of its context: the same
    steps, the same result, rows and arithmetic already done read from the tree.
    """
    beam, floor, depth_limit = check_bounds(k, beam_width, min_prob, max_tokens)
    generator.capabilities.require("predict_next", generator.backend)
    if not generator.capabilities.logits:
        raise UnsupportedOption(
            f"the {generator.backend!r} backend lists only its top log-probabilities; completing a "
            "half-typed word needs the full next-token distribution (use complete='next')",
            option="complete",
            backend=generator.backend,
        )
    context, _, typed = partial_word(generator, prompt)
    bounds = {"beam_width": beam, "min_prob": floor, "max_tokens": depth_limit}
    if trees is None:
        return complete_after(generator, context, typed, k, prompt=prompt, **bounds)  # type: ignore[arg-type]
    with trees.borrow(context) as tree:
        return complete_after(generator, context, typed, k, prompt=prompt, branches=tree, **bounds)  # type: ignore[arg-type]


def complete_after(
    generator: Generator,
    context: Sequence[int],
    typed: str,
    k: int = 5,
    *,
    prompt: str = "",
    beam_width: int | None = None,
    min_prob: float = 0.0,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    branches: Branches | None = None,
) -> WordCompletion:
    """The completions of ``typed`` after the token ids ``context`` (``typed`` as the model writes
    the word, a leading space included).

    ``branches``: the state after ``context`` to evaluate from, lent by the caller (not closed
    here; see :func:`~nextword._words.search.search_words_from_ids`); by default one is opened."""
    beam, floor, depth_limit = check_bounds(k, beam_width, min_prob, max_tokens)
    if not isinstance(typed, str) or not typed:
        raise InvalidInput("the typed text of the word to complete must be a non-empty string")
    context = list(context)
    check_length(len(context), 1, generator.context_length)
    depth_limit = min(depth_limit, generator.context_length - len(context))
    owned = branches is None
    state = generator.open_branches(context) if branches is None else branches
    evaluator = Evaluator(state, batched=is_batched(state), owned=owned)
    try:
        root = evaluator.logprobs(())
        vocab = root.shape[-1]
        index = piece_index(generator, vocab)
        mask = word_start_mask(generator, vocab)
        starts, unresolved, prefix_mass, dropped = _covering_paths(
            evaluator, root, typed, index, mask, beam, floor, depth_limit, PATH_SHARE
        )
        phase_calls = evaluator.calls
    finally:
        evaluator.close()
    if not starts and unresolved > 0.0 and index.unknown:
        raise InvalidInput(
            f"{typed!r} is only spelled here by tokens holding part of a character, and the "
            f"{generator.backend!r} backend gives no token_bytes() to follow them"
        )
    if not starts:
        raise InvalidInput(
            f"no token sequence of at most {depth_limit} tokens spelling {typed!r} was found within the "
            "search bounds (beam_width, min_prob, max_tokens)"
        )
    # The search follows no path holding less than PATH_SHARE of the typed word's mass either.
    search_floor = max(floor, PATH_SHARE * (prefix_mass + unresolved))
    search = search_words_from_ids(
        generator,
        context,
        k,
        prompt=prompt,
        starts=starts,
        beam_width=beam,
        min_prob=search_floor,
        max_tokens=depth_limit,
        branches=None if owned else state,
    )
    return WordCompletion(
        prompt=prompt,
        typed=typed,
        context_ids=tuple(context),
        search=search,
        prefix_mass=prefix_mass,
        unresolved_mass=unresolved,
        dropped_mass=dropped,
        model_calls=phase_calls + search.model_calls,
        covering_paths=len(starts),
    )


def _covering_paths(
    evaluator: Evaluator,
    root: npt.NDArray[np.float64],
    typed: str,
    index: PieceIndex,
    mask: npt.NDArray[np.bool_],
    beam: int,
    floor: float,
    depth_limit: int,
    share: float = 0.0,
) -> tuple[list[tuple[tuple[int, ...], float]], float, float, float]:
    """The token paths that spell ``typed`` and reach its end, with their log-probability after
    the evaluator's prompt (the ``beam`` most likely of each length); the mass of the paths that
    spell a part of it and were not extended; the total mass of all covering paths; and the mass
    of the covering paths left out. Matching is on bytes, so a character split across tokens is followed exactly.

    Paths still inside ``typed`` (*pending*) are extended best-first, at most ``beam`` per
    length, none at ``depth_limit`` tokens, none below ``floor`` nor below ``share`` times the
    mass of the covering paths found so far (less than that share of the typed word's mass:
    paths that spell it in pieces the tokenizer never makes). Tokens after the first must
    continue the word (not start a new one).
    """
    target = typed.encode("utf-8")
    covering: list[tuple[tuple[int, ...], npt.NDArray[np.int64], npt.NDArray[np.float64]]] = []
    pending: list[tuple[float, int, tuple[int, ...], int]] = []  # (-logprob, order, path, bytes spelled)
    covered: list[float] = []  # the mass of the covering paths found so far, in parts
    order = itertools.count()
    unresolved = 0.0
    extended: dict[int, int] = {}
    vocab = mask.shape[-1]

    def consider(path: tuple[int, ...], logprob: float, done: int, logp: npt.NDArray[np.float64]) -> None:
        nonlocal unresolved
        for token in index.maybe_consistent(target[done:]):
            if not path or (token < vocab and not mask[token]):
                unresolved += math.exp(logprob + float(logp[token]))  # cannot be followed: counted as unexplored
        tokens = index.consistent(target[done:])
        tokens = tokens[tokens < vocab]
        if path:
            tokens = tokens[~mask[tokens]]  # a word start would begin another word
        lps = logprob + logp[tokens]
        keep = np.isfinite(lps)
        tokens, lps = tokens[keep], lps[keep]
        covers = done + index.lengths[tokens] >= len(target)
        if covers.any():
            covering.append((path, tokens[covers], lps[covers]))
            covered.append(float(np.exp(lps[covers]).sum()))
        for token, lp in zip(tokens[~covers].tolist(), lps[~covers].tolist(), strict=True):
            spelled = done + int(index.lengths[token])
            heapq.heappush(pending, (-lp, next(order), (*path, token), spelled))

    def cutoff() -> float:
        """The least probability of a pending path still worth extending."""
        return max(floor, share * math.fsum(covered))

    def upcoming(n: int) -> list[tuple[int, ...]]:
        """The pending paths extended next if no more likely one appeared (evaluated in the same
        engine call on a backend that batches; the rows are the same either way)."""
        counts = dict(extended)
        out: list[tuple[int, ...]] = []
        least = cutoff()
        for neg, _, path, _ in heapq.nsmallest(4 * n, pending):
            depth = len(path)
            if math.exp(-neg) < least or depth >= depth_limit or counts.get(depth, 0) >= beam:
                continue
            counts[depth] = counts.get(depth, 0) + 1
            out.append(path)
            if len(out) == n:
                break
        return out

    consider((), 0.0, 0, root)
    while pending:
        neg, _, path, done = heapq.heappop(pending)
        prob = math.exp(-neg)
        depth = len(path)
        if prob < cutoff() or depth >= depth_limit or extended.get(depth, 0) >= beam:
            unresolved += prob
            continue
        extended[depth] = extended.get(depth, 0) + 1
        consider(path, -neg, done, evaluator.logprobs(path, upcoming))
    # The search extends at most ``beam`` paths of each length, most likely first: only the
    # ``beam`` most likely covering paths of each length can be extended; the others' mass is
    # returned apart (unexplored, like the search's own unexplored candidates).
    starts: list[tuple[tuple[int, ...], float]] = []
    total = math.fsum(float(np.exp(lps).sum()) for _, _, lps in covering)
    by_depth: dict[int, list[tuple[tuple[int, ...], npt.NDArray[np.int64], npt.NDArray[np.float64]]]] = {}
    for path, tokens, lps in covering:
        by_depth.setdefault(len(path) + 1, []).append((path, tokens, lps))
    for chunks in by_depth.values():
        flat = [(lp, path, t) for path, tokens, lps in chunks for t, lp in _top_pairs(tokens, lps, beam)]
        flat.sort(key=lambda x: -x[0])
        starts.extend(((*path, t), lp) for lp, path, t in flat[:beam])
    # A covering path is never extended here, so no start is a prefix of another.
    kept = math.fsum(math.exp(lp) for _, lp in starts)
    return starts, unresolved, total, max(0.0, total - kept)


def _top_pairs(tokens: npt.NDArray[np.int64], lps: npt.NDArray[np.float64], n: int) -> list[tuple[int, float]]:
    """The ``n`` most likely ``(token, logprob)`` pairs."""
    if len(tokens) > n:
        pick = np.argpartition(-lps, n - 1)[:n]
        tokens, lps = tokens[pick], lps[pick]
    return list(zip(tokens.tolist(), lps.tolist(), strict=True))


# ---- the reading of a prompt -----------------------------------------------------------------------


#: ``complete="auto"`` reads the typed word as finished when the word exactly as typed holds more
#: than this share of the completions' conditional probability.
FINISHED_WORD = 0.5


def read_typed_word(
    generator: Generator,
    prompt: str,
    k: int,
    *,
    beam_width: int | None = None,
    min_prob: float = 0.0,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    trees: Trees | None = None,
) -> WordCompletion | None:
    """How ``complete="auto"`` reads a prompt: the completions of the word it ends in when that
    word is unfinished, or None when it is finished (the next word is then predicted).

    The reading comes from the healed distribution itself: the completions of the typed word
    (:func:`complete_word`, conditional on what was typed). When the word exactly as typed (no
    characters left to type) holds more than :data:`FINISHED_WORD` of that mass, the word is
    finished (``"I love cats because"``: ``" because"`` itself); otherwise it is completed
    (``"Happy birth"``: ``" birthday"``, although ``" birth"`` is a token and the raw next-token
    distribution after it favours a new word). None too when there is nothing to complete
    (nothing before the word, or nothing spells it within the bounds), and on a backend that
    lists only its top log-probabilities (a completion needs the full distribution).
    """
    if not generator.capabilities.logits:
        return None
    try:
        done = complete_word(
            generator, prompt, k, beam_width=beam_width, min_prob=min_prob, max_tokens=max_tokens, trees=trees
        )
    except InvalidInput:
        return None
    return None if done.prob_of(done.typed) > FINISHED_WORD else done


def predict_or_complete(
    generator: Generator,
    prompt: str,
    k: int = 5,
    *,
    complete: CompleteMode = "auto",
    beam_width: int | None = None,
    min_prob: float = 0.0,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    trees: Trees | None = None,
    reuse: bool = True,
) -> Prediction:
    """Word prediction for a prompt that may end inside a word.

    * ``complete="next"``: the next whole word after the prompt (:func:`nextword._words.search.predict_words`).
    * ``complete="word"``: the completions of the word the prompt ends in (:func:`complete_word`);
      each candidate has ``remaining`` (what is still to type) and the prediction has ``typed``.
    * ``complete="auto"``: reads the prompt with :func:`read_typed_word`: when the word it ends in,
      exactly as typed, holds most of its completions' conditional probability, the word is
      finished and the next word is predicted (``"The capital of France is"``); otherwise the
      word is completed (``"I love ca"``, ``"Happy birth"``). A prompt that ends in a space is
      completed from that space (``"I love "`` gives ``" cats"`` with ``remaining="cats"``). The
      reading costs the completion search of the typed word (the search ``complete="word"``
      runs); a finished word then costs a next-word search as well.

    The searches run on word-search trees (:mod:`nextword._words.trees`): ``trees`` when given
    (a typing session's), else the generator's shared ones, so that a prompt whose context was
    searched recently (the same text before the word being typed) replays that search from its
    tree instead of asking the engine again; the result is the same (:func:`next_words`).
    ``reuse=False`` runs every search afresh (no tree), as before trees existed.
    """
    if complete not in ("auto", "word", "next"):
        raise InvalidInput(f"complete must be 'auto', 'word' or 'next', got {complete!r}")
    bounds = {"beam_width": beam_width, "min_prob": min_prob, "max_tokens": max_tokens}
    if reuse and trees is None:
        trees = shared_trees(generator)
    elif not reuse:
        trees = None
    if complete == "next":
        return next_words(generator, prompt, k, trees=trees, **bounds)  # type: ignore[arg-type]
    check_bounds(k, beam_width, min_prob, max_tokens, capped=True)  # the public limits, whatever the reading
    if complete == "auto":
        done = read_typed_word(generator, prompt, k, trees=trees, **bounds)  # type: ignore[arg-type]
        if done is None:
            return next_words(generator, prompt, k, trees=trees, **bounds)  # type: ignore[arg-type]
        return done.prediction(k)
    return complete_word(generator, prompt, k, trees=trees, **bounds).prediction(k)  # type: ignore[arg-type]


def next_words(
    generator: Generator,
    prompt: str,
    k: int = 5,
    *,
    beam_width: int | None = None,
    min_prob: float = 0.0,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    trees: Trees | None = None,
) -> Prediction:
    """:func:`~nextword._words.search.predict_words` (the next whole word after ``prompt``), its
    search run on the tree of the prompt's tokens when ``trees`` is given (on a backend with
    full logits): the same search from the same rows, so the same prediction."""
    if trees is None or not generator.capabilities.logits:
        return predict_words(generator, prompt, k, beam_width=beam_width, min_prob=min_prob, max_tokens=max_tokens)
    beam, floor, depth = check_bounds(k, beam_width, min_prob, max_tokens, capped=True)
    ids = encode_text(generator, prompt)
    check_length(len(ids), 0, generator.context_length)
    with trees.borrow(ids) as tree:
        search = search_words_from_ids(
            generator, ids, k, prompt=prompt, beam_width=beam, min_prob=floor, max_tokens=depth, branches=tree
        )
    return search.prediction(k)
