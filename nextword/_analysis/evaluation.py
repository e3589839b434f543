"""How good a model's predictions are for typing: ``nextword eval`` and :func:`evaluate`.

On a text, :func:`evaluate` measures

* per-token **perplexity** (and each token's surprisal, in bits);
* next-word **top-1 / top-3 accuracy**: at every word boundary, whether the word that follows is
  the most likely (one of the 3 most likely) next words of the word search
  (:func:`nextword._words.search.search_words`), given the text before it;
* the **keystroke savings** of a simulated keyboard that shows ``k`` suggestions: for each word,
  the user types its characters one by one; before each character (at the word's start too) the
  keyboard shows the ``k`` most likely words given the text so far and the characters typed
  (:mod:`nextword._words.complete`); when the word is among them, one keystroke accepts it. A word
  costs ``min(j + 1, len(word))`` keystrokes when it first appears after ``j`` typed characters,
  ``len(word)`` when it never does. Savings = 1 - keystrokes / characters. A word is written
  as the model writes it, its leading space included (``" cats"`` is 5 characters);
* with a second generator (``compare``), per token: the **KL divergence** ``KL(P_first || P_second)``
  of the two next-token distributions (nats) and whether their most likely tokens agree.

The text is read in windows of at most ``window`` tokens (and the context length); each window's
first token has no context and is not scored, and predictions at a position see only the text
of its window before it. Token figures take one forward pass per window (``sequence_logits``
when the generator has it, else one session step per token); word figures run one word search
per word and one completion search per typed character until the word is suggested. Those
searches start from the state of the text read so far (``_Reader``: on a generator
whose sessions fork, one session per window reads each token once, and each word's searches
fork it) and share their next-token distributions within a word
(:class:`~nextword._decoding.branches.SharedBranches`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from nextword._analysis.plotting import escape_mathtext, new_figure, save_figure
from nextword._contract.checks import encode_text
from nextword._contract.protocol import ForkableSession, Generator
from nextword._decoding.branches import SessionBranches, SharedBranches
from nextword._decoding.detok import text_after
from nextword._types.results import Settings
from nextword._words.complete import complete_after
from nextword._words.search import search_words_from_ids, word_start_mask
from nextword.errors import InvalidInput

__all__ = [
    "Comparison",
    "Evaluation",
    "WordResult",
    "evaluate",
    "save_surprisal_plot",
    "to_json",
]

_LN2 = math.log(2.0)

#: Tokens per window unless ``window`` says otherwise (and at most the context length).
DEFAULT_WINDOW = 256

Reuse = Literal["text", "word", "none"]
"""What the word searches of :func:`evaluate` start from (its ``reuse`` argument)."""

Progress = Callable[[int, int], None]
"""``progress(done, total)``: called as the evaluation advances (units: scored tokens, then words)."""


@dataclasses.dataclass(frozen=True)
class WordResult:
    """One word of the text as the keyboard saw it: its rank among the next-word predictions at
    its start (None if not among the top ``k`` shown), and the keystrokes it cost."""

    text: str
    start: int
    rank: int | None
    keystrokes: int


@dataclasses.dataclass(frozen=True)
class Comparison:
    """The second generator's figures on the same tokens, and how its distributions differ."""

    settings: Settings
    perplexity: float
    mean_kl: float
    same_top1: float
    surprisal_bits: tuple[float, ...]
    kl: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """What :func:`evaluate` measured (see the module docstring for each figure)."""

    n_tokens: int
    """Tokens scored (each window's first token excepted)."""
    n_words: int
    """Words predicted (those with some text of their window before them)."""
    n_chars: int
    """Characters of those words."""
    perplexity: float
    surprisal_bits: tuple[float, ...]
    word_top1: float
    word_top3: float
    k: int
    keystrokes: int
    words: tuple[WordResult, ...]
    window: int
    seconds: float
    settings: Settings
    comparison: Comparison | None = None

    @property
    def keystroke_savings(self) -> float:
        """1 - keystrokes / characters (nan when no word was predicted)."""
        return 1.0 - self.keystrokes / self.n_chars if self.n_chars else math.nan

    @property
    def seconds_per_1000_words(self) -> float:
        """Wall time per 1,000 words predicted (nan when none were)."""
        return 1000.0 * self.seconds / self.n_words if self.n_words else math.nan


def evaluate(
    generator: Generator,
    text: str,
    *,
    k: int = 3,
    compare: Generator | None = None,
    max_tokens: int | None = None,
    window: int = DEFAULT_WINDOW,
    words: bool = True,
    beam_width: int | None = None,
    progress: Progress | None = None,
    reuse: Reuse = "word",
) -> Evaluation:
    """Evaluate ``generator``'s predictions on ``text`` (see the module docstring).

    ``k``: suggestions the simulated keyboard shows (top-1 and top-3 accuracy are reported
    whatever ``k`` is; the word search looks for ``max(k, 3)`` words). ``compare``: a second
    generator with the same tokenizer, scored on the same tokens (its word figures are not
    computed here; call :func:`evaluate` on it for those). ``max_tokens``: read at most this many
    tokens of the text. ``words=False`` skips the word figures (top-k and keystrokes).
    ``beam_width`` bounds the word searches (see :func:`nextword._words.search.search_words`).
    ``reuse`` chooses what the word searches start from: ``"word"`` (default) one state per
    word, its context read in one pass and shared by the word's searches (the next-word search
    and the completion search of each typed character), each path evaluated once per word;
    ``"text"`` the state of the text read so far (one forking session per window reads each token
    once; where sessions do not fork, as ``"word"``); ``"none"`` every search reads its context
    anew. All three run the same searches; ``"word"`` and ``"none"`` give the same numbers, and
    ``"text"`` differs from them by the engine's float rounding where the engine's numbers depend
    on how many tokens one pass holds (llama.cpp, transformers), which can swap two near-tied suggestions.

    Raises :class:`~nextword.errors.InvalidInput` for an empty text, bad arguments, or a
    ``compare`` generator that tokenizes the text differently.
    """
    _check_arguments(k, window, max_tokens, reuse)
    started = time.perf_counter()
    ids = _read_tokens(generator, compare, text, max_tokens)
    width = min(window, generator.context_length, compare.context_length if compare else window)
    if width < 2:
        raise InvalidInput("the model's context window is too small to score anything")
    windows = [(s, min(s + width, len(ids))) for s in range(0, len(ids), width)]
    windows = [(s, e) for s, e in windows if e - s >= 2]
    plan = _word_plan(generator, ids, windows) if words else []
    tick = _Ticker(progress, sum(e - s - 1 for s, e in windows) + len(plan))
    tokens = _token_figures(generator, compare, ids, windows, tick)
    results = _word_figures(generator, ids, plan, k, beam_width, reuse, tick)
    n_words = len(results)
    top1 = sum(r.rank == 1 for r in results)
    top3 = sum(r.rank is not None and r.rank <= 3 for r in results)
    return Evaluation(
        n_tokens=len(tokens.surprisal),
        n_words=n_words,
        n_chars=sum(len(r.text) for r in results),
        perplexity=_perplexity(tokens.surprisal),
        surprisal_bits=tuple(tokens.surprisal),
        word_top1=top1 / n_words if n_words else math.nan,
        word_top3=top3 / n_words if n_words else math.nan,
        k=k,
        keystrokes=sum(r.keystrokes for r in results),
        words=tuple(results),
        window=width,
        seconds=time.perf_counter() - started,
        settings=generator.settings,
        comparison=None if compare is None else tokens.comparison(compare.settings),
    )


def _check_arguments(k: int, window: int, max_tokens: int | None, reuse: str) -> None:
    _check_positive("k", k)
    _check_positive("window", window)
    if reuse not in ("text", "word", "none"):
        raise InvalidInput(f"reuse must be 'text', 'word' or 'none', got {reuse!r}")
    if max_tokens is not None:
        _check_positive("max_tokens", max_tokens)
    if window < 2:
        raise InvalidInput("window must be at least 2 tokens (the first token of a window is not scored)")


def _read_tokens(generator: Generator, compare: Generator | None, text: str, max_tokens: int | None) -> list[int]:
    """The text's token ids (at most ``max_tokens``), checked to be the same under ``compare``."""
    ids = encode_text(generator, text, "text")
    if max_tokens is not None:
        ids = ids[:max_tokens]
    if compare is not None and encode_text(compare, text, "text")[: len(ids)] != ids:
        raise InvalidInput(
            "the two generators tokenize the text differently; KL and top-1 agreement compare "
            "token by token, so they need the same tokenizer"
        )
    return ids


class _Ticker:
    """Counts finished steps (a scored token, a typed word) and reports them to ``progress``."""

    def __init__(self, progress: Progress | None, total: int) -> None:
        self.progress = progress
        self.total = total
        self.done = 0

    def __call__(self, n: int = 1) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(self.done, self.total)


@dataclasses.dataclass
class _TokenFigures:
    surprisal: list[float] = dataclasses.field(default_factory=list)
    other_surprisal: list[float] = dataclasses.field(default_factory=list)
    kls: list[float] = dataclasses.field(default_factory=list)
    same: list[bool] = dataclasses.field(default_factory=list)

    def comparison(self, settings: Settings) -> Comparison:
        kls, same = self.kls, self.same
        return Comparison(
            settings=settings,
            perplexity=_perplexity(self.other_surprisal),
            mean_kl=math.fsum(kls) / len(kls) if kls else math.nan,
            same_top1=sum(same) / len(same) if same else math.nan,
            surprisal_bits=tuple(self.other_surprisal),
            kl=tuple(kls),
        )


def _token_figures(
    generator: Generator,
    compare: Generator | None,
    ids: Sequence[int],
    windows: Sequence[tuple[int, int]],
    tick: _Ticker,
) -> _TokenFigures:
    """Each token's surprisal (one ``sequence_logits`` pass per window), and against ``compare``
    the KL divergence and top-1 agreement at every position."""
    out = _TokenFigures()
    for s, e in windows:
        chunk = list(ids[s:e])
        logp = _log_softmax_rows(generator.sequence_logits(chunk)[:-1])
        targets = np.asarray(chunk[1:])
        rows = np.arange(len(targets))
        out.surprisal.extend((-logp[rows, targets] / _LN2).tolist())
        if compare is not None:
            logq = _log_softmax_rows(compare.sequence_logits(chunk)[:-1])
            vocab = min(logp.shape[1], logq.shape[1])
            p = np.exp(logp[:, :vocab])
            out.kls.extend(np.maximum(0.0, np.sum(p * (logp[:, :vocab] - logq[:, :vocab]), axis=1)).tolist())
            out.same.extend((np.argmax(logp, axis=1) == np.argmax(logq, axis=1)).tolist())
            out.other_surprisal.extend((-logq[rows, targets] / _LN2).tolist())
        tick(len(targets))
    return out


def _word_figures(
    generator: Generator,
    ids: Sequence[int],
    plan: Sequence[tuple[int, int, str]],
    k: int,
    beam_width: int | None,
    reuse: str,
    tick: _Ticker,
) -> list[WordResult]:
    """Each planned word typed on the simulated keyboard, its searches starting from the state
    that ``reuse`` chooses."""
    results: list[WordResult] = []
    reader: _Reader | None = None
    for s, a, target in plan:
        branches: SharedBranches | None = None
        if reuse != "none":
            if reader is None or reader.window_start != s:
                reader = _Reader(generator, ids, s, fork=reuse == "text")
            branches = reader.branches_at(a)
        try:
            results.append(_type_word(generator, ids[s:a], target, a, k, beam_width, branches))
        finally:
            if branches is not None:
                branches.close()
        tick()
    return results


# ---- token figures ------------------------------------------------------------------------------


def _log_softmax_rows(logits: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    x = np.asarray(logits, dtype=np.float64)
    top = x.max(axis=1, keepdims=True)
    return x - (top + np.log(np.exp(x - top).sum(axis=1, keepdims=True)))


def _perplexity(surprisal_bits: Sequence[float]) -> float:
    if not surprisal_bits:
        return math.nan
    mean_nats = math.fsum(surprisal_bits) * _LN2 / len(surprisal_bits)
    return math.exp(mean_nats) if mean_nats < 709 else math.inf


# ---- word figures -------------------------------------------------------------------------------


def _word_plan(
    generator: Generator, ids: Sequence[int], windows: Sequence[tuple[int, int]]
) -> list[tuple[int, int, str]]:
    """``(window start, first token index, word text)`` for every word that has context in its
    window and ends inside it (words by :func:`nextword._words.search.word_start_mask`), in text order."""
    if not windows:
        return []
    vocab = generator.vocab_size
    if vocab is None:
        raise InvalidInput(
            f"the {generator.backend!r} backend does not tell its vocabulary size; evaluate needs full logits"
        )
    mask = word_start_mask(generator, vocab)
    plan = []
    for s, e in windows:
        starts = [i for i in range(s + 1, e) if ids[i] >= vocab or mask[ids[i]]]
        for a, b in zip(starts, [*starts[1:], e], strict=True):
            if b == e and e < len(ids) and not (ids[e] >= vocab or mask[ids[e]]):
                continue  # the word goes on past the window: its end is unknown here
            plan.append((s, a, text_after(generator.detokenize, ids[a - 1 : a], ids[a:b])))
    return plan


class _Reader:
    """The state of one window's text read so far, from which each word's searches start.

    On a generator whose sessions fork (a :class:`~nextword._contract.protocol.ForkableSession`),
    one session reads the window token by token
    as the evaluation advances; the searches of a word (the next-word search and the completion
    search of each typed character) evaluate their paths from a fork of it, so a KV-cache engine
    reads each token of the text once, and each path once per word
    (:class:`~nextword._decoding.branches.SharedBranches`). Otherwise each word's searches share
    one ``open_branches`` state of the text before the word (the
    plain path: the context is read once per word).
    """

    def __init__(self, generator: Generator, ids: Sequence[int], window_start: int, *, fork: bool = True) -> None:
        self.generator = generator
        self.ids = ids
        self.window_start = window_start
        self.session: ForkableSession | None = None
        if fork:
            session = generator.open_session(list(ids[window_start : window_start + 1]))
            if isinstance(session, ForkableSession):
                self.session = session
        self.read = window_start + 1  # tokens of the text the session has been fed

    def branches_at(self, position: int) -> SharedBranches:
        """The state after the window's text up to, not including, ``ids[position]`` (which
        must not be before the text already read); the caller closes it."""
        context = list(self.ids[self.window_start : position])
        if self.session is None:
            return SharedBranches(self.generator.open_branches(context))
        for token in self.ids[self.read : position]:
            self.session.feed(token)
        self.read = position
        root = self.session.fork()
        if not isinstance(root, ForkableSession):
            raise TypeError(f"{type(root).__name__}.fork() returned a session that cannot fork")
        return SharedBranches(SessionBranches(self.generator, context, root=root))


def _type_word(
    generator: Generator,
    context: Sequence[int],
    target: str,
    start: int,
    k: int,
    beam_width: int | None,
    branches: SharedBranches | None = None,
) -> WordResult:
    """Simulate typing ``target`` after ``context`` with ``k`` suggestions shown (every search
    evaluating from ``branches``, the state after ``context``, when given)."""
    shown = max(k, 3)
    context = list(context)
    search = search_words_from_ids(generator, context, shown, beam_width=beam_width, branches=branches)
    ranked = [w.text for w in search.words[:shown]]
    rank = ranked.index(target) + 1 if target in ranked else None
    if rank is not None and rank <= k:
        return WordResult(target, start, rank, 1)
    for typed in range(1, len(target)):
        if typed + 1 >= len(target):
            break  # accepting would cost as much as typing the rest
        try:
            done = complete_after(generator, context, target[:typed], k, beam_width=beam_width, branches=branches)
        except InvalidInput:  # nothing spelling the typed characters within the bounds: no suggestion
            continue
        if target in [w.text for w in done.search.words[:k]]:
            return WordResult(target, start, rank, typed + 1)
    return WordResult(target, start, rank, len(target))


# ---- output -------------------------------------------------------------------------------------


def to_json(result: Evaluation, *, per_token: bool = False) -> dict[str, Any]:
    """A JSON-friendly dict of the figures (``per_token`` adds the per-token surprisals and KLs)."""

    def num(x: float) -> float | None:
        return x if math.isfinite(x) else None

    out: dict[str, Any] = {
        "tokens": result.n_tokens,
        "words": result.n_words,
        "characters": result.n_chars,
        "perplexity": num(result.perplexity),
        "word_top1": num(result.word_top1),
        "word_top3": num(result.word_top3),
        "k": result.k,
        "keystrokes": result.keystrokes,
        "keystroke_savings": num(result.keystroke_savings),
        "window": result.window,
        "seconds": result.seconds,
        "seconds_per_1000_words": num(result.seconds_per_1000_words),
        "settings": result.settings.to_dict(),
    }
    if per_token:
        out["surprisal_bits"] = list(result.surprisal_bits)
    if result.comparison is not None:
        c = result.comparison
        out["compare"] = {
            "settings": c.settings.to_dict(),
            "perplexity": num(c.perplexity),
            "mean_kl": num(c.mean_kl),
            "same_top1": num(c.same_top1),
        }
        if per_token:
            out["compare"]["surprisal_bits"] = list(c.surprisal_bits)
            out["compare"]["kl"] = list(c.kl)
    return out


def save_surprisal_plot(result: Evaluation, path: str | Path, *, labels: Sequence[str] = ()) -> Path:
    """Save a line chart of the per-token surprisal (bits) of the evaluated generator and, with a
    comparison, of the second one, to a ``.png`` or ``.svg`` file (matplotlib's Agg canvas)."""
    names = list(labels) or [f"{result.settings.backend}:{Path(result.settings.model).name}"]
    fig, fmt = new_figure(path, figsize=(10.0, 3.6))
    ax = fig.add_subplot()
    x = np.arange(1, result.n_tokens + 1)
    ax.plot(x, result.surprisal_bits, lw=0.8, label=escape_mathtext(names[0]))
    if result.comparison is not None:
        c = result.comparison
        second = names[1] if len(names) > 1 else f"{c.settings.backend}:{Path(c.settings.model).name}"
        ax.plot(x, c.surprisal_bits, lw=0.8, alpha=0.8, label=escape_mathtext(second))
    ax.set_xlabel("token position (scored tokens)")
    ax.set_ylabel("surprisal (bits)")
    ax.set_title(f"Per-token surprisal, perplexity {result.perplexity:.2f}", loc="left", fontsize=10)
    ax.legend(loc="upper right", fontsize=8)
    return save_figure(fig, path, fmt)


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{name} must be a positive integer, got {value!r}")
