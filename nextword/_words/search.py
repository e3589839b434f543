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

import collections
import dataclasses
import heapq
import itertools
import math
import threading
import unicodedata
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from nextword._contract.checks import check_length, encode_text
from nextword._contract.protocol import Generator
from nextword._decoding.branches import Branches, SessionBranches, SharedBranches
from nextword._decoding.detok import text_after
from nextword._decoding.logprobs import top_logprobs
from nextword._decoding.processors import log_softmax, top_indices
from nextword._runtime.scheduler import check_cancelled
from nextword._types.results import Candidate, Prediction, Settings
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

_APOSTROPHES = "'\u2019"
_SENTENCEPIECE_SPACE = "\u2581"
_REPLACEMENT = "\ufffd"


def starts_new_word(piece: str) -> bool:
    """Whether a token whose text is ``piece`` begins a new word (rather than continuing one).

    True when the text is empty (control tokens), or begins with whitespace (SentencePiece's
    ``▁`` included), punctuation or a symbol (Unicode categories P* and S*). False for letters,
    digits and marks; for an apostrophe (``'`` or ``’``), which continues a word whether the
    tokenizer keeps it alone or joined (``" don" + "'t"``, ``" don" + "'" + "t"``, ``" dogs" + "'"``);
    and for a text that begins with U+FFFD: the token holds the middle or end of a character split
    across tokens (byte-level vocabularies), which continues the word.
    """
    if not piece:
        return True
    first = piece[0]
    if first == _REPLACEMENT or first in _APOSTROPHES:
        return False
    if first.isspace() or first == _SENTENCEPIECE_SPACE:
        return True
    return unicodedata.category(first)[0] in "PS"


def default_beam_width(k: int) -> int:
    """The beam width used when none is given: ``max(16, 2 * k)``."""
    return max(16, 2 * k)


# ---- per-generator caches (weakly keyed, so a closed and dropped generator is forgotten) -------


class _PerGenerator:
    """A value per generator, held weakly when the generator allows it (else by id, strongly)."""

    def __init__(self) -> None:
        self._weak: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._strong: dict[int, tuple[Any, Any]] = {}
        self._lock = threading.RLock()

    def get(self, generator: Any, make: Callable[[], Any]) -> Any:
        with self._lock:
            try:
                value = self._weak.get(generator)
                if value is None:
                    value = self._weak[generator] = make()
                return value
            except TypeError:  # not weak-referenceable or not hashable
                entry = self._strong.get(id(generator))
                if entry is None or entry[0] is not generator:
                    entry = self._strong[id(generator)] = (generator, make())
                return entry[1]

    def clear(self) -> None:
        with self._lock:
            self._weak = weakref.WeakKeyDictionary()
            self._strong.clear()


_MASKS = _PerGenerator()
_RESULTS = _PerGenerator()
_STARTS = _PerGenerator()  # token id -> starts a word, for top-N backends


def word_start_mask(generator: Generator, vocab_size: int) -> npt.NDArray[np.bool_]:
    """For every token id below ``vocab_size``: does that token start a new word?

    Each token's text is taken as it reads *inside* a text (a SentencePiece decoder that drops
    the leading space of a whole text is handled by decoding the token after a reference token),
    then classified by :func:`starts_new_word`; end-of-text tokens, and ids the tokenizer cannot
    decode (padding rows of the output layer), start a new word. Computed once per generator and
    vocabulary size (one ``detokenize`` call per token, or two for SentencePiece-style decoders).
    """
    masks: dict[int, npt.NDArray[np.bool_]] = _MASKS.get(generator, dict)
    mask = masks.get(vocab_size)
    if mask is None:
        mask = masks[vocab_size] = _build_mask(generator, vocab_size)
    return mask


def _build_mask(generator: Generator, vocab_size: int) -> npt.NDArray[np.bool_]:
    piece = _piece_reader(generator)
    mask = np.empty(vocab_size, dtype=np.bool_)
    for t in range(vocab_size):
        try:
            mask[t] = starts_new_word(piece(t))
        except Exception:  # an id the tokenizer does not know: treat it as a word of its own
            mask[t] = True
    for t in _eos_ids(generator):
        if 0 <= t < vocab_size:
            mask[t] = True
    mask.flags.writeable = False
    return mask


def _piece_reader(generator: Generator) -> Callable[[int], str]:
    """A function giving a token's text as it reads after other text.

    Byte-level BPE decoders render a lone token as it reads anywhere (``" the"``); SentencePiece
    decoders may drop the leading space of the whole text (``"▁the"`` alone gives ``"the"``). One
    probe tells which; for the second kind each token is decoded after a reference token.
    """
    detok = generator.detokenize
    probe = generator.tokenize("x the")
    if probe and detok(probe[-1:]).startswith((" ", _SENTENCEPIECE_SPACE)):
        return lambda t: detok([t])
    ref = generator.tokenize("x")[-1:]
    head = detok(ref)

    def after_ref(t: int) -> str:
        text = detok([*ref, t])
        return text[len(head) :] if text.startswith(head) else detok([t])

    return after_ref


def _eos_ids(generator: Generator) -> frozenset[int]:
    return frozenset(int(t) for t in generator.eos_token_ids)


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


# ---- the search ----------------------------------------------------------------------------------

#: Most continuations the search asks the backend for in one batched evaluation.
MAX_BATCH = 32

#: For a path, which tokens may follow it (a mask over the vocabulary), or None for all of them.
Allowed = Callable[[tuple[int, ...]], "npt.NDArray[np.bool_] | None"]


class _Evaluator:
    """Next-token log-probabilities after ``prompt + path``, through :class:`Branches`.

    ``batched`` (the backend evaluates several paths in one engine call): on a miss the paths the
    search is expected to extend next are evaluated in the same call and kept until asked for.
    The search reads the same rows either way, so its result does not depend on the batching.
    ``calls`` counts the rows computed, ``batches`` the engine calls. ``owned``: :meth:`close`
    closes the branches too (not when the caller lent them and closes them itself).
    """

    def __init__(self, branches: Branches, batched: bool, *, owned: bool = True) -> None:
        self._branches = branches
        self._batched = batched
        self._owned = owned
        self._rows: dict[tuple[int, ...], npt.NDArray[np.floating]] = {}
        self.calls = 0
        self.batches = 0

    def logits(
        self, path: tuple[int, ...], upcoming: Callable[[int], list[tuple[int, ...]]] | None = None
    ) -> npt.NDArray[np.floating]:
        """Raw next-token logits after ``prompt + path`` (``upcoming(n)``: paths to batch with it)."""
        row = self._rows.pop(path, None)
        if row is None:
            check_cancelled()
            paths = [path]
            if self._batched and upcoming is not None:
                paths += [p for p in upcoming(MAX_BATCH - 1) if p != path and p not in self._rows]
            rows = self._branches.logits(paths)
            self.calls += len(paths)
            self.batches += 1
            self._rows.update(zip(paths[1:], rows[1:], strict=True))
            row = rows[0]
        return np.asarray(row)

    def logprobs(
        self, path: tuple[int, ...], upcoming: Callable[[int], list[tuple[int, ...]]] | None = None
    ) -> npt.NDArray[np.float64]:
        """Next-token log-probabilities after ``prompt + path`` (float64)."""
        return log_softmax(self.logits(path, upcoming))

    def close(self) -> None:
        self._rows.clear()
        if self._owned:
            self._branches.close()


def _is_batched(branches: Branches) -> bool:
    """Whether ``branches`` evaluates several paths per engine call (worth batching ahead)."""
    if isinstance(branches, SharedBranches):
        return branches.batched
    return not isinstance(branches, SessionBranches)


@dataclasses.dataclass
class _Group:
    """The candidate extensions of one prefix (or the first tokens, for the root).

    ``tokens``/``logps`` hold the best ``beam_width`` candidates, most likely first (conditional
    log-probabilities); ``total`` is the absolute mass of *all* candidates, ``taken`` the absolute
    mass of those extended. ``total - taken`` is this group's share of the unexplored mass.
    """

    depth: int
    path: tuple[int, ...]
    logprob: float
    tokens: list[int]
    logps: list[float]
    total: float
    taken: float = 0.0
    next: int = 0

    def peek(self) -> float:
        return math.exp(self.logprob + self.logps[self.next])


@dataclasses.dataclass
class _Word:
    text: str
    logprob: float
    paths: list[tuple[tuple[int, ...], float]]


def _top(logp: npt.NDArray[np.float64], n: int) -> tuple[list[int], list[float]]:
    """The ``n`` largest finite entries (ties by lower id), in decreasing order."""
    top = top_indices(logp, n)
    top = top[np.isfinite(logp[top])]
    return [int(t) for t in top], [float(logp[t]) for t in top]


def _split(
    logits: npt.NDArray[np.floating],
    ends_weight: npt.NDArray[np.float64],
    conts_weight: npt.NDArray[np.float64],
    cont_ids: npt.NDArray[np.intp],
    n_children: int,
) -> tuple[float, float, list[int], list[float]] | None:
    """What an extension needs from a next-token distribution, in a few passes over the
    vocabulary: the mass of the word starts, the mass of the continuations, and the
    ``n_children`` most likely continuations with their log-probabilities (as
    :func:`~nextword._decoding.processors.log_softmax` and :func:`_top` give them, up to float
    rounding). None when a logit is not finite upwards (NaN, +inf): the caller then takes the
    careful path."""
    x = np.array(logits, dtype=np.float64)
    top = float(x.max())
    if not math.isfinite(top):
        return None
    np.subtract(x, top, out=x)
    np.exp(x, out=x)
    total = float(x.sum())
    end_mass = float(x @ ends_weight) / total
    cont_share = float(x @ conts_weight) / total
    children: list[int] = []
    child_logps: list[float] = []
    if n_children and cont_ids.size:
        lse = top + math.log(total)
        sub = np.asarray(logits)[cont_ids]
        for i in top_indices(sub, n_children):
            value = float(sub[i])
            if math.isfinite(value):
                children.append(int(cont_ids[i]))
                child_logps.append(value - lse)
    return end_mass, cont_share, children, child_logps


class _Search:
    """The state of one best-first word search; :func:`search_words` runs its steps.

    Steps: :meth:`start` (the prompt's distribution, the first-token candidates), then
    :meth:`next_candidate` / :meth:`extend` until no candidate is left, then :meth:`result`.
    """

    def __init__(
        self,
        generator: Generator,
        prompt_ids: list[int],
        k: int,
        beam: int,
        floor: float,
        depth_limit: int,
        allowed: Allowed | None,
        branches: Branches | None = None,
    ) -> None:
        self.generator = generator
        self.k = k
        self.beam = beam
        self.floor = floor
        self.depth_limit = depth_limit
        self.allowed = allowed
        self.context = prompt_ids[-1:]
        self.eos = _eos_ids(generator)
        self.words: dict[str | tuple[str, tuple[int, ...]], _Word] = {}
        self.groups: list[_Group] = []
        self.heap: list[tuple[float, int, _Group]] = []
        self.extended = collections.Counter[int]()  # prefixes extended, per length
        self.order = itertools.count()  # breaks ties in the heap: first pushed, first popped
        self.excluded = 0.0  # mass of the tokens ``allowed`` ruled out
        owned = branches is None
        if branches is None:
            branches = generator.open_branches(prompt_ids)
        self.evaluator = _Evaluator(branches, batched=_is_batched(branches), owned=owned)

    # -- step 1: the prompt's distribution ----------------------------------------------------

    def start(self) -> None:
        """Evaluate the prompt; its most likely tokens become the first candidates."""
        root = log_softmax(self.evaluator.logits(()))
        self._tables(root.shape[-1])
        logp = self._restrict((), root, 0.0)
        tokens, logps = _top(logp, self.beam)
        self._add_group(_Group(1, (), 0.0, tokens, logps, float(np.sum(np.exp(logp)))))

    def start_from(self, starts: Sequence[tuple[tuple[int, ...], float]]) -> None:
        """Begin from given word prefixes instead (token paths with their absolute log-probability
        after the prompt): each is a candidate of its own length. Needs the vocabulary size,
        read from the first path's evaluation."""
        for path, logprob in sorted(starts, key=lambda s: (-s[1], s[0])):
            self._add_group(_Group(len(path), path[:-1], logprob, [path[-1]], [0.0], math.exp(logprob)))

    def _tables(self, vocab: int) -> None:
        if not hasattr(self, "ends_weight"):
            starts = word_start_mask(self.generator, vocab)
            self.ends_weight = starts.astype(np.float64)  # p @ ends_weight: the mass of the word starts
            self.conts_weight = 1.0 - self.ends_weight
            self.cont_ids = np.flatnonzero(~starts)  # the tokens that continue a word
            self.hide_starts = np.where(starts, -np.inf, 0.0)  # added to log-probs: continuations only

    # -- step 2: the most likely candidate, unless the search is over ---------------------------

    def next_candidate(self) -> tuple[_Group, int, float] | None:
        """Pop the most likely candidate prefix worth extending: ``(group, token, logprob)``;
        None once no candidate can change the top ``k`` or pass the bounds."""
        while self.heap:
            _, _, group = heapq.heappop(self.heap)
            token, logp = group.tokens[group.next], group.logps[group.next]
            group.next += 1
            path_logprob = group.logprob + logp
            prob = math.exp(path_logprob)
            if prob <= 0.0 or prob < self.floor or path_logprob <= self.kth_best():
                return None  # every other candidate is at most as likely
            if self.extended[group.depth] >= self.beam:
                continue  # this length's beam is full: the group's other candidates stay unexplored
            if group.next < len(group.tokens):
                heapq.heappush(self.heap, (-group.peek(), next(self.order), group))
            group.taken += prob
            return group, token, path_logprob
        return None

    # -- step 3: extend it (completes one word, adds its continuations as candidates) -----------

    def extend(self, group: _Group, token: int, path_logprob: float) -> None:
        """Evaluate the prefix ``group.path + token``: the word it spells ends with the mass of
        the word starts; its continuations become candidates of the next length."""
        path = (*group.path, token)
        if len(path) == 1 and token in self.eos:
            self._add_word(path, path_logprob)  # end of text: a word of its own, nothing follows
            return
        self.extended[group.depth] += 1
        logits = self.evaluator.logits(path, self.upcoming)
        self._tables(logits.shape[-1])
        n_children = self.beam if group.depth < self.depth_limit else 0
        if self.allowed is None:
            split = _split(logits, self.ends_weight, self.conts_weight, self.cont_ids, n_children)
        else:
            split = None  # a restriction needs the whole distribution
        if split is None:
            logp = self._restrict(path, log_softmax(logits), path_logprob)
            p = np.exp(logp)
            end_mass, cont_share = float(p @ self.ends_weight), float(p @ self.conts_weight)
            children, child_logps = _top(logp + self.hide_starts, n_children) if n_children else ([], [])
        else:
            end_mass, cont_share, children, child_logps = split
        if end_mass > 0.0:
            self._add_word(path, path_logprob + math.log(end_mass))
        cont_mass = math.exp(path_logprob) * cont_share
        self._add_group(_Group(group.depth + 1, path, path_logprob, children, child_logps, cont_mass))

    def upcoming(self, n: int) -> list[tuple[int, ...]]:
        """The next ``n`` prefixes the search would extend if no new word raised the ``k``-th
        best probability and no new candidate came first (what a batch evaluates ahead). Only
        as many as the words still missing from the top ``k``: each extension adds at most one."""
        n = min(n, self.k - len(self.words) - 1)
        out: list[tuple[int, ...]] = []
        if n <= 0:
            return out
        sim = [(negp, order, group.next, group) for negp, order, group in self.heap]  # still a heap
        counts = collections.Counter(self.extended)
        kth = self.kth_best()
        while sim and len(out) < n:
            _, order, i, group = heapq.heappop(sim)
            path_logprob = group.logprob + group.logps[i]
            prob = math.exp(path_logprob)
            if prob <= 0.0 or prob < self.floor or path_logprob <= kth:
                break
            if counts[group.depth] >= self.beam:
                continue
            if i + 1 < len(group.tokens):
                heapq.heappush(sim, (-math.exp(group.logprob + group.logps[i + 1]), order, i + 1, group))
            token = group.tokens[i]
            if not group.path and token in self.eos:
                continue
            counts[group.depth] += 1
            out.append((*group.path, token))
        return out

    # -- step 4: the result ---------------------------------------------------------------------

    def result(self, prompt: str, max_tokens: int) -> WordSearch:
        """Every word examined, most likely first, with the mass accounting."""
        unexplored = math.fsum(g.total - g.taken for g in self.groups)
        examined = sorted(self.words.values(), key=lambda w: (-w.logprob, w.text, w.paths[0][0]))
        return WordSearch(
            prompt=prompt,
            words=tuple(
                ExaminedWord(
                    text=w.text,
                    prob=math.exp(w.logprob),
                    logprob=w.logprob,
                    paths=tuple((p, math.exp(lp)) for p, lp in sorted(w.paths, key=lambda x: (-x[1], x[0]))),
                )
                for w in examined
            ),
            unexplored_mass=max(0.0, unexplored),
            model_calls=self.evaluator.calls,
            beam_width=self.beam,
            min_prob=self.floor,
            max_tokens=max_tokens,
            settings=self.generator.settings,
            excluded_mass=self.excluded,
            model_batches=self.evaluator.batches,
        )

    # -- helpers --------------------------------------------------------------------------------

    def kth_best(self) -> float:
        """Log-probability of the ``k``-th best word found so far (-inf while fewer)."""
        if len(self.words) < self.k:
            return -math.inf
        return heapq.nlargest(self.k, (w.logprob for w in self.words.values()))[-1]

    def _restrict(
        self, path: tuple[int, ...], logp: npt.NDArray[np.float64], path_logprob: float
    ) -> npt.NDArray[np.float64]:
        """``logp`` with the tokens ``allowed`` rules out after ``path`` set to -inf (their mass
        counted as excluded)."""
        if self.allowed is None:
            return logp
        mask = self.allowed(path)
        if mask is None:
            return logp
        mask = np.asarray(mask, dtype=np.bool_)
        if mask.shape != logp.shape:
            raise InvalidInput(f"allowed({path}) gave a mask of shape {mask.shape}, expected {logp.shape}")
        self.excluded += math.exp(path_logprob) * float(np.exp(logp[~mask]).sum())
        return np.where(mask, logp, -np.inf)

    def _add_group(self, group: _Group) -> None:
        self.groups.append(group)
        if group.tokens:
            heapq.heappush(self.heap, (-group.peek(), next(self.order), group))

    def _add_word(self, path: tuple[int, ...], logprob: float) -> None:
        text = text_after(self.generator.detokenize, self.context, path)
        # Distinct byte sequences with an incomplete character all read U+FFFD: never merge those.
        key: str | tuple[str, tuple[int, ...]] = (text, path) if _REPLACEMENT in text else text
        word = self.words.get(key)
        if word is None:
            self.words[key] = _Word(text, logprob, [(path, logprob)])
        else:
            word.logprob = float(np.logaddexp(word.logprob, logprob))
            word.paths.append((path, logprob))


class _TopNEvaluator:
    """The top-N lists after ``prompt + path`` of a backend without full logits."""

    def __init__(self, generator: Generator, prompt_ids: Sequence[int], n: int) -> None:
        self._generator = generator
        self._prompt = list(prompt_ids)
        self._n = n
        self.calls = 0
        self.batches = 0

    def top(self, path: tuple[int, ...]) -> tuple[list[int], list[float]]:
        self.calls += 1
        self.batches += 1
        listed = top_logprobs(self._generator, self._prompt + list(path), self._n)
        return list(listed.token_ids), list(listed.logprobs)

    def close(self) -> None:
        pass


class _TopNSearch(_Search):
    """The search over a backend that lists only its top N next tokens (``capabilities.logits``
    False). Only listed tokens are classified and extended; after every prefix the mass of the
    unlisted tokens, word starts or not, stays unexplored, so the accounting identity holds and
    each word's probability is a lower bound (its end factor counts the listed word starts)."""

    def __init__(
        self, generator: Generator, prompt_ids: list[int], k: int, beam: int, floor: float, depth: int
    ) -> None:
        super().__init__(generator, prompt_ids, k, beam, floor, depth, None)
        self.evaluator.close()  # the dense evaluator is not used
        limit = generator.capabilities.max_logprobs
        n = max(beam, 64) if limit is None else min(limit, max(beam, 64))
        self.top_n = _TopNEvaluator(generator, prompt_ids, n)
        self.evaluator = self.top_n  # type: ignore[assignment]

    def start(self) -> None:
        tokens, logps = self.top_n.top(())
        self._add_group(_Group(1, (), 0.0, tokens[: self.beam], logps[: self.beam], 1.0))

    def extend(self, group: _Group, token: int, path_logprob: float) -> None:
        path = (*group.path, token)
        if group.depth == 1 and token in self.eos:
            self._add_word(path, path_logprob)
            return
        self.extended[group.depth] += 1
        try:
            tokens, logps = self.top_n.top(path)
        except UnsupportedOption:
            # The backend cannot evaluate this path (a text-only server whose tokenizer reads the
            # path's text otherwise): the whole prefix stays unexplored.
            self._add_group(_Group(group.depth + 1, path, path_logprob, [], [], math.exp(path_logprob)))
            return
        end_mass = cont_mass = 0.0
        children: list[int] = []
        child_logps: list[float] = []
        for t, lp in zip(tokens, logps, strict=True):
            if self._is_start(t):
                end_mass += math.exp(lp)
            else:
                cont_mass += math.exp(lp)
                if group.depth < self.depth_limit and len(children) < self.beam:
                    children.append(t)
                    child_logps.append(lp)
        if end_mass > 0.0:
            self._add_word(path, path_logprob + math.log(end_mass))
        unlisted = max(0.0, 1.0 - end_mass - cont_mass)
        total = math.exp(path_logprob) * (cont_mass + unlisted)
        self._add_group(_Group(group.depth + 1, path, path_logprob, children, child_logps, total))

    def upcoming(self, n: int) -> list[tuple[int, ...]]:
        return []

    def _is_start(self, token: int) -> bool:
        return token_starts_word(self.generator, token)


def token_starts_word(generator: Generator, token: int) -> bool:
    """Whether the token ``token`` starts a new word (as :func:`word_start_mask` says), for one
    token at a time: what a backend without full logits needs, cached per generator."""
    starts: dict[Any, Any] = _STARTS.get(generator, dict)
    known = starts.get(token)
    if known is None:
        piece = starts.get("piece")
        if piece is None:
            piece = starts["piece"] = _piece_reader(generator)
        try:
            known = starts_new_word(piece(token)) or token in _eos_ids(generator)
        except Exception:  # an id the tokenizer does not know: a word of its own
            known = True
        starts[token] = known
    return bool(known)


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
    beam, floor, depth_limit = _check_bounds(k, beam_width, min_prob, max_tokens)
    generator.capabilities.require("predict_next", generator.backend)
    prompt_ids = _encode(generator, prompt)
    check_length(len(prompt_ids), 1, generator.context_length)
    room = generator.context_length - len(prompt_ids)  # most tokens a word can have here
    search: _Search
    if generator.capabilities.logits:
        search = _Search(generator, prompt_ids, k, beam, floor, min(depth_limit, room), allowed)
    elif allowed is not None:
        raise UnsupportedOption(
            f"the {generator.backend!r} backend lists only its top log-probabilities; a restricted word "
            "search (allowed=...) needs full logits",
            option="allowed",
            backend=generator.backend,
        )
    else:
        search = _TopNSearch(generator, prompt_ids, k, beam, floor, min(depth_limit, room))
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
    beam, floor, depth_limit = _check_bounds(k, beam_width, min_prob, max_tokens)
    generator.capabilities.require("predict_next", generator.backend)
    prompt_ids = list(prompt_ids)
    check_length(len(prompt_ids), 1, generator.context_length)
    depth_limit = min(depth_limit, generator.context_length - len(prompt_ids))
    paths = None if starts is None else [(tuple(int(t) for t in path), float(lp)) for path, lp in starts]
    if paths is not None and any(not path or len(path) > depth_limit for path, _ in paths):
        raise InvalidInput(f"every start path must hold 1 to {depth_limit} tokens (max_tokens, and the context)")
    search = _Search(generator, prompt_ids, k, beam, floor, depth_limit, None, branches)
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
    beam, floor, depth = _check_bounds(k, beam_width, min_prob, max_tokens, capped=True)
    if not isinstance(prompt, str):
        raise InvalidInput(f"the prompt must be a string, got {type(prompt).__name__}")
    key = (prompt, k, beam, floor, depth)
    cache: _LRU = _RESULTS.get(generator, _LRU)
    hit = cache.get(key)
    if hit is not None:
        return dataclasses.replace(hit, settings=generator.settings)
    search = search_words(generator, prompt, k, beam_width=beam, min_prob=floor, max_tokens=depth)
    result = search.prediction(k)
    cache.put(key, result)
    return result


def clear_cache() -> None:
    """Forget every cached word prediction (and every generator's word-start table)."""
    _RESULTS.clear()
    _MASKS.clear()
    _STARTS.clear()


class _LRU:
    def __init__(self, size: int = CACHE_SIZE) -> None:
        self._size = size
        self._data: collections.OrderedDict[Any, Prediction] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Prediction | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: Any, value: Prediction) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self._size:
                self._data.popitem(last=False)


# ---- validation ----------------------------------------------------------------------------------


def _check_bounds(
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
