"""Engine work from many callers: one group of requests at a time, compatible steps grouped.

A loaded model has one engine state (a KV cache, a context); threads that call into it at the
same time must take turns, and where the engine can evaluate several sequences in one step they
should share that step. :class:`StepScheduler` does both without a thread of its own: a caller
that finds the engine idle becomes the *executor*, takes the waiting requests (in arrival order;
several batchable ones together, up to ``max_group``), runs them through the backend's
``execute`` function and wakes their callers; the others wait. Requests of callers that will
submit again soon (a generation between two steps) are waited for a moment, so a step of eight
concurrent generations is one group rather than one plus seven.

:class:`CancelScope` lets another thread (an event loop cancelling a task) stop a caller at its
next engine step: the step raises :class:`~nextword.errors.Cancelled` before it starts, so the
engine is never interrupted half-way and the generator stays usable.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import contextvars
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

from nextword.errors import Cancelled

__all__ = ["CancelScope", "StepScheduler", "check_cancelled", "run_concurrently"]

R = TypeVar("R")
T = TypeVar("T")

_scope: contextvars.ContextVar[CancelScope | None] = contextvars.ContextVar("nextword_cancel_scope", default=None)


class CancelScope:
    """A flag that stops the engine work of the code running inside it.

    Enter it (``with scope:``) in the thread that does the work; call :meth:`cancel` from
    anywhere. The next engine step started inside the scope raises
    :class:`~nextword.errors.Cancelled`. Scopes are context-local (``contextvars``), so
    ``asyncio.to_thread`` carries the scope that was current when it was called.
    """

    def __init__(self, parent: CancelScope | None = None) -> None:
        self._event = threading.Event()
        self._parent = parent
        self._local = threading.local()  # per thread: the context-variable tokens to restore

    @classmethod
    def nested(cls) -> CancelScope:
        """A scope that is also cancelled when the current one is."""
        return cls(_scope.get())

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called (on this scope or the one it is nested in)."""
        return self._event.is_set() or (self._parent is not None and self._parent.cancelled)

    def cancel(self) -> None:
        """Ask the work inside the scope to stop at its next engine step (thread-safe)."""
        self._event.set()

    def __enter__(self) -> CancelScope:
        tokens = self._local.__dict__.setdefault("tokens", [])
        tokens.append(_scope.set(self))
        return self

    def __exit__(self, *exc: object) -> None:
        _scope.reset(self._local.tokens.pop())


def check_cancelled() -> None:
    """Raise :class:`~nextword.errors.Cancelled` if the current cancel scope was cancelled."""
    scope = _scope.get()
    if scope is not None and scope.cancelled:
        raise Cancelled("the call was cancelled")


class _Ticket(Generic[R]):
    __slots__ = ("batchable", "done", "request")

    def __init__(self, request: R, batchable: bool) -> None:
        self.request = request
        self.batchable = batchable
        self.done = False


class StepScheduler(Generic[R]):
    """Runs requests from any number of threads through ``execute``, one group at a time.

    ``execute(requests)`` gets a non-empty list: either one non-batchable request, or up to
    ``max_group`` batchable ones in arrival order. It reports per-request failures on the
    request objects themselves; an exception it raises is re-raised in the thread that ran it,
    and the other requests of that group are queued again (at the front) for the next group.

    :meth:`participant` marks a caller that will submit again shortly (one generation in
    progress): before running a group, the executor waits up to ``gather_s`` seconds until
    every participant has a request waiting.
    """

    def __init__(
        self,
        execute: Callable[[Sequence[R]], None],
        *,
        max_group: int | Callable[[], int] = 1,
        gather_s: float = 0.003,
        condition: threading.Condition | None = None,
    ) -> None:
        """``condition`` is the condition variable the callers wait on (default: a new one over
        a plain lock); a test may pass its own, for instance one whose wait is interrupted."""
        self._execute = execute
        self._max_group = max_group
        self.gather_s = gather_s
        """How long the executor waits for every participant to submit before it runs a group
        (may be changed while the scheduler runs)."""
        self._cond = condition if condition is not None else threading.Condition(threading.Lock())
        self._pending: collections.deque[_Ticket[R]] = collections.deque()
        self._busy = False
        self._participants = 0
        self._groups = 0
        self._grouped = 0

    @property
    def queued(self) -> int:
        """Requests waiting for the engine now (not counting the group it runs)."""
        with self._cond:
            return len(self._pending)

    @property
    def participants(self) -> int:
        """Callers counted by :meth:`participant` now."""
        with self._cond:
            return self._participants

    @property
    def busy(self) -> bool:
        """Whether a group is being executed now."""
        with self._cond:
            return self._busy

    @property
    def stats(self) -> tuple[int, int]:
        """(groups executed, requests executed): their ratio is the mean group size."""
        return self._groups, self._grouped

    @contextlib.contextmanager
    def participant(self) -> Iterator[None]:
        """Count the caller as one that submits step after step until the block ends."""
        with self._cond:
            self._participants += 1
        try:
            yield
        finally:
            with self._cond:
                self._participants -= 1
                self._cond.notify_all()

    def run(self, request: R, *, batchable: bool = True) -> None:
        """Queue ``request`` and return once it was executed (in this thread or another).

        Raises:
            Cancelled: the current :class:`CancelScope` was cancelled (checked before queueing).
        """
        check_cancelled()
        ticket = _Ticket(request, batchable)
        cond = self._cond
        with cond:
            self._pending.append(ticket)
            cond.notify_all()  # an executor gathering participants' requests may be waiting
            try:
                while not ticket.done:
                    if self._busy:
                        cond.wait()
                        continue
                    self._execute_next(ticket)
            except BaseException:
                # Interrupted (KeyboardInterrupt) or failed: a request nobody waits for any
                # more must not run later.
                with contextlib.suppress(ValueError):
                    self._pending.remove(ticket)
                raise

    def _execute_next(self, ticket: _Ticket[R]) -> None:
        """Run the next group as the executor (called with the lock held; returns with it held).
        Whatever happens, even an interrupt while the group is gathered, the engine is marked
        idle again and the other callers are woken."""
        self._busy = True
        group: list[_Ticket[R]] = []
        failure: BaseException | None = None
        try:
            group = self._take_group()
            self._cond.release()
            try:
                self._execute([t.request for t in group])
            except BaseException as exc:
                failure = exc
            finally:
                self._cond.acquire()
        except BaseException as exc:  # interrupted while gathering the group
            failure = exc
        finally:
            self._busy = False
            self._groups += 1 if group else 0
            self._grouped += len(group)
            if failure is None:
                for t in group:
                    t.done = True
            else:
                # Not the other callers' failure: their requests run in the next group.
                self._pending.extendleft(reversed([t for t in group if t is not ticket]))
            self._cond.notify_all()
        if failure is not None:
            raise failure

    def _take_group(self) -> list[_Ticket[R]]:
        """The next group, called with the lock held (may wait for participants, releasing it)."""
        cond = self._cond
        if self.gather_s > 0 and len(self._pending) < self._participants:
            deadline = time.monotonic() + self.gather_s
            while len(self._pending) < self._participants:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                cond.wait(left)
        head = self._pending.popleft()
        group = [head]
        if not head.batchable:
            return group
        limit = self._max_group() if callable(self._max_group) else self._max_group
        keep: list[_Ticket[R]] = []
        while self._pending and len(group) < limit:
            t = self._pending.popleft()
            (group if t.batchable else keep).append(t)
        self._pending.extendleft(reversed(keep))
        return group


def run_concurrently(jobs: Sequence[Callable[[], T]], max_workers: int) -> list[T]:
    """Run ``jobs`` in worker threads (at most ``max_workers`` at a time); their results in order.

    The workers run inside a cancel scope nested in the caller's. When a job fails, or the
    caller is interrupted (``KeyboardInterrupt``) while waiting, the other jobs are cancelled at
    their next engine step and waited for; then the first failure (or the interrupt) is raised.
    """
    if len(jobs) <= 1 or max_workers <= 1:
        return [job() for job in jobs]
    scope = CancelScope.nested()

    def call(job: Callable[[], T]) -> T:
        with scope:
            return job()

    with concurrent.futures.ThreadPoolExecutor(max_workers=min(max_workers, len(jobs))) as pool:
        futures = [pool.submit(call, job) for job in jobs]
        try:
            done, _ = concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_EXCEPTION)
            if any(f.exception() is not None for f in done):
                scope.cancel()
        except BaseException:
            scope.cancel()
            concurrent.futures.wait(futures)
            raise
    failures = [f.exception() for f in futures if f.exception() is not None]
    # A job's own error first, not the Cancelled it caused in the others.
    failures.sort(key=lambda e: isinstance(e, Cancelled))
    if failures:
        raise failures[0]  # type: ignore[misc]
    return [f.result() for f in futures]
