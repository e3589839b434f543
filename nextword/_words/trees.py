"""The word-search trees kept per context, so that searches from the same text share their work.

A *tree* is the state after a context (token ids) from which word searches evaluate their paths:
a :class:`~nextword._decoding.branches.SharedBranches` over the generator's ``open_branches``. It
keeps every next-token row it computed and the values the searches derived from them (a row's
log-softmax, an extension's word-end mass and best continuations), so a later search from the
same context, replaying the same steps, reads them instead of asking the engine again and gets
bit-identical numbers (the same arithmetic on the same rows).

:class:`Trees` holds a few of them, least recently used first out, within a byte budget. A
typing session holds one (:mod:`nextword._words.typing_session`); every generator has a shared
one that stateless word predictions use (:func:`shared_trees`), so that ``predict_next`` on a text
that grows within a word, as a keyboard or a server client sends it, costs what a session does.
The shared trees live on the generator (a :class:`~nextword._contract.base.BaseGenerator`) and
go with it: a cache keyed by generator would keep the generator alive through the trees' engine
states.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import weakref
from collections.abc import Iterator, Sequence

from nextword._contract.protocol import Generator
from nextword._decoding.branches import SharedBranches
from nextword.errors import InvalidInput

__all__ = ["SHARED_BUDGET", "Trees", "shared_trees"]

#: Bytes the trees shared by a generator's stateless word predictions may hold.
SHARED_BUDGET = 96 << 20

#: Contexts whose trees the shared trees keep.
SHARED_CONTEXTS = 4


class _Tree:
    __slots__ = ("branches", "lock")

    def __init__(self, branches: SharedBranches) -> None:
        self.branches = branches
        self.lock = threading.Lock()


class Trees:
    """Word-search trees of up to ``contexts`` contexts, together at most about ``budget_bytes``.

    :meth:`borrow` lends the tree of a context to one search at a time; a search that finds it
    lent to another thread gets a fresh tree of its own, used once (never a shared one, whose
    rows and derived values are not thread-safe), so concurrent callers never wait on each other
    here. ``engine_rows`` counts the next-token rows the trees asked the engine for.
    """

    def __init__(self, generator: Generator, *, budget_bytes: int = 256 << 20, contexts: int = 8) -> None:
        if budget_bytes < 1 or contexts < 1:
            raise InvalidInput("a tree cache needs a positive byte budget and room for at least one context")
        self._generator = generator
        self._budget = budget_bytes
        self._contexts = contexts
        self._trees: collections.OrderedDict[tuple[int, ...], _Tree] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._closed_rows = 0
        _ALL.add(self)

    @property
    def engine_rows(self) -> int:
        """Next-token rows computed by the engine for these trees (evicted trees included)."""
        with self._lock:
            return self._closed_rows + sum(t.branches.engine_rows for t in self._trees.values())

    def has(self, context: Sequence[int]) -> bool:
        """Whether the tree of ``context`` is kept."""
        with self._lock:
            return tuple(context) in self._trees

    @contextlib.contextmanager
    def borrow(self, context: Sequence[int]) -> Iterator[SharedBranches]:
        """The tree of ``context`` (token ids) for the duration of the block; the caller must not
        close it. Made on first use; afterwards it is the most recently used."""
        key = tuple(int(t) for t in context)
        with self._lock:
            tree = self._trees.get(key)
            if tree is None:
                opened = self._generator.open_branches(list(key))
                tree = self._trees[key] = _Tree(SharedBranches(opened, budget_bytes=self._budget))
            self._trees.move_to_end(key)
        if not tree.lock.acquire(blocking=False):
            private = SharedBranches(self._generator.open_branches(list(key)))
            try:
                yield private
            finally:
                private.close()
            return
        try:
            yield tree.branches
        finally:
            tree.lock.release()
            self._trim()

    def _trim(self) -> None:
        """Close the least recently used trees (not lent ones) until the rest fit the limits."""
        with self._lock:
            held = sum(t.branches.held_bytes for t in self._trees.values())
            for key in list(self._trees)[:-1]:
                if len(self._trees) <= self._contexts and held <= self._budget:
                    break
                tree = self._trees[key]
                if not tree.lock.acquire(blocking=False):
                    continue
                try:
                    held -= tree.branches.held_bytes
                    self._closed_rows += tree.branches.engine_rows
                    del self._trees[key]
                    tree.branches.close()
                finally:
                    tree.lock.release()

    def clear(self) -> None:
        """Close every tree not lent at the moment."""
        with self._lock:
            for key, tree in list(self._trees.items()):
                if tree.lock.acquire(blocking=False):
                    try:
                        self._closed_rows += tree.branches.engine_rows
                        del self._trees[key]
                        tree.branches.close()
                    finally:
                        tree.lock.release()


_ALL: weakref.WeakSet[Trees] = weakref.WeakSet()


def clear_all() -> None:
    """Close every tree of every :class:`Trees` not lent at the moment (``clear_cache()``)."""
    for trees in list(_ALL):
        trees.clear()


def shared_trees(generator: Generator) -> Trees | None:
    """The trees a generator's stateless word predictions share (:data:`SHARED_BUDGET` bytes,
    :data:`SHARED_CONTEXTS` contexts), or None for a generator that keeps none (one that is not
    a :class:`~nextword._contract.base.BaseGenerator`, is closed, or lists only its top
    log-probabilities)."""
    from nextword._contract.base import BaseGenerator  # the base imports the word search

    if not isinstance(generator, BaseGenerator) or generator.closed or not generator.capabilities.logits:
        return None
    return generator._shared_word_trees()
