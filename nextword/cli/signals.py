"""Termination signals in the command line: SIGTERM and SIGHUP become an exception, like Ctrl-C.

Python's default for both is to end the process at once, skipping every ``finally`` block: a
conversion would leave its temporary file behind. While a command runs they raise
:class:`Terminated` instead, so that clean-up runs; the CLI then exits with ``128 + signal``.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

__all__ = ["HANDLED", "Terminated", "exit_status", "termination_signals_raise"]

HANDLED = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None)
"""The signals turned into :class:`Terminated` (those this platform has)."""


class Terminated(KeyboardInterrupt):
    """The process received a termination signal. A :class:`KeyboardInterrupt`, so that code
    which lets Ctrl-C through (and cleans up on the way) does the same for it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    def __str__(self) -> str:
        return f"terminated by {signal.Signals(self.signum).name}"


def exit_status(exc: KeyboardInterrupt) -> int:
    """The shell's status for an interruption: 128 + the signal number (130 for Ctrl-C)."""
    return 128 + (exc.signum if isinstance(exc, Terminated) else signal.SIGINT)


@contextlib.contextmanager
def termination_signals_raise() -> Iterator[None]:
    """While the block runs (in the main thread), SIGTERM and SIGHUP raise :class:`Terminated`;
    the previous handlers come back afterwards. Elsewhere than the main thread it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated(signum)

    previous = {}
    for signum in HANDLED:
        current = signal.getsignal(signum)
        if current is signal.SIG_IGN:  # e.g. started under nohup: keep ignoring it
            continue
        previous[signum] = current
        signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
