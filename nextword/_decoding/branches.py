"""Several continuations of one prompt, evaluated together.

The word search (:mod:`nextword._words.search`) needs the next-token distribution after the prompt
followed by each of many short token paths. A backend that can evaluate several sequences in one
engine call, sharing the prompt's KV cache, overrides ``BaseGenerator.open_branches``; every
other generator gets the default, :class:`SessionBranches`, which evaluates the paths one by one
through ``open_session`` and gives the same numbers.

The contract of :meth:`Branches.logits`: row ``i`` holds the raw next-token logits after
``prompt_ids + paths[i]``, equal to what a session opened on ``prompt_ids`` and fed ``paths[i]``
gives (bit-identical where the engine's numbers do not depend on the batch; a backend whose
numbers do keeps the exact way by default and documents any option that trades exactness for
speed). Paths may be empty (the prompt's own distribution) and may differ in length.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np
import numpy.typing as npt

from nextword._contract.protocol import ForkableSession

__all__ = ["Branches", "SessionBranches", "SharedBranches"]

T = TypeVar("T")
_MISSING = object()


@runtime_checkable
class Branches(Protocol):
    """The state after a prompt, from which continuations are evaluated (see the module docs).

    One object is used by one thread at a time. It holds the engine only inside :meth:`logits`
    and :meth:`close`: other calls on the generator may run between two :meth:`logits` calls.
    """

    def logits(self, paths: Sequence[Sequence[int]]) -> npt.NDArray[np.floating]:
        """Raw next-token logits after the prompt followed by each path: shape
        ``(len(paths), vocabulary size)``, a fresh array the caller owns."""
        ...

    def close(self) -> None:
        """Release what the state holds (KV cells, sequences); calling it again does nothing."""
        ...


class SessionBranches:
    """:class:`Branches` for any generator, one path at a time.

    The state of an evaluated path is kept until a path one token longer extends it (then that
    costs one fed token on a KV-cache backend); other paths start from the prompt's session,
    forked when the session can be (the prompt is read once), else opened again (a backend that
    keeps the prompt's KV cache then evaluates only the path's tokens).

    ``root``, when given, is a session that has already read ``prompt_ids`` (for instance a fork
    of a session that reads a text token by token): the paths start from it instead of from a
    newly opened session, so the prompt is not read again. It must be a
    :class:`~nextword._contract.protocol.ForkableSession` (each path forks it).
    """

    def __init__(self, generator: Any, prompt_ids: Sequence[int], *, root: ForkableSession | None = None) -> None:
        self._generator = generator
        self._prompt = list(prompt_ids)
        self._open: Callable[[list[int]], Any] = generator.open_session
        if root is not None and not isinstance(root, ForkableSession):
            raise TypeError("SessionBranches(root=...) needs a session with fork()")
        self._sessions: dict[tuple[int, ...], Any] = {}
        self._root: Any = root

    def logits(self, paths: Sequence[Sequence[int]]) -> npt.NDArray[np.floating]:
        rows = [np.asarray(self._one(tuple(int(t) for t in path))) for path in paths]
        if not rows:
            return np.empty((0, 0), dtype=np.float32)
        return np.stack(rows)

    def _one(self, path: tuple[int, ...]) -> npt.NDArray[np.floating]:
        session = self._sessions.pop(path[:-1], None) if len(path) > 1 else None
        if session is not None:
            session.feed(path[-1])
        elif not path:
            session = self._root_session()
        else:
            root = self._root_session()
            session = root.fork() if isinstance(root, ForkableSession) else self._open(self._prompt)
            for token in path:
                session.feed(token)
        logits = np.array(session.logits())  # a copy: a session may return a view of its buffer
        if path:
            self._sessions[path] = session
        return logits

    def _root_session(self) -> Any:
        if self._root is None:
            self._root = self._open(self._prompt)
        return self._root

    def close(self) -> None:
        self._sessions.clear()
        self._root = None


class SharedBranches:
    """A :class:`Branches` that remembers the rows it returned, for several searches from one
    state: each path is evaluated once, whichever search asks for it (the word search and the
    completion searches of one word, in :mod:`nextword._analysis.evaluation`).

    Rows are kept until about ``budget_bytes`` are held (later rows are computed but not kept).
    The rows are those of ``inner``; asking for a kept path returns a copy of the same numbers.
    :meth:`close` closes ``inner``. ``batched`` says whether ``inner`` evaluates several paths
    per engine call (it is not a :class:`SessionBranches`).

    Beside the rows it keeps values derived from them (:meth:`remember`: a row's log-softmax, a
    search step's summary), within the same budget, so that a search run again over the same
    paths (the typing session's next keystroke, :mod:`nextword._words.typing_session`) does the
    same arithmetic on the same numbers only once and gets the same results. ``engine_rows``
    counts the rows computed by ``inner``.
    """

    def __init__(self, inner: Branches, *, budget_bytes: int = 256 << 20) -> None:
        self.inner = inner
        self.batched = not isinstance(inner, SessionBranches)
        self._rows: dict[tuple[int, ...], npt.NDArray[np.floating]] = {}
        self._budget = budget_bytes
        self._held = 0
        self._derived: dict[Hashable, Any] = {}
        self.engine_rows = 0

    def logits(self, paths: Sequence[Sequence[int]]) -> npt.NDArray[np.floating]:
        keys = [tuple(int(t) for t in path) for path in paths]
        missing = list(dict.fromkeys(key for key in keys if key not in self._rows))
        fresh: dict[tuple[int, ...], npt.NDArray[np.floating]] = {}
        if missing:
            rows = np.asarray(self.inner.logits(missing))
            self.engine_rows += len(missing)
            for key, row in zip(missing, rows, strict=True):
                fresh[key] = row
                if self._held + row.nbytes <= self._budget:
                    self._rows[key] = row
                    self._held += row.nbytes
        if not keys:
            return np.empty((0, 0), dtype=np.float32)
        return np.stack([fresh[key] if key in fresh else self._rows[key] for key in keys])

    def remember(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()``, computed once per ``key`` while the budget allows keeping it (the
        value must depend only on the rows of the paths named in ``key``)."""
        value = self._derived.get(key, _MISSING)
        if value is not _MISSING:
            return value
        value = compute()
        size = _size(value)
        if self._held + size <= self._budget:
            self._derived[key] = value
            self._held += size
        return value

    @property
    def held_bytes(self) -> int:
        """About how many bytes the kept rows and derived values take."""
        return self._held

    def close(self) -> None:
        self._rows.clear()
        self._derived.clear()
        self._held = 0
        self.inner.close()


def _size(value: object) -> int:
    """About how many bytes ``value`` (an array, a tuple or list of numbers and arrays) holds."""
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, (tuple, list)):
        return 64 + sum(_size(v) for v in value)
    return 32
