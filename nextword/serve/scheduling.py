"""Who runs when: each request's cancellation, the fair queue in front of the model, and the
worker threads that do the engine work.

A request's engine work is cut into *units*: one prompt's generation (all its ``n`` sequences),
one stream, one word prediction, one explanation. At most ``parallel`` units run at once; the
others wait in a :class:`FairQueue` that serves the waiting *requests* in turn, one unit each
(round robin), so a request of 64 prompts does not make a one-prompt request wait for all 64:
the short one waits at most until one running unit ends, and with free slots not at all. One
request never holds every slot, so a request arriving while a single other one runs starts at
once. Inside
the engine, the running units' sequences are stepped together (``llamacpp`` decodes one token of
every sequence per step), so a long generation slows a short one down but never blocks it.

Every request has a :class:`RequestContext`: a :class:`~nextword._runtime.scheduler.CancelScope` that its
units run in, cancelled when its client disconnects, when it runs past ``request_timeout``, or
when the server shuts down after its grace period. The engine then stops at its next step
(a step is never cut half-way), a unit still waiting leaves the queue, and the request's answer
names the reason.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import itertools
import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

from nextword._runtime.scheduler import CancelScope
from nextword.errors import Cancelled
from nextword.serve.errors import RequestError
from nextword.serve.limits import OPTION

__all__ = ["FairQueue", "RequestContext", "Workers"]

T = TypeVar("T")

_ids = itertools.count(1)


class RequestContext:
    """One request's cancellation: its scope, its deadline, and why it was cancelled.

    :meth:`cancel` is called on the event loop's thread; the engine work running in the scope
    (in worker threads) stops at its next step, and callbacks registered with :meth:`on_cancel`
    run at once (a stream's channel closes, a queued unit leaves the queue)."""

    def __init__(self, timeout_s: float | None = None) -> None:
        self.id = next(_ids)
        self.scope = CancelScope()
        self.arrived = time.monotonic()
        self.reason: str | None = None
        """``disconnect``, ``timeout`` or ``shutdown`` once cancelled (``failed``: a unit of the
        request failed and its other units were stopped)."""
        self.timeout_s = timeout_s
        self.first_token_at: float | None = None
        """When the request's first token was generated (for the time-to-first-token metric)."""
        self._callbacks: list[Callable[[], object]] = []
        self._timer: asyncio.TimerHandle | None = None
        if timeout_s is not None:
            self._timer = asyncio.get_running_loop().call_later(timeout_s, self.cancel, "timeout")

    @property
    def cancelled(self) -> bool:
        """Whether the request was cancelled (for any reason)."""
        return self.reason is not None

    def cancel(self, reason: str) -> None:
        """Cancel the request (the first reason given is kept). Idempotent."""
        if self.reason is not None:
            return
        self.reason = reason
        self.scope.cancel()
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def on_cancel(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` when the request is cancelled (at once if it already is)."""
        if self.reason is not None:
            callback()
        else:
            self._callbacks.append(callback)

    def finish(self) -> None:
        """The request is answered: its timer stops, its callbacks are dropped."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._callbacks = []

    def error(self) -> RequestError:
        """The error answer for a cancelled request (the client that left gets none it can read)."""
        if self.reason == "timeout":
            return RequestError(
                504,
                f"the request ran past the server's limit request_timeout_s={self.timeout_s:g} "
                f"(set by {OPTION['request_timeout_s']}) and was cancelled",
                type="timeout_error",
                code="request_timeout",
                reason="request_timeout_s",
            )
        if self.reason == "shutdown":
            return RequestError(
                503,
                "the server is shutting down and its grace period is over; the request was cancelled",
                type="server_error",
                code="server_shutting_down",
                reason="shutdown",
            )
        return RequestError(499, "the client closed the connection", code="client_disconnected", reason="disconnect")


class FairQueue:
    """At most ``capacity`` units run at once; waiting units are served request by request in
    turn (round robin), and a request that has waited its turn is never overtaken by later
    ones. One request holds at most ``capacity - 1`` slots at once (when ``capacity > 1``), so
    a request arriving while a single other one runs, however big, starts at once. At most
    ``max_queue`` requests may wait for their first unit: past that, 503 with ``Retry-After``."""

    def __init__(self, capacity: int, max_queue: int) -> None:
        self.capacity = capacity
        self.per_request = max(1, capacity - 1)
        """Most slots one request holds at once."""
        self.max_queue = max_queue
        self.running = 0
        self._rotation: collections.OrderedDict[int, collections.deque[asyncio.Future[None]]] = (
            collections.OrderedDict()
        )
        self._queued: set[int] = set()  # requests admitted whose first unit has not started
        self._active: collections.Counter[int] = collections.Counter()  # running units per request
        self._unit_s = 1.0  # a running mean of units' durations, for Retry-After
        self.closed = False

    @property
    def waiting(self) -> int:
        """Requests waiting for their first unit to start (the queue's length)."""
        return len(self._queued)

    @property
    def running_requests(self) -> int:
        """Requests with a unit running now."""
        return len(self._active)

    def retry_after(self) -> int:
        """Seconds a refused client should wait: the queue's expected drain time, 1 to 60."""
        return max(1, min(60, math.ceil((self.waiting + 1) * self._unit_s / max(1, self.capacity))))

    def admit(self, ctx: RequestContext) -> None:
        """Count a new request as waiting, or refuse it (503 with ``Retry-After``) when
        ``max_queue`` requests already wait or the server is shutting down."""
        if self.closed:
            raise RequestError(
                503,
                "the server is shutting down",
                type="server_error",
                code="server_shutting_down",
                reason="shutdown",
                headers={"Retry-After": str(self.retry_after())},
            )
        if len(self._queued) >= self.max_queue:
            raise RequestError(
                503,
                f"the server is busy: {len(self._queued)} requests are waiting, the server's limit max_queue="
                f"{self.max_queue} (set by {OPTION['max_queue']}); retry later",
                type="server_error",
                code="queue_full",
                reason="queue_full",
                headers={"Retry-After": str(self.retry_after())},
            )
        self._queued.add(ctx.id)

    def leave(self, ctx: RequestContext) -> None:
        """The request is answered: it no longer counts as waiting."""
        self._queued.discard(ctx.id)

    async def acquire(self, ctx: RequestContext) -> None:
        """Wait for a slot for one unit of ``ctx`` (in fair order).

        Raises:
            Cancelled: the request was cancelled while its unit waited.
        """
        if ctx.cancelled:
            raise Cancelled("the request was cancelled")
        if self.running < self.capacity and not self._rotation and self._active[ctx.id] < self.per_request:
            self._grant(ctx)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._rotation.setdefault(ctx.id, collections.deque()).append(future)
        self._dispatch()  # a slot may be free for it (others wait only for their share)

        def drop() -> None:
            if not future.done():
                future.set_exception(Cancelled("the request was cancelled"))

        ctx.on_cancel(drop)
        try:
            await future
        except BaseException:
            if future.done() and not future.cancelled() and future.exception() is None:
                self.release(ctx, 0.0)  # granted just as the waiter was cancelled: give it back
            else:
                self._forget(ctx.id, future)
                self._dispatch()
            raise
        self._queued.discard(ctx.id)  # its slot was counted when it was granted

    def release(self, ctx: RequestContext, seconds: float) -> None:
        """A unit of ``ctx`` that held a slot for ``seconds`` has ended."""
        self.running -= 1
        self._active[ctx.id] -= 1
        if self._active[ctx.id] <= 0:
            del self._active[ctx.id]
        if seconds > 0:
            self._unit_s = 0.8 * self._unit_s + 0.2 * seconds
        self._dispatch()

    def _grant(self, ctx: RequestContext) -> None:
        self.running += 1
        self._queued.discard(ctx.id)
        self._active[ctx.id] += 1

    def _forget(self, key: int, future: asyncio.Future[None]) -> None:
        waiters = self._rotation.get(key)
        if waiters is None:
            return
        try:
            waiters.remove(future)
        except ValueError:
            pass
        if not waiters:
            del self._rotation[key]

    def _dispatch(self) -> None:
        """Give free slots to waiting units: the first request in the rotation that holds less
        than its share gets one, then goes to the back (if it has more units waiting)."""
        while self.running < self.capacity and self._rotation:
            key = next((k for k in self._rotation if self._active[k] < self.per_request), None)
            if key is None:
                return  # every waiting request holds its share: the free slot waits for others
            waiters = self._rotation[key]
            future = waiters.popleft()
            if waiters:
                self._rotation.move_to_end(key)
            else:
                del self._rotation[key]
            if future.done():  # its request was cancelled meanwhile
                continue
            self.running += 1
            self._active[key] += 1  # counted now, so the loop sees the request's share
            future.set_result(None)


class Workers:
    """The threads that run engine work, each call inside its request's cancel scope."""

    def __init__(self, threads: int) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="nextword-serve")

    async def run(self, ctx: RequestContext, fn: Callable[[], T]) -> T:
        """``fn()`` in a worker thread inside ``ctx.scope``. If the awaiting task is cancelled
        (its client went away mid-stream, or the server is forced down), the request is
        cancelled, the worker is waited for until it stops (at its next engine step), and then
        the cancellation goes on."""

        def work() -> T:
            with ctx.scope:
                return fn()

        future = asyncio.get_running_loop().run_in_executor(self._pool, work)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            ctx.cancel("disconnect")
            await _wait_stopped(future)
            raise

    def shutdown(self) -> None:
        """Stop the threads once their calls have returned."""
        self._pool.shutdown(wait=False, cancel_futures=True)


async def _wait_stopped(future: asyncio.Future[Any]) -> None:
    """Wait until the worker behind ``future`` has returned, even if cancelled again meanwhile."""
    while not future.done():
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            continue
        except BaseException:  # noqa: BLE001 - the outcome is dropped: the request was cancelled
            break
    if future.done() and not future.cancelled():
        future.exception()  # retrieved, so asyncio does not log it
