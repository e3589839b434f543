"""nextword._runtime.engine_thread: one thread runs every call, results and errors come back, and an
interrupt never leaves a call half-done."""

from __future__ import annotations

import contextvars
import subprocess
import sys
import threading
import time

import pytest

from nextword._runtime.engine_thread import EngineThread

_var: contextvars.ContextVar[str] = contextvars.ContextVar("_var", default="unset")


def test_calls_from_many_threads_run_on_one_thread_in_order() -> None:
    engine = EngineThread()
    seen: list[tuple[int, int]] = []

    def work(i: int) -> None:
        for k in range(20):
            engine.call(lambda i=i, k=k: seen.append((threading.get_ident(), i * 100 + k)))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(seen) == 120
    assert len({ident for ident, _ in seen}) == 1
    assert seen[0][0] not in {t.ident for t in threads} | {threading.get_ident()}
    for i in range(6):  # each caller's calls in its own order
        mine = [v for _, v in seen if v // 100 == i]
        assert mine == sorted(mine)
    engine.stop()


def test_results_errors_and_context_variables_reach_the_caller() -> None:
    engine = EngineThread()
    assert engine.call(lambda: 6 * 7) == 42
    with pytest.raises(ValueError, match="bad"):
        engine.call(lambda: (_ for _ in ()).throw(ValueError("bad")))
    token = _var.set("caller's value")
    try:
        assert engine.call(_var.get) == "caller's value"
    finally:
        _var.reset(token)
    assert engine.call(lambda: engine.call(lambda: "nested")) == "nested"  # no deadlock
    engine.stop()
    assert engine.call(threading.get_ident) == threading.get_ident()  # stopped: runs in the caller


def test_an_interrupt_waits_for_the_running_call_then_is_raised() -> None:
    engine = EngineThread()
    started = threading.Event()
    finished: list[bool] = []

    def slow() -> str:
        started.set()
        time.sleep(0.3)
        finished.append(True)
        return "done"

    caller_ident = threading.get_ident()

    def interrupt_soon() -> None:
        started.wait(5)
        import _thread

        assert threading.get_ident() != caller_ident
        _thread.interrupt_main()

    helper = threading.Thread(target=interrupt_soon)
    helper.start()
    with pytest.raises(KeyboardInterrupt):
        engine.call(slow)
    helper.join(5)
    assert finished == [True]  # the call ran to its end before the interrupt was raised
    assert engine.call(lambda: "usable") == "usable"
    engine.stop()


def test_an_abandoned_call_raises_the_interrupt_at_once_and_stops_the_thread() -> None:
    engine = EngineThread()
    release = threading.Event()
    started = threading.Event()

    def long_load() -> str:
        started.set()
        release.wait(10)
        return "loaded"

    def interrupt_soon() -> None:
        started.wait(5)
        import _thread

        _thread.interrupt_main()

    helper = threading.Thread(target=interrupt_soon)
    helper.start()
    begin = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        engine.call(long_load, abandon=True)
    assert time.perf_counter() - begin < 5  # did not wait for the call
    helper.join(5)
    release.set()
    assert engine.call(threading.get_ident) == threading.get_ident()  # stopped: runs in the caller


def test_engine_threads_end_before_the_interpreter_finalizes() -> None:
    """The exit handler stops every engine thread and waits for it: the call that is running
    finishes, and the thread has ended before the interpreter tears itself down. Run in a child
    process (the handler stops every engine of the process)."""
    script = """
import atexit, threading, time
from nextword._runtime import engine_thread
from nextword._runtime.engine_thread import EngineThread

engine = EngineThread("probe")
assert engine.call(threading.get_ident) != threading.get_ident()
worker = engine._worker.thread
done = []

def slow():
    time.sleep(0.5)
    done.append(True)

threading.Thread(target=lambda: engine.call(slow), daemon=True).start()
time.sleep(0.1)
engine_thread._stop_engines_at_exit()
assert done == [True] and not worker.is_alive()
assert engine.call(threading.get_ident) == threading.get_ident()  # stopped: runs in the caller
print("ok")
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr


def test_engine_threads_with_one_shared_key_are_one_thread_until_the_last_stops() -> None:
    """Handles made with the same ``shared`` key run on one thread (one OpenMP team for all the
    models of an engine library); stopping one leaves the others working; the thread ends with
    the last handle, and the next handle of the key starts a new one."""
    a = EngineThread("a", shared="test-shared")
    b = EngineThread("b", shared="test-shared")
    other = EngineThread("c", shared="test-other")
    ident = a.call(threading.get_ident)
    assert b.call(threading.get_ident) == ident != threading.get_ident()
    assert other.call(threading.get_ident) != ident
    assert a.call(lambda: b.call(lambda: "nested")) == "nested"  # no deadlock across handles
    a.stop()
    assert a.call(threading.get_ident) == threading.get_ident()  # this handle: stopped
    assert b.call(threading.get_ident) == ident  # the other still runs on the shared thread
    thread = next(t for t in threading.enumerate() if t.ident == ident)
    b.stop()
    b.join(10)
    assert not thread.is_alive()
    c = EngineThread("c", shared="test-shared")
    assert c.call(threading.current_thread) not in (thread, threading.current_thread())
    c.stop()
    other.stop()
