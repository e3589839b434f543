"""Stop strings: cut generated text exactly before the first stop string, even when the stop
string spans several tokens, while streaming as much text as can be known to be safe."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["StopMatcher"]


class StopMatcher:
    """Watches text as it arrives and finds the first occurrence of any stop string.

    :meth:`feed` returns the text that can be released now, holding back a tail that could still
    be the start of a stop string; once a stop string is found it returns the text before it and
    :attr:`stopped` becomes true. :meth:`flush` releases the held tail at the end.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self._pending = ""
        self.stopped = False
        """True once a stop string was found; nothing more is emitted after that."""

    def feed(self, text: str) -> str:
        """Add ``text``; return what is safe to emit."""
        if self.stopped:
            return ""
        if not self.stops:
            return text
        buf = self._pending + text
        cut = min((i for i in (buf.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self._pending = ""
            return buf[:cut]
        keep = self._held_tail(buf)
        self._pending = buf[len(buf) - keep :] if keep else ""
        return buf[: len(buf) - keep]

    def flush(self) -> str:
        """Everything still held back (the text ended without a stop string)."""
        out, self._pending = self._pending, ""
        return "" if self.stopped else out

    def _held_tail(self, buf: str) -> int:
        """Length of the longest suffix of ``buf`` that is a proper prefix of a stop string."""
        best = 0
        for s in self.stops:
            for n in range(min(len(s) - 1, len(buf)), best, -1):
                if buf.endswith(s[:n]):
                    best = n
                    break
        return best
