"""The top-level async functions: ``agenerate``, ``astream``, ``apredict_next``, ``ascore``.

Each is its synchronous namesake of :mod:`nextword._api.calls` run in nextword's worker threads (see
:mod:`nextword._runtime.async_bridge`): settings resolution and the model load happen there too, so the event loop
never waits for an engine. Cancelling the awaiting task stops the engine at its next step.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal, overload

from nextword._api import calls as api
from nextword._runtime.async_bridge import AsyncTextStream, run_in_worker
from nextword._types.decoding_config import DecodingConfig
from nextword._types.results import Generation, Prediction, Score

__all__ = ["agenerate", "apredict_next", "ascore", "astream"]


@overload
async def agenerate(
    prompt: str,
    *,
    backend: str | None = ...,
    model: str | os.PathLike[str] | None = ...,
    config: DecodingConfig | None = ...,
    options: Mapping[str, Any] | None = ...,
    **decoding: Any,
) -> Generation: ...


@overload
async def agenerate(
    prompt: Sequence[str],
    *,
    backend: str | None = ...,
    model: str | os.PathLike[str] | None = ...,
    config: DecodingConfig | None = ...,
    options: Mapping[str, Any] | None = ...,
    **decoding: Any,
) -> list[Generation]: ...


async def agenerate(
    prompt: str | Sequence[str],
    *,
    backend: str | None = None,
    model: str | os.PathLike[str] | None = None,
    config: DecodingConfig | None = None,
    options: Mapping[str, Any] | None = None,
    **decoding: Any,
) -> Generation | list[Generation]:
    """:func:`nextword.generate` for asyncio (same arguments, same result)."""
    return await run_in_worker(
        api.generate, prompt, backend=backend, model=model, config=config, options=options, **decoding
    )


def astream(
    prompt: str,
    *,
    backend: str | None = None,
    model: str | os.PathLike[str] | None = None,
    config: DecodingConfig | None = None,
    options: Mapping[str, Any] | None = None,
    **decoding: Any,
) -> AsyncTextStream:
    """:func:`nextword.stream` for ``async for``: see :class:`nextword._runtime.async_bridge.AsyncTextStream`
    (the model is loaded, and the options checked, at the first iteration)."""
    return AsyncTextStream(
        lambda: api.stream(prompt, backend=backend, model=model, config=config, options=options, **decoding)
    )


async def apredict_next(
    prompt: str,
    k: int = 5,
    *,
    unit: Literal["word", "token"] = "word",
    beam_width: int | None = None,
    min_prob: float = 0.0,
    backend: str | None = None,
    model: str | os.PathLike[str] | None = None,
    options: Mapping[str, Any] | None = None,
) -> Prediction:
    """:func:`nextword.predict_next` for asyncio (same arguments, same result)."""
    return await run_in_worker(
        api.predict_next,
        prompt,
        k,
        unit=unit,
        beam_width=beam_width,
        min_prob=min_prob,
        backend=backend,
        model=model,
        options=options,
    )


async def ascore(
    text: str,
    *,
    backend: str | None = None,
    model: str | os.PathLike[str] | None = None,
    options: Mapping[str, Any] | None = None,
) -> Score:
    """:func:`nextword.score` for asyncio (same arguments, same result)."""
    return await run_in_worker(api.score, text, backend=backend, model=model, options=options)
