"""One model's slots: requests for a model wait their turn here.

With one slot (the default) requests run one at a time, so two requests never interleave inside
an engine state (a KV cache), whatever the backend. With ``parallel`` slots, up to that many
requests call the generator at once from worker threads: for backends whose generators are safe
to share between threads (the built-in ``hf`` and ``llamacpp`` are: their scheduler keeps each
sequence's state apart, and ``llamacpp`` decodes concurrent generations in one batch). A request
holds its slot while its engine calls run, and a streamed request until its stream ends or its
client goes away. Waiting requests are served in arrival order; past ``max_queue`` waiting
requests the server answers 503 rather than piling up work.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import anyio.to_thread

from nextword.serve.errors import RequestError

__all__ = ["ModelSlot"]

T = TypeVar("T")


class ModelSlot:
    """First-come, first-served exclusive access to one generator."""

    def __init__(self, max_queue: int, parallel: int = 1) -> None:
        self._lock = asyncio.Semaphore(parallel)
        self._parallel = parallel
        self._held = 0
        self._waiting = 0
        self._max_queue = max_queue
        self.served = 0

    @property
    def busy(self) -> bool:
        """Whether a request holds a slot now."""
        return self._held > 0

    @property
    def waiting(self) -> int:
        """Requests waiting for the slot."""
        return self._waiting

    async def acquire(self) -> None:
        """Wait for the slot (503 when too many requests already wait)."""
        if self._waiting >= self._max_queue:
            raise RequestError(
                503, "the server is busy: too many requests are waiting; retry later", type="server_error"
            )
        self._waiting += 1
        try:
            await self._lock.acquire()
        finally:
            self._waiting -= 1
        self._held += 1

    def release(self) -> None:
        """Give the slot to the next waiting request."""
        self.served += 1
        self._held -= 1
        self._lock.release()

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        """Hold the slot for the body of the ``async with``."""
        await self.acquire()
        try:
            yield
        finally:
            self.release()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in a worker thread while holding the slot. A cancelled request
        still waits for the engine call it started (engine calls are never cut in the middle)."""
        async with self.hold():
            return await anyio.to_thread.run_sync(fn, *args)
