"""The token-by-token decoding loop shared by backends that expose next-token logits."""

from __future__ import annotations

from collections.abc import Collection, Generator, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from nextword._decoding.processors import LogitsPipeline
from nextword._types.decoding_config import DecodingConfig

__all__ = ["RecomputeSession", "Session", "sample_tokens"]


@runtime_checkable
class Session(Protocol):
    """A model state that has read a sequence of tokens and can give the next-token logits.

    Backends implement this on top of their KV cache so each step costs one token of compute.
    """

    def logits(self) -> npt.NDArray[np.floating]:
        """Raw logits (1-D, vocabulary size) for the token after everything fed so far.

        Callers treat the array as read-only and do not keep it past the next :meth:`feed`
        (an implementation may return a view of the engine's buffer)."""
        ...

    def feed(self, token_id: int) -> None:
        """Append one token to the state."""
        ...


class RecomputeSession:
    """A :class:`Session` that recomputes the whole sequence each step.

    The fallback for engines without a reusable state: correct, but quadratic in length.
    """

    def __init__(self, generator: Any, prompt_ids: Sequence[int]) -> None:
        self._generator = generator
        self._ids = list(prompt_ids)

    def logits(self) -> npt.NDArray[np.floating]:
        return self._generator.next_token_logits(self._ids)

    def feed(self, token_id: int) -> None:
        self._ids.append(token_id)


def sample_tokens(
    session: Session,
    prompt_ids: Sequence[int],
    config: DecodingConfig,
    n_new: int,
    rng: np.random.Generator,
    eos_token_ids: Collection[int] = (),
) -> Generator[int, None, None]:
    """Yield up to ``n_new`` tokens chosen by ``config``; stops right after an EOS token.

    The session is only advanced when the caller asks for another token, so closing the
    iterator early costs nothing.
    """
    pipeline = LogitsPipeline(config, eos_token_ids)
    context = list(prompt_ids)
    for step in range(n_new):
        token = pipeline.next_token(session.logits(), context, step, rng)
        yield token
        if token in eos_token_ids or step + 1 == n_new:
            return
        context.append(token)
        session.feed(token)
