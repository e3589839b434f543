"""One model's slot: requests for a model wait their turn here and run one at a time.

A generator's engine state (a KV cache, a llama.cpp context) belongs to one call at a time, so
the server never lets two requests interleave inside it: each request holds the model's slot
while its engine calls run in a worker thread, and a streamed request holds it until its stream
ends or its client goes away. Waiting requests are served in arrival order; past ``max_queue``
waiting requests the server answers 503 rather than piling up work.
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

    def __init__(self, max_queue: int) -> None:
        self._lock = asyncio.Lock()
        self._waiting = 0
        self._max_queue = max_queue
        self.served = 0

    @property
    def busy(self) -> bool:
        """Whether a request holds the slot now."""
        return self._lock.locked()

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

    def release(self) -> None:
        """Give the slot to the next waiting request."""
        self.served += 1
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
