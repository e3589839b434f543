"""The best-first search over the tree of token continuations (see :mod:`nextword._words.search`
for what it computes and how exact it is)."""

from __future__ import annotations

import collections
import dataclasses
import heapq
import itertools
import math
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from nextword._contract.protocol import Generator
from nextword._decoding.branches import Branches, SessionBranches, SharedBranches
from nextword._decoding.detok import text_after
from nextword._decoding.logprobs import top_logprobs
from nextword._decoding.processors import log_softmax, top_indices
from nextword._runtime.scheduler import check_cancelled
from nextword._words.results import ExaminedWord, WordSearch
from nextword._words.rule import REPLACEMENT, eos_ids, token_starts_word, word_start_mask
from nextword.errors import InvalidInput, UnsupportedOption

# ---- the search ----------------------------------------------------------------------------------

T = TypeVar("T")

#: Most continuations the search asks the backend for in one batched evaluation.
MAX_BATCH = 32

#: For a path, which tokens may follow it (a mask over the vocabulary), or None for all of them.
Allowed = Callable[[tuple[int, ...]], "npt.NDArray[np.bool_] | None"]


class Evaluator:
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
        self._memo = branches if isinstance(branches, SharedBranches) else None
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
        """Next-token log-probabilities after ``prompt + path`` (float64; kept by a
        :class:`SharedBranches`, so treat it as read-only)."""
        return self.derived(("logprobs", path), lambda: log_softmax(self.logits(path, upcoming)))

    def derived(self, key: tuple[object, ...], compute: Callable[[], T]) -> T:
        """``compute()``, a value that depends only on the rows of the paths named in ``key``:
        kept by the branches when they are a :class:`SharedBranches` (a later search from the
        same state then gets the same value without the arithmetic), else computed each time."""
        if self._memo is None:
            return compute()
        return self._memo.remember(key, compute)

    def close(self) -> None:
        self._rows.clear()
        if self._owned:
            self._branches.close()


def is_batched(branches: Branches) -> bool:
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


def _first(logp: npt.NDArray[np.float64], beam: int) -> tuple[list[int], list[float], float]:
    """The first tokens' candidates: the ``beam`` most likely (:func:`_top`) and the total mass."""
    tokens, logps = _top(logp, beam)
    return tokens, logps, float(np.sum(np.exp(logp)))


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
    # einsum rather than a BLAS dot: a threaded BLAS spins on a busy machine (10x slower here).
    end_mass = float(np.einsum("i,i->", x, ends_weight)) / total
    cont_share = float(np.einsum("i,i->", x, conts_weight)) / total
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


class Search:
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
        self.eos = eos_ids(generator)
        self.words: dict[str | tuple[str, tuple[int, ...]], _Word] = {}
        self.groups: list[_Group] = []
        self.heap: list[tuple[float, int, _Group]] = []
        self.extended = collections.Counter[int]()  # prefixes extended, per length
        self.order = itertools.count()  # breaks ties in the heap: first pushed, first popped
        self.excluded = 0.0  # mass of the tokens ``allowed`` ruled out
        owned = branches is None
        if branches is None:
            branches = generator.open_branches(prompt_ids)
        self.evaluator = Evaluator(branches, batched=is_batched(branches), owned=owned)

    # -- step 1: the prompt's distribution ----------------------------------------------------

    def start(self) -> None:
        """Evaluate the prompt; its most likely tokens become the first candidates."""
        root = self.evaluator.logprobs(())
        self._tables(root.shape[-1])
        if self.allowed is None:
            tokens, logps, total = self.evaluator.derived(("first", self.beam), lambda: _first(root, self.beam))
        else:
            tokens, logps, total = _first(self._restrict((), root, 0.0), self.beam)
        self._add_group(_Group(1, (), 0.0, list(tokens), list(logps), total))

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
        n_children = self.beam if group.depth < self.depth_limit else 0

        def split_row() -> tuple[float, float, list[int], list[float]] | None:
            logits = self.evaluator.logits(path, self.upcoming)
            self._tables(logits.shape[-1])
            return _split(logits, self.ends_weight, self.conts_weight, self.cont_ids, n_children)

        # A restriction needs the whole distribution; so does a row with a logit not finite upwards.
        split = None if self.allowed is not None else self.evaluator.derived(("split", path, n_children), split_row)
        if split is None:
            logits = self.evaluator.logits(path, self.upcoming)
            self._tables(logits.shape[-1])
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
        key: str | tuple[str, tuple[int, ...]] = (text, path) if REPLACEMENT in text else text
        word = self.words.get(key)
        if word is None:
            self.words[key] = _Word(text, logprob, [(path, logprob)])
        else:
            word.logprob = float(np.logaddexp(word.logprob, logprob))
            word.paths.append((path, logprob))


class TopNEvaluator:
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


class TopNSearch(Search):
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
        self.top_n = TopNEvaluator(generator, prompt_ids, n)
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
