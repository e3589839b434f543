"""Several continuations of one prompt, evaluated together.

The word search (:mod:`nextword.words`) needs the next-token distribution after the prompt
followed by each of many short token paths. A backend that can evaluate several sequences in one
engine call, sharing the prompt's KV cache, implements the optional :class:`BranchingGenerator`
hook ``open_branches``; every other generator gets :class:`SessionBranches`, which evaluates the
paths one by one through ``open_session`` (or ``next_token_logits``) and gives the same numbers.

The contract of :meth:`Branches.logits`: row ``i`` holds the raw next-token logits after
``prompt_ids + paths[i]``, equal to what a session opened on ``prompt_ids`` and fed ``paths[i]``
gives (bit-identical where the engine's numbers do not depend on the batch; a backend whose
numbers do keeps the exact way by default and documents any option that trades exactness for
speed). Paths may be empty (the prompt's own distribution) and may differ in length.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from nextword.protocol import ForkableSession, SupportsSessions

__all__ = ["Branches", "BranchingGenerator", "SessionBranches", "open_branches"]


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


@runtime_checkable
class BranchingGenerator(Protocol):
    """A generator that evaluates several continuations of a prompt in one engine call."""

    def open_branches(self, prompt_ids: Sequence[int]) -> Branches:
        """The state after ``prompt_ids``; nothing needs to run before the first
        :meth:`Branches.logits`. Raises the usual errors for invalid ids or a prompt too long."""
        ...


class SessionBranches:
    """:class:`Branches` for any generator, one path at a time.

    With ``open_session``, the state of an evaluated path is kept until a path one token longer
    extends it (then that costs one fed token on a KV-cache backend); other paths start from the
    prompt's session, forked when the session can be (the prompt is read once), else opened again
    (a backend that keeps the prompt's KV cache then evaluates only the path's tokens). Without
    ``open_session``, ``next_token_logits`` reads the whole sequence for every path.
    """

    def __init__(self, generator: Any, prompt_ids: Sequence[int]) -> None:
        self._generator = generator
        self._prompt = list(prompt_ids)
        self._open: Callable[[list[int]], Any] | None = (
            generator.open_session if isinstance(generator, SupportsSessions) else None
        )
        self._sessions: dict[tuple[int, ...], Any] = {}
        self._root: Any = None

    def logits(self, paths: Sequence[Sequence[int]]) -> npt.NDArray[np.floating]:
        rows = [np.asarray(self._one(tuple(int(t) for t in path))) for path in paths]
        if not rows:
            return np.empty((0, 0), dtype=np.float32)
        return np.stack(rows)

    def _one(self, path: tuple[int, ...]) -> npt.NDArray[np.floating]:
        if self._open is None:
            return np.array(self._generator.next_token_logits(self._prompt + list(path)))
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
            assert self._open is not None
            self._root = self._open(self._prompt)
        return self._root

    def close(self) -> None:
        self._sessions.clear()
        self._root = None


def open_branches(generator: Any, prompt_ids: Sequence[int]) -> Branches:
    """The generator's own :class:`Branches` when it implements ``open_branches``, else a
    :class:`SessionBranches` (same numbers, one path at a time)."""
    if isinstance(generator, BranchingGenerator):
        return generator.open_branches(list(prompt_ids))
    return SessionBranches(generator, prompt_ids)
