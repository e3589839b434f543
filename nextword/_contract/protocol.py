"""The ``Generator`` protocol: what :func:`nextword.load` returns and every backend provides."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, overload, runtime_checkable

import numpy as np
import numpy.typing as npt

from nextword._contract.capabilities import Capabilities
from nextword._decoding.loop import Session
from nextword._types.decoding_config import DecodingConfig
from nextword._types.results import Generation, Prediction, Score, Settings

if TYPE_CHECKING:
    from nextword._decoding.branches import Branches
    from nextword._decoding.logprobs import TopLogprobs

__all__ = ["AsyncTextStreamLike", "ForkableSession", "Generator", "TextStreamLike"]


@runtime_checkable
class TextStreamLike(Protocol):
    """An iterator of text chunks whose full result is known once it is exhausted."""

    def __iter__(self) -> Iterator[str]: ...

    @property
    def result(self) -> Generation: ...

    @property
    def token_count(self) -> int | None:
        """Tokens generated so far (None where the backend does not count them)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class AsyncTextStreamLike(Protocol):
    """An async iterator of text chunks (:class:`nextword._runtime.async_bridge.AsyncTextStream` in BaseGenerator)."""

    def __aiter__(self) -> AsyncIterator[str]: ...

    async def __anext__(self) -> str: ...

    @property
    def result(self) -> Generation: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Generator(Protocol):
    """A loaded model behind one backend, ready to generate, predict and score.

    Implementations: subclass :class:`nextword.backend.BaseGenerator` (recommended: validation,
    stop strings, streaming, the lifecycle, the conformance behaviours and a working default for
    every engine feature come with it) or implement every member below directly. The core calls
    these members as declared; it never looks for optional ones.
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

    # ---- engine features the core calls (BaseGenerator has a working default for each) ----------

    @property
    def vocab_size(self) -> int | None:
        """Number of token ids the model knows (None only where a backend without full logits
        cannot tell)."""
        ...

    @property
    def model_files(self) -> tuple[str, ...]:
        """Paths of the files the model was read from (a server keeps them out of what it shows)."""
        ...

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called; every call then raises ``InvalidState``."""
        ...

    def open_session(self, prompt_ids: Sequence[int]) -> Session:
        """A session that has read ``prompt_ids`` and extends it one token at a time."""
        ...

    def open_branches(self, prompt_ids: Sequence[int]) -> Branches:
        """The state after ``prompt_ids`` from which several continuations are evaluated."""
        ...

    def sequence_logits(self, token_ids: Sequence[int]) -> npt.NDArray[np.floating]:
        """Raw logits after every prefix of ``token_ids`` (row ``i``: after ``token_ids[: i + 1]``)."""
        ...

    def token_logprobs(self, token_ids: Sequence[int]) -> list[float]:
        """Log-probability of each token after the first, given the tokens before it."""
        ...

    def next_token_top_logprobs(self, token_ids: Sequence[int], n: int) -> TopLogprobs:
        """The ``n`` most likely tokens after ``token_ids`` with their log-probabilities."""
        ...

    def token_bytes(self, token_id: int) -> bytes | None:
        """The bytes ``token_id`` adds to a text (``b""`` for a control token), or None when the
        backend does not know them."""
        ...

    def generate_tokens(
        self, prompt_ids: Sequence[int], config: DecodingConfig | None = None, /, **decoding: Any
    ) -> Generation:
        """:meth:`generate` for one prompt given as token ids."""
        ...

    def stream_tokens(
        self, prompt_ids: Sequence[int], config: DecodingConfig | None = None, /, **decoding: Any
    ) -> TextStreamLike:
        """:meth:`stream` for a prompt given as token ids."""
        ...

    # ---- the public API ---------------------------------------------------------------------------

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
        """:meth:`stream` as an async iterator (:class:`nextword._runtime.async_bridge.AsyncTextStream` in
        BaseGenerator); cancelling the task or closing the iterator stops the engine."""
        ...

    async def apredict_next(self, prompt: str, k: int = 5, *, unit: Literal["word", "token"] = "word") -> Prediction:
        """:meth:`predict_next` for asyncio."""
        ...

    async def ascore(self, text: str) -> Score:
        """:meth:`score` for asyncio."""
        ...


@runtime_checkable
class ForkableSession(Session, Protocol):
    """Optional: a :class:`~nextword._decoding.loop.Session` that can be copied, so several
    continuations of one prompt read the prompt once (the word search forks the prompt's session
    for each path it explores)."""

    def fork(self) -> Session:
        """An independent session in the same state; feeding either leaves the other unchanged."""
        ...
