"""A typing session: word suggestions after every keystroke, from the state of the text so far.

A keyboard asks for suggestions after each edit of a text that mostly grows one character at a
time. :class:`TypingSession` holds that text and answers :meth:`~TypingSession.suggestions` with
exactly what ``predict_next(text, k)`` returns on the same settings (the same words, token paths
and probabilities; on hf up to the float rounding of rows evaluated in other batches), at a
fraction of its cost:

* **The engine state of the committed text.** Every search runs on the word-search tree of its
  context (:mod:`nextword._words.trees`): the generator's ``open_branches`` state after the
  tokens before the word being typed, with every next-token row evaluated from it and the
  values the searches derived from the rows. While a word is typed its context stays the same,
  so the engine evaluates the context once per word, not once per keystroke.
* **The word-search tree of the current word.** A keystroke that continues a shown candidate
  replays the completion search for the longer typed text on that tree. The replay is the fresh
  search itself (the same code on the same rows), so it is exact by construction; it filters
  the tree: the candidates that no longer spell the typed text drop out, and the others'
  probabilities are renormalised by the mass of the paths that do. Where the longer text needs
  a path the tree does not hold (the character leaves every prefix the previous search
  extended, or the search must go deeper than it went), that path is evaluated: the session
  searches again, only for what is missing. :attr:`TypingSession.stats` counts both.
* **Prefetch** (``prefetch=True``). After answering, the session computes on idle time the
  suggestions for the texts most likely to come next: the next character of each shown word
  typed (so that this keystroke is then answered from the tree alone), and the top word accepted
  (which evaluates the state of the text the next word follows). The next edit, or a request
  for another text, cancels it at its next engine step
  (:class:`~nextword._runtime.scheduler.CancelScope`).

Edits never wait for the engine: :meth:`~TypingSession.type`, :meth:`~TypingSession.backspace`,
:meth:`~TypingSession.accept` and :meth:`~TypingSession.replace` change the text and cancel work
running for another text (a prefetch, or a :meth:`~TypingSession.suggestions` call in another
thread or task, which then raises :class:`~nextword.errors.Cancelled`).
:meth:`~TypingSession.asuggestions` is the asyncio twin.

On a backend that lists only its top log-probabilities (no full logits) there is no tree to keep:
the session answers with ``predict_next`` each time (correct, not faster).
"""

from __future__ import annotations

import atexit
import collections
import dataclasses
import threading
import weakref
from typing import Any

from nextword._contract.protocol import Generator
from nextword._runtime.async_bridge import run_in_worker
from nextword._runtime.scheduler import CancelScope
from nextword._types.results import Candidate, Prediction, Settings
from nextword._words.complete import CompleteMode, predict_or_complete
from nextword._words.search import DEFAULT_MAX_TOKENS, check_bounds
from nextword._words.trees import Trees
from nextword.errors import Cancelled, InvalidInput, InvalidState, NextwordError

__all__ = ["TypingSession", "TypingStats"]

_OPEN: weakref.WeakSet[TypingSession] = weakref.WeakSet()


@atexit.register
def _close_open_sessions() -> None:
    """Stop every prefetch before the interpreter exits (an engine thread killed mid-call aborts)."""
    for session in list(_OPEN):
        session.close()


#: Suggestions a session keeps per text (a backspace or a prefetched text is answered from them).
RESULTS_KEPT = 64


@dataclasses.dataclass
class TypingStats:
    """What a session did: ``searches`` answered by running the search (on the trees),
    ``remembered`` answered from the suggestions already computed for that text (a backspace, a
    prefetched text), ``engine_rows`` next-token rows the engine evaluated for the trees,
    ``prefetches`` started and ``prefetches_cancelled`` of them, ``cancelled`` requests."""

    searches: int = 0
    remembered: int = 0
    engine_rows: int = 0
    prefetches: int = 0
    prefetches_cancelled: int = 0
    cancelled: int = 0


class TypingSession:
    """The text being typed and the state that answers its suggestions (see the module docs).

    ``k`` is the default number of suggestions; ``complete``, ``beam_width``, ``min_prob`` and
    ``max_tokens`` are those of ``predict_next`` (the same checks, the same meaning). ``text``
    is the text to start from. ``prefetch`` turns on the idle-time prefetch. ``budget_bytes``
    bounds what the trees keep (rows of the vocabulary size, 4 bytes a logit, and their
    derived values), ``contexts`` how many contexts' trees are kept. ``settings``: the settings
    attached to every prediction (the module API passes the resolved ones; by default the
    generator's).
    """

    def __init__(
        self,
        generator: Generator,
        *,
        k: int = 5,
        complete: CompleteMode = "auto",
        beam_width: int | None = None,
        min_prob: float = 0.0,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        text: str = "",
        prefetch: bool = False,
        budget_bytes: int = 256 << 20,
        contexts: int = 8,
        settings: Settings | None = None,
    ) -> None:
        check_bounds(k, beam_width, min_prob, max_tokens, capped=True)
        if complete not in ("auto", "word", "next"):
            raise InvalidInput(f"complete must be 'auto', 'word' or 'next', got {complete!r}")
        if not isinstance(prefetch, bool):
            raise InvalidInput(f"prefetch must be True or False, got {prefetch!r}")
        generator.capabilities.require("predict_next", generator.backend)
        self._generator = generator
        self._k = k
        self._options: dict[str, Any] = {
            "complete": complete,
            "beam_width": beam_width,
            "min_prob": min_prob,
            "max_tokens": max_tokens,
        }
        self._prefetch = prefetch
        self._settings = settings
        self._trees: Trees | None = None
        if generator.capabilities.logits:
            self._trees = Trees(generator, budget_bytes=budget_bytes, contexts=contexts)
        self._text = _checked_text(text, "text")
        self._state = threading.Lock()  # guards the text, the running work and the results
        self._work = threading.Lock()  # one search at a time on the trees
        self._running: dict[CancelScope, str] = {}  # work in progress -> the text it is for
        self._results: collections.OrderedDict[tuple[str, int], Prediction] = collections.OrderedDict()
        self._last: Prediction | None = None
        self._closed = False
        self._threads: list[threading.Thread] = []
        self.stats = TypingStats()
        _OPEN.add(self)

    # ---- the text -----------------------------------------------------------------------------

    @property
    def text(self) -> str:
        """The text typed so far."""
        return self._text

    @property
    def k(self) -> int:
        """The number of suggestions :meth:`suggestions` gives by default."""
        return self._k

    def type(self, chars: str) -> None:
        """Type ``chars`` (one character or several) at the end of the text."""
        self._set(self._text + _checked_text(chars, "the typed characters"))

    def backspace(self, n: int = 1) -> None:
        """Delete the last ``n`` characters (fewer when the text is shorter)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise InvalidInput(f"backspace takes a number of characters (0 or more), got {n!r}")
        self._set(self._text[: max(0, len(self._text) - n)])

    def replace(self, text: str) -> None:
        """Replace the whole text (a paste, a cursor moved elsewhere, an edit in the middle)."""
        self._set(_checked_text(text, "text"))

    def accept(self, candidate: Candidate | int = 0) -> str:
        """Accept a suggestion of the last :meth:`suggestions` answer (a candidate of it, or its
        index): the rest of the word is typed (``remaining`` for a completion of the word being
        typed, the whole word for a next word). Returns the characters added."""
        last = self._last
        if last is None or last.prompt != self._text:
            raise InvalidState("accept() needs the suggestions of the current text: call suggestions() first")
        if isinstance(candidate, int) and not isinstance(candidate, bool):
            if not 0 <= candidate < len(last.candidates):
                raise InvalidInput(f"there are {len(last.candidates)} suggestions; index {candidate} is not one")
            candidate = last.candidates[candidate]
        if not isinstance(candidate, Candidate) or candidate not in last.candidates:
            raise InvalidInput("accept() takes one of the last suggestions (a Candidate of it, or its index)")
        added = _rest_of(last, candidate)
        self._set(self._text + added)
        return added

    # ---- suggestions --------------------------------------------------------------------------

    def suggestions(self, k: int | None = None) -> Prediction:
        """The ``k`` (default: the session's) most likely words for the current text: what
        ``predict_next(text, k)`` returns with the session's options. Raises
        :class:`~nextword.errors.Cancelled` when an edit (in another thread or task) changed the
        text while the engine was still working for this one."""
        k = self._k if k is None else k
        options = self._options
        check_bounds(k, options["beam_width"], options["min_prob"], options["max_tokens"], capped=True)
        with self._state:
            self._check_open()
            text = self._text
            self._cancel_except(text)
            scope = CancelScope.nested()
            self._running[scope] = text
        try:
            prediction = self._answer(text, k, scope)
        except Cancelled:
            self.stats.cancelled += 1
            raise
        finally:
            with self._state:
                self._running.pop(scope, None)
        with self._state:
            if self._text == text:
                self._last = prediction
                if self._prefetch and not self._closed:
                    self._start_prefetch(text, prediction)
        return prediction

    async def asuggestions(self, k: int | None = None) -> Prediction:
        """:meth:`suggestions` without blocking the event loop; cancelling the task stops the
        engine at its next step."""
        return await run_in_worker(self.suggestions, k)

    def close(self) -> None:
        """Cancel the work in progress and free the trees; later calls raise
        :class:`~nextword.errors.InvalidState`. Closing twice is harmless."""
        with self._state:
            self._closed = True
            self._cancel_except(None)
            threads, self._threads = self._threads, []
        for thread in threads:
            thread.join()  # a cancelled prefetch stops at its next engine step
        with self._work:
            if self._trees is not None:
                self._trees.clear()
            self._results.clear()

    def __enter__(self) -> TypingSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<TypingSession backend={self._generator.backend!r} text={self._text!r}>"

    # ---- internals ----------------------------------------------------------------------------

    def _set(self, text: str) -> None:
        with self._state:
            self._check_open()
            self._text = text
            self._cancel_except(text)

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidState("this typing session was closed; open another one")

    def _cancel_except(self, text: str | None) -> None:
        """Cancel the work running for a text other than ``text`` (called with the state lock)."""
        for scope, target in self._running.items():
            if target != text:
                scope.cancel()

    def _answer(self, text: str, k: int, scope: CancelScope) -> Prediction:
        """The suggestions for ``text``: remembered, or searched on the trees (inside ``scope``)."""
        with self._work:
            with self._state:
                hit = self._results.get((text, k))
                if hit is not None:
                    self._results.move_to_end((text, k))
                    self.stats.remembered += 1
                    return hit
            if scope.cancelled:
                raise Cancelled("the text changed before its suggestions were computed")
            with scope:
                prediction = predict_or_complete(self._generator, text, k, trees=self._trees, **self._options)
            if self._settings is not None:
                prediction = dataclasses.replace(prediction, settings=self._settings)
            with self._state:
                self.stats.searches += 1
                self.stats.engine_rows = self._trees.engine_rows if self._trees is not None else 0
                self._results[(text, k)] = prediction
                while len(self._results) > RESULTS_KEPT:
                    self._results.popitem(last=False)
        return prediction

    def _start_prefetch(self, text: str, prediction: Prediction) -> None:
        """Start computing, on a thread of its own, the suggestions for the texts most likely to
        come next (:func:`_likely_next`), one after another (called with the state lock)."""
        targets = [t for t in _likely_next(prediction) if (t, self._k) not in self._results]
        if not targets or any(t in self._running.values() for t in targets):
            return
        scope = CancelScope()
        self._running[scope] = targets[0]
        self.stats.prefetches += 1
        thread = threading.Thread(
            target=self._run_prefetch, args=(targets, scope), daemon=True, name="nextword-prefetch"
        )
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        thread.start()

    def _run_prefetch(self, targets: list[str], scope: CancelScope) -> None:
        try:
            for target in targets:
                with self._state:
                    if scope.cancelled or self._closed:
                        raise Cancelled("the text changed")
                    self._running[scope] = target
                self._answer(target, self._k, scope)
        except Cancelled:
            with self._state:
                self.stats.prefetches_cancelled += 1
        except NextwordError:
            pass  # a prefetch is only a guess: the same error reaches the caller who asks for that text
        finally:
            with self._state:
                self._running.pop(scope, None)


def _likely_next(prediction: Prediction) -> list[str]:
    """The texts a prefetch prepares after ``prediction``, most useful first: the text with the
    next character of each shown word typed (distinct characters; the next keystroke is most
    likely one of them, and its search then replays on the tree without the engine), then the
    text with the top word accepted (whose search evaluates the state of the text the next word
    follows)."""
    text = prediction.prompt
    out: list[str] = []
    for candidate in prediction.candidates:
        rest = _rest_of(prediction, candidate)
        if rest and text + rest[0] not in out:
            out.append(text + rest[0])
    if prediction.candidates:
        accepted = text + _rest_of(prediction, prediction.candidates[0])
        if accepted not in out and accepted != text:
            out.append(accepted)
    return out


def _checked_text(text: object, what: str) -> str:
    if not isinstance(text, str):
        raise InvalidInput(f"{what} must be a string, got {type(text).__name__}")
    return text


def _rest_of(prediction: Prediction, candidate: Candidate) -> str:
    """What accepting ``candidate`` types after ``prediction.prompt``."""
    if prediction.typed is not None and candidate.remaining is not None:
        return candidate.remaining
    return candidate.text
