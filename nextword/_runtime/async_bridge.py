"""asyncio support: engine work runs in worker threads, never on the event loop.

:func:`run_in_worker` runs one blocking call (a generation, a prediction, a load) in nextword's
worker pool inside a :class:`~nextword._runtime.scheduler.CancelScope`. Cancelling the awaiting task
cancels the scope, so the engine stops at its next step (a step is never interrupted half-way),
and the task's :class:`asyncio.CancelledError` is raised only once the worker has stopped: by
then the engine is free for the next call, and the generator gives the same results as a fresh
one. :class:`AsyncTextStream` does the same for a stream, one chunk per worker call.

The ``a*`` methods of :class:`~nextword._contract.base.BaseGenerator` and the module functions
(``nextword.agenerate`` ...) are built on these two.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from nextword._contract.protocol import TextStreamLike
from nextword._runtime.scheduler import CancelScope
from nextword._types.results import Generation

__all__ = ["AsyncTextStream", "run_in_worker"]

T = TypeVar("T")

#: Most worker threads nextword's pool runs (engine work is queued per model by the scheduler:
#: the threads mostly wait, and a small pool would make the eighth caller wait for the first).
MAX_WORKERS = 64

_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(MAX_WORKERS, thread_name_prefix="nextword-async")
        return _pool


async def run_in_worker(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in a worker thread, awaited without blocking the event loop.

    The call runs inside a new :class:`~nextword._runtime.scheduler.CancelScope` (nested in the
    caller's, and with the caller's context variables). If the awaiting task is cancelled, the
    scope is cancelled, the worker is awaited until it stops (its next engine step raises
    :class:`~nextword.errors.Cancelled`, or it finishes), and then the
    :class:`asyncio.CancelledError` propagates.
    """
    return await _run_scoped(CancelScope.nested(), functools.partial(fn, *args, **kwargs))


async def _run_scoped(scope: CancelScope, call: Callable[[], T]) -> T:
    def work() -> T:
        with scope:
            return call()

    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()
    future = loop.run_in_executor(_executor(), ctx.run, work)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        scope.cancel()
        await _wait_stopped(future)
        raise


async def _wait_stopped(future: asyncio.Future[Any]) -> None:
    """Wait until the worker behind ``future`` has returned, whatever it returned or raised,
    even if the waiting task is cancelled again meanwhile."""
    while not future.done():
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            if future.done():
                break
        except BaseException:  # noqa: BLE001 - the outcome is dropped: the call was cancelled
            break
    if future.done() and not future.cancelled():
        future.exception()  # retrieved, so asyncio does not log it as never retrieved


_END = object()


class AsyncTextStream:
    """The text chunks of one generation, for ``async for``.

    The underlying :meth:`~nextword._contract.protocol.Generator.stream` is opened in a worker thread at
    the first iteration (so invalid options raise there), and each chunk is fetched by a worker
    call. Cancelling the task that iterates, or :meth:`aclose` (also called by ``async with``),
    stops the engine and frees its slot; a stream dropped unfinished is closed in the
    background. After the last chunk, :attr:`result` holds the complete
    :class:`~nextword._types.results.Generation`.
    """

    def __init__(self, open_stream: Callable[[], TextStreamLike]) -> None:
        self._open = open_stream
        self._scope = CancelScope.nested()
        self._stream: TextStreamLike | None = None
        self._chunks: Any = None
        self._done = False
        self._closed = False

    def __aiter__(self) -> AsyncTextStream:
        return self

    async def __anext__(self) -> str:
        if self._done or self._closed:
            raise StopAsyncIteration
        try:
            chunk = await _run_scoped(self._scope, self._next)
        except BaseException:
            await self.aclose()
            raise
        if chunk is _END:
            self._done = True
            raise StopAsyncIteration
        assert isinstance(chunk, str)
        return chunk

    def _next(self) -> object:
        if self._chunks is None:
            self._stream = self._open()
            self._chunks = iter(self._stream)
        return next(self._chunks, _END)

    @property
    def result(self) -> Generation:
        """The complete generation; only available once every chunk was read."""
        if self._stream is None or not self._done:
            raise RuntimeError("the stream has not been read to its end; iterate over it first")
        return self._stream.result

    async def text(self) -> str:
        """Read the stream to its end and return the whole text."""
        return "".join([chunk async for chunk in self])

    async def aclose(self) -> None:
        """Stop generating (a stream closed before its end has no :attr:`result`)."""
        if self._closed:
            return
        self._closed = True
        stream = self._stream
        if stream is not None and not self._done:
            await asyncio.shield(asyncio.get_running_loop().run_in_executor(_executor(), stream.close))

    async def __aenter__(self) -> AsyncTextStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __del__(self) -> None:
        stream = getattr(self, "_stream", None)
        if stream is not None and not self._done and not self._closed:
            try:
                _executor().submit(stream.close)
            except RuntimeError:  # the interpreter is shutting down
                pass
