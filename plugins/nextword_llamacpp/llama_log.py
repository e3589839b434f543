"""llama.cpp's log, captured: its warnings and errors are collected while a block runs (and kept
off stderr), so that a failure can name what llama.cpp said about it.

llama-cpp-python's own log filter maps current ggml log levels wrongly (it prints warnings and
hides errors), so nextword collects the lines itself instead of relying on ``verbose``.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Iterator
from typing import Any

import llama_cpp

__all__ = ["LlamaLog", "captured_llama_log"]

# ggml_log_level values.
_WARN, _ERROR, _CONT = 3, 4, 5


class LlamaLog:
    """The warning and error lines llama.cpp logged while captured, with their ggml levels."""

    def __init__(self) -> None:
        """Start empty."""
        self.lines: list[tuple[int, str]] = []
        self.interrupted: KeyboardInterrupt | None = None  # raised while llama.cpp was logging
        self._keep = False  # whether the last line was kept, so that its continuation joins it

    def add(self, level: int, text: str) -> None:
        """Record one log call: warnings and errors are kept, a continuation joins a kept line."""
        if level == _CONT:
            if self._keep and self.lines:
                prev_level, prev = self.lines[-1]
                self.lines[-1] = (prev_level, prev + text)
            return
        self._keep = level in (_WARN, _ERROR)
        if self._keep:
            self.lines.append((level, text))

    def detail(self, most: int = 3) -> str:
        """``" (llama.cpp: <lines>)"`` with the last ``most`` error lines (warning lines when no
        error was logged), or an empty string when llama.cpp said nothing of either."""
        for wanted in (_ERROR, _WARN):
            found = [text.strip() for level, text in self.lines if level == wanted and text.strip()]
            if found:
                return f" (llama.cpp: {'; '.join(found[-most:])})"
        return ""


# llama.cpp's log sink is one per process, and llama-cpp-python's quiet loading points the
# process's stdout/stderr at /dev/null while it runs: neither may overlap between threads. A
# capture holds this lock throughout, so model loads and quantizations run one at a time and each
# restores exactly the sink it replaced (freeing a callback still installed would crash).
_LOCK = threading.RLock()


@contextlib.contextmanager
def captured_llama_log() -> Iterator[LlamaLog]:
    """Route llama.cpp's log into a :class:`LlamaLog` while the block runs, then restore the
    sink that was set before (llama-cpp-python's own, usually). Blocks of different threads run
    one after the other; put llama.cpp model loading and quantization inside one."""
    with _LOCK, _capture() as log:
        yield log


@contextlib.contextmanager
def _capture() -> Iterator[LlamaLog]:
    log = LlamaLog()
    old_callback = llama_cpp.llama_log_callback()
    old_user_data = ctypes.c_void_p()
    llama_cpp.llama_log_get(ctypes.byref(old_callback), ctypes.byref(old_user_data))

    @llama_cpp.llama_log_callback
    def collect(level: int, text: bytes | None, user_data: Any) -> None:
        # Never raise into C: ctypes would print the exception and carry on. A Ctrl-C (or a
        # termination signal turned into an exception) that lands here is kept for later.
        try:
            log.add(int(level), (text or b"").decode("utf-8", "replace"))
        except KeyboardInterrupt as exc:
            log.interrupted = log.interrupted or exc
        except BaseException:  # noqa: S110 - a log line is not worth failing the engine call
            pass

    llama_cpp.llama_log_set(collect, None)
    try:
        yield log
    finally:
        llama_cpp.llama_log_set(old_callback, old_user_data)
    if log.interrupted is not None:  # the engine call finished; now honour the interruption
        raise log.interrupted
