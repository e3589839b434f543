"""One thread that runs all of a model's engine calls, whichever thread asked for them.

Engines built with OpenMP (llama.cpp's CPU build, PyTorch) keep a team of worker threads per
*calling* thread. When many application threads call one model in turn, each of them gets its
own team, and once the process holds more OpenMP threads than there are CPUs, libgomp stops
letting idle workers spin and puts them to sleep between parallel regions: every one of the
hundreds of barriers in a forward pass then pays a wake-up. Measured on the 2-core machine the
project is developed on (GPT-2 124M Q8_0, 2 threads, greedy): about 75 tokens/s when one thread
makes every call, about 45 tokens/s when the calls come from a second thread of the same
process. Routing every engine call of a model through one :class:`EngineThread` keeps a single
team, whoever the callers are.

The same holds between models: two llama.cpp contexts of one process, each called from a thread
of its own, make two teams, and every barrier of either pays a wake-up once both have run (two
GPT-2 124M Q8_0 models used in turn: 44-54 tokens/s each against 91-94 alone). Engine threads
made with the same ``shared`` key are one thread: the hf and llamacpp backends use the key
``"openmp"``, since PyTorch's bundled ``libgomp.so.1`` and llama.cpp's are one library once both
are loaded (the dynamic loader shares a soname), so every model of the process runs on one team,
one call at a time. On a CPU that costs nothing: their calls would compete for the same cores.
"""

from __future__ import annotations

import atexit
import contextvars
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["EngineThread"]

T = TypeVar("T")

_STOP = object()

#: How long the interpreter's exit waits for an engine thread to finish the call it is running.
EXIT_WAIT_S = 10.0

_engines: weakref.WeakSet[_Worker] = weakref.WeakSet()

# Workers shared by key (see EngineThread's ``shared``), with how many open handles use each.
_shared: dict[str, tuple[_Worker, int]] = {}
_shared_lock = threading.RLock()  # re-entrant: a handle collected while it is held releases under it


class _Call:
    __slots__ = ("context", "done", "error", "fn", "result")

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.context = contextvars.copy_context()
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


def _serve(calls: queue.SimpleQueue[Any]) -> None:
    while True:
        call = calls.get()
        if call is _STOP:
            return
        try:
            call.result = call.context.run(call.fn)
        except BaseException as exc:  # handed to the caller, who re-raises it
            call.error = exc
        finally:
            call.done.set()


class _Worker:
    """The thread and its queue of calls; one per :class:`EngineThread`, or one per ``shared`` key."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.start_lock = threading.Lock()
        self.stopped = False
        _engines.add(self)

    def ensure_started(self) -> bool:
        """Start the thread if needed; False once stopped."""
        with self.start_lock:
            if self.stopped:
                return False
            if self.thread is None:
                self.thread = threading.Thread(target=_serve, args=(self.calls,), name=self.name, daemon=True)
                self.thread.start()
            return True

    def stop(self) -> None:
        """Let the thread end once the calls already queued are done."""
        with self.start_lock:
            self.stopped = True
            if self.thread is not None:
                self.calls.put(_STOP)

    def join(self, timeout: float | None) -> None:
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)


def _worker_for(name: str, shared: str | None) -> _Worker:
    """A new worker, or the one of ``shared`` (one more handle uses it)."""
    if shared is None:
        return _Worker(name)
    with _shared_lock:
        worker, users = _shared.get(shared, (None, 0))
        if worker is None or worker.stopped:
            worker, users = _Worker(f"nextword-{shared}"), 0
        _shared[shared] = (worker, users + 1)
        return worker


def _release(worker: _Worker, shared: str | None) -> None:
    """A handle of ``worker`` is done: stop it, unless other handles of its key still use it."""
    if shared is not None:
        with _shared_lock:
            current, users = _shared.get(shared, (None, 0))
            if current is worker and users > 1:
                _shared[shared] = (worker, users - 1)
                return
            if current is worker:
                del _shared[shared]
    worker.stop()


class EngineThread:
    """A daemon thread that runs the functions given to :meth:`call`, one at a time, in order.

    The thread starts on the first call and stops on :meth:`stop` or when the object is
    garbage-collected. It holds no reference to the caller's objects between calls.

    With ``shared`` (a key such as ``"llama.cpp"``), every open engine thread of that key is a
    handle on one thread: calls of all of them run there, in the order they arrive, and the
    thread stops when the last handle is stopped or collected.
    """

    def __init__(self, name: str = "nextword-engine", *, shared: str | None = None) -> None:
        self._worker = _worker_for(name, shared)
        self._shared = shared
        self._stopped = False
        self._stop_lock = threading.Lock()
        # Not at exit: atexit handlers that close models still need the thread then.
        self._finalizer = weakref.finalize(self, _release, self._worker, shared)
        self._finalizer.atexit = False

    def call(
        self, fn: Callable[[], T], *, on_interrupt: Callable[[], object] | None = None, abandon: bool = False
    ) -> T:
        """Run ``fn()`` on the engine thread (in the caller's context variables, so a
        :class:`~nextword._runtime.scheduler.CancelScope` applies) and return its result or raise its
        exception.

        A ``KeyboardInterrupt`` that reaches the caller while ``fn`` runs is held back until
        ``fn`` has finished, then raised: the engine is never left half-way through a call, and
        the caller cannot return while the engine still works on its behalf. ``on_interrupt``
        is called (once) when that happens, to ask a long ``fn`` to finish early. With
        ``abandon=True`` the interrupt is raised at once instead, and this engine thread is
        stopped: it ends after ``fn`` (whose result is dropped), for work whose state dies with
        the interrupt (loading a model).

        After :meth:`stop`, ``fn`` runs in the calling thread (the engine it served is closed;
        ``fn`` is expected to say so with its own error).
        """
        worker = self._worker
        if threading.current_thread() is worker.thread or self._stopped or not worker.ensure_started():
            return fn()  # on the engine thread already (a call inside a call), or stopped
        job = _Call(fn)
        worker.calls.put(job)
        interrupt: BaseException | None = None
        while True:
            try:
                # In slices: a pending interrupt is seen between them (a lock wait without a
                # timeout is not woken by one that is raised without a real signal).
                if job.done.wait(0.05):
                    break
            except KeyboardInterrupt as exc:
                if abandon:
                    self.stop()
                    raise
                if interrupt is None and on_interrupt is not None:
                    on_interrupt()
                interrupt = exc
        if interrupt is not None:
            raise interrupt
        if job.error is not None:
            raise job.error
        return job.result

    def stop(self) -> None:
        """Let the thread end once the calls already queued are done (a shared thread: once no
        other handle uses it). Later calls of this handle run in the calling thread."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        self._finalizer.detach()
        _release(self._worker, self._shared)

    def join(self, timeout: float | None = None) -> None:
        """Wait until the thread has ended (after :meth:`stop`), at most ``timeout`` seconds; at
        once when it is a shared thread that other handles still use."""
        if self._worker.stopped:
            self._worker.join(timeout)


def _stop_engines_at_exit() -> None:
    """Let every engine thread end before the interpreter finalizes. Left alive, a daemon engine
    thread can wake during finalization (its generator's collection queues its stop) and be cut
    off there; with torch and llama.cpp loaded in one process that aborted the process in about
    one exit of three ("terminate called without an active exception", measured with
    ``nextword eval --compare``), and never once the threads had ended first."""
    engines = list(_engines)
    for engine in engines:
        engine.stop()
    for engine in engines:
        engine.join(EXIT_WAIT_S)


# Registered when this module is imported, so it runs after the exit handlers of code imported
# later (atexit runs the last registered first), which may still use their engines.
atexit.register(_stop_engines_at_exit)
