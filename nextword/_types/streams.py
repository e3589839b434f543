"""``GenerationStream``: what :func:`nextword.stream` returns."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from nextword._contract.protocol import TextStreamLike
from nextword._types.results import Generation, Settings

__all__ = ["GenerationStream"]


class GenerationStream:
    """Text chunks of one generation, as a backend's stream produces them, whose final
    :attr:`result` carries the effective settings (backend, model, options, decoding, and where
    each came from).

    Iterate to get the chunks (they join to exactly ``result.text``); :meth:`close` stops the
    engine early.
    """

    def __init__(self, inner: TextStreamLike, settings: Settings) -> None:
        """Wrap the backend's stream ``inner``; ``settings`` replace those of its result."""
        self._inner = inner
        self._settings = settings

    def __iter__(self) -> Iterator[str]:
        return iter(self._inner)

    @property
    def result(self) -> Generation:
        """The complete generation with the effective settings; available once the stream is consumed."""
        return dataclasses.replace(self._inner.result, settings=self._settings)

    @property
    def token_count(self) -> int | None:
        """Tokens generated so far (None where the backend does not count them)."""
        return self._inner.token_count

    def text(self) -> str:
        """Consume the stream and return the whole text."""
        return "".join(self)

    def close(self) -> None:
        """Stop the generation early."""
        self._inner.close()
