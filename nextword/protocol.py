"""The ``Generator`` protocol: what :func:`nextword.load` returns and every backend provides."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, Literal, Protocol, overload, runtime_checkable

import numpy as np
import numpy.typing as npt

from nextword.capabilities import Capabilities
from nextword.decoding.loop import Session
from nextword.decoding_config import DecodingConfig
from nextword.results import Generation, Prediction, Score, Settings

__all__ = ["AsyncTextStreamLike", "ForkableSession", "Generator", "SupportsSessions", "TextStreamLike"]


@runtime_checkable
class TextStreamLike(Protocol):
    """An iterator of text chunks whose full result is known once it is exhausted."""

    def __iter__(self) -> Iterator[str]: ...

    @property
    def result(self) -> Generation: ...

    def close(self) -> None: ...


@runtime_checkable
class AsyncTextStreamLike(Protocol):
    """An async iterator of text chunks (:class:`nextword.aio.AsyncTextStream` in BaseGenerator)."""

    def __aiter__(self) -> AsyncIterator[str]: ...

    async def __anext__(self) -> str: ...

    @property
    def result(self) -> Generation: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Generator(Protocol):
    """A loaded model behind one backend, ready to generate, predict and score.

    Implementations: subclass :class:`nextword.base.BaseGenerator` (recommended: validation,
    stop strings, streaming and the conformance behaviours come with it) or implement these
    members directly.
    """

    @property
    def backend(self) -> str:
        """The backend's registered name."""
        ...

    @property
    def model(self) -> str:
        """The model this generator runs, as given when loading."""
        ...

    @property
    def capabilities(self) -> Capabilities:
        """What this generator supports."""
        ...

    @property
    def settings(self) -> Settings:
        """The backend, model and options this generator was loaded with."""
        ...

    @property
    def eos_token_ids(self) -> frozenset[int]:
        """Token ids that end a text (empty if the model has none)."""
        ...

    @property
    def context_length(self) -> int:
        """Most tokens (prompt plus generated) the model can attend to."""
        ...

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` as the model reads it."""
        ...

    def detokenize(self, token_ids: Sequence[int]) -> str:
        """The text of ``token_ids``."""
        ...

    def next_token_logits(self, token_ids: Sequence[int]) -> npt.NDArray[np.floating]:
        """Raw logits (1-D, vocabulary size) for the token after ``token_ids``."""
        ...

    @overload
    def generate(self, prompt: str, config: DecodingConfig | None = None, /, **decoding: Any) -> Generation: ...

    @overload
    def generate(
        self, prompt: Sequence[str], config: DecodingConfig | None = None, /, **decoding: Any
    ) -> list[Generation]: ...

    def generate(
        self, prompt: str | Sequence[str], config: DecodingConfig | None = None, /, **decoding: Any
    ) -> Generation | list[Generation]:
        """Continue one prompt (returns a Generation) or a list of prompts (returns a list)."""
        ...

    def stream(self, prompt: str, config: DecodingConfig | None = None, /, **decoding: Any) -> TextStreamLike:
        """Continue ``prompt``, yielding text chunks as they are generated."""
        ...

    def predict_next(self, prompt: str, k: int = 5, *, unit: Literal["word", "token"] = "word") -> Prediction:
        """The ``k`` most likely next words (or tokens) after ``prompt``, most likely first."""
        ...

    def score(self, text: str) -> Score:
        """Per-token and total log-likelihood of ``text``."""
        ...

    def close(self) -> None:
        """Release the model's memory. The generator is unusable afterwards."""
        ...

    async def agenerate(
        self, prompt: str | Sequence[str], config: DecodingConfig | None = None, /, **decoding: Any
    ) -> Generation | list[Generation]:
        """:meth:`generate` for asyncio: the engine runs in a worker thread; cancelling the task
        stops it at its next step."""
        ...

    def astream(self, prompt: str, config: DecodingConfig | None = None, /, **decoding: Any) -> AsyncTextStreamLike:
        """:meth:`stream` as an async iterator (:class:`nextword.aio.AsyncTextStream` in
        BaseGenerator); cancelling the task or closing the iterator stops the engine."""
        ...

    async def apredict_next(self, prompt: str, k: int = 5, *, unit: Literal["word", "token"] = "word") -> Prediction:
        """:meth:`predict_next` for asyncio."""
        ...

    async def ascore(self, text: str) -> Score:
        """:meth:`score` for asyncio."""
        ...


@runtime_checkable
class SupportsSessions(Protocol):
    """Optional: a generator that keeps the state of a token sequence (a KV cache) and extends it
    one token at a time. :func:`nextword.explain`, the word search and the decoding loop use it
    when a generator has it (``isinstance(generator, SupportsSessions)``); otherwise they call
    :meth:`Generator.next_token_logits` on the whole sequence. :class:`~nextword.base.BaseGenerator`
    has it (recomputing by default; override it where the engine keeps state)."""

    def open_session(self, prompt_ids: Sequence[int]) -> Session:
        """A session that has read ``prompt_ids``."""
        ...


@runtime_checkable
class ForkableSession(Session, Protocol):
    """Optional: a :class:`~nextword.decoding.loop.Session` that can be copied, so several
    continuations of one prompt read the prompt once (the word search forks the prompt's session
    for each path it explores)."""

    def fork(self) -> Session:
        """An independent session in the same state; feeding either leaves the other unchanged."""
        ...
