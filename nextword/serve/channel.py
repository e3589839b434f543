"""A bounded hand-off from the worker thread that runs a generation to the event loop that sends
its chunks: the thread owns the engine's stream from its opening to its closing (so nothing else
ever touches it while it runs), and it computes at most ``size`` chunks ahead of the client."""

from __future__ import annotations

import asyncio
import collections
import threading
from typing import Any

from nextword._runtime.scheduler import check_cancelled
from nextword.errors import Cancelled

__all__ = ["END", "Channel"]

END = object()
"""What :meth:`Channel.get` returns after the last item, once :meth:`Channel.end` was called."""


class Channel:
    """Items put by one worker thread, taken by one task on the event loop ``loop``.

    :meth:`put` blocks while ``size`` items wait to be taken, and raises
    :class:`~nextword.errors.Cancelled` once the channel is closed (the reader is gone) or the
    current cancel scope is cancelled."""

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int = 4) -> None:
        self._loop = loop
        self._size = size
        self._items: collections.deque[Any] = collections.deque()
        self._cond = threading.Condition()
        self._ready = asyncio.Event()
        self._closed = False

    def put(self, item: Any) -> None:
        """Hand ``item`` to the reader (from the worker thread); waits while the reader is
        ``size`` items behind."""
        with self._cond:
            while len(self._items) >= self._size and not self._closed:
                check_cancelled()
                self._cond.wait(0.1)
            if self._closed:
                raise Cancelled("the stream's reader is gone")
            self._items.append(item)
        self._loop.call_soon_threadsafe(self._ready.set)

    async def get(self) -> Any:
        """The next item (on the event loop), waiting for it."""
        while True:
            with self._cond:
                if self._items:
                    item = self._items.popleft()
                    self._cond.notify_all()
                    return item
                self._ready.clear()
            await self._ready.wait()

    def close(self) -> None:
        """No more items are taken: the writer's next :meth:`put` raises (thread-safe). Items
        already handed over are still read."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def end(self) -> None:
        """Mark the end (on the event loop, once the writer has returned): :meth:`get` returns
        :data:`END` after the items handed over before it."""
        with self._cond:
            self._items.append(END)
        self._ready.set()
