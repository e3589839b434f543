"""``TextStream``: the chunks of one streamed generation, and the record of how it ended."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

from nextword._types.results import Completion, FinishReason, Generation
from nextword.errors import InvalidState

__all__ = ["CompletionStream", "LazyTokens", "SequenceState", "TextStream"]


@dataclasses.dataclass
class SequenceState:
    """What one sequence produced so far: token ids, text chunks, and why it ended."""

    token_ids: list[int] = dataclasses.field(default_factory=list)
    text: list[str] = dataclasses.field(default_factory=list)
    finish_reason: FinishReason = "length"


@dataclasses.dataclass(frozen=True)
class CompletionStream:
    """One sequence as a backend streams it (see ``BaseGenerator.completion_stream``): its text
    chunks, a call that gives the finished :class:`~nextword.Completion` once they are exhausted,
    and optionally a count of the tokens generated so far."""

    chunks: Iterator[str]
    finish: Callable[[], Completion]
    progress: Callable[[], int] | None = None


class TextStream:
    """Text chunks of one generation, as they are produced.

    Iterate to get the chunks; once exhausted, :attr:`result` holds the full
    :class:`~nextword._types.results.Generation` (token ids, finish reason, settings). The chunks
    joined are exactly ``result.text``. Closing the stream early stops the engine.
    """

    def __init__(self, chunks: Iterator[str], finish: Any, progress: Any = None) -> None:
        self._chunks = chunks
        self._finish = finish
        self._progress = progress
        self._result: Generation | None = None
        self._closed = False

    @property
    def token_count(self) -> int | None:
        """Tokens generated so far (None when this stream's backend does not count them): a
        server counts the work of a stream it stops before its end with it."""
        return None if self._progress is None else int(self._progress())

    def __iter__(self) -> Iterator[str]:
        for chunk in self._chunks:
            if chunk:
                yield chunk
        if not self._closed:
            self._result = self._finish()

    @property
    def result(self) -> Generation:
        """The complete generation; only available after the stream was consumed."""
        if self._result is None:
            if self._closed:
                raise InvalidState("the stream was closed before it finished: there is no complete result")
            raise InvalidState(
                "the stream has not been read to its end (not started, or a loop over it was left early); "
                "there is no complete result yet: read the rest of it first"
            )
        return self._result

    def text(self) -> str:
        """Consume the stream and return the whole text."""
        return "".join(self)

    def close(self) -> None:
        """Stop generating (if the stream has not finished, it then has no :attr:`result`)."""
        if self._result is None:
            self._closed = True
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()


class LazyTokens:
    """An iterable that starts a token stream only when iterated (so streams share an RNG in order)."""

    def __init__(self, fn: Any, *args: Any) -> None:
        self._fn = fn
        self._args = args

    def __iter__(self) -> Iterator[int]:
        return iter(self._fn(*self._args))
