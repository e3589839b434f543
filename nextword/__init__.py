"""nextword: next-word prediction and text generation with pluggable backends.

>>> from nextword import generate, predict_next            # doctest: +SKIP
>>> generate("I love cats because", max_length=50, no_repeat_ngram_size=2).text  # doctest: +SKIP

This is the public face for applications; ``nextword.backend`` is the one for backend authors,
``nextword.errors`` holds the error hierarchy and ``nextword.testing`` the conformance kit. Every
other module is private.

Importing nextword is cheap: the names below are loaded on first use (the async plumbing, the
word search and the plugin registry included), and a backend's engine (torch, llama.cpp) is
imported only when that backend is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from nextword.errors import (
    BackendNotFound,
    Cancelled,
    ContextLengthExceeded,
    EngineError,
    InvalidConfig,
    InvalidInput,
    InvalidState,
    ModelLoadError,
    NextwordError,
    TrainingInterrupted,
    UnsupportedOption,
)

if TYPE_CHECKING:
    from nextword._analysis.explanation import Explanation, explain
    from nextword._api.async_calls import agenerate, apredict_next, ascore, astream
    from nextword._api.calls import generate, load, loaded, predict_next, score, stream, typing_session, unload
    from nextword._contract.base import BaseGenerator
    from nextword._contract.capabilities import Capabilities, Support
    from nextword._contract.protocol import ForkableSession, Generator
    from nextword._contract.spec import BackendSpec, OptionSpec
    from nextword._contract.text_stream import TextStream
    from nextword._plugins.hooks import hookimpl
    from nextword._plugins.registry import BackendInfo, backends, register_plugin, unregister_plugin
    from nextword._runtime.async_bridge import AsyncTextStream
    from nextword._tuning import FinetuneOptions, FinetuneReport, finetune
    from nextword._types.decoding_config import DecodingConfig
    from nextword._types.results import (
        Candidate,
        Completion,
        Generation,
        Prediction,
        Score,
        Settings,
        TokenScore,
    )
    from nextword._types.streams import GenerationStream
    from nextword._words.search import predict_words
    from nextword._words.typing_session import TypingSession, TypingStats

__version__ = "0.1.0"

# Where each lazily loaded public name lives (a test checks this table against the imports above).
_LAZY: dict[str, str] = {
    "AsyncTextStream": "nextword._runtime.async_bridge",
    "BackendInfo": "nextword._plugins.registry",
    "BackendSpec": "nextword._contract.spec",
    "BaseGenerator": "nextword._contract.base",
    "Candidate": "nextword._types.results",
    "Capabilities": "nextword._contract.capabilities",
    "Completion": "nextword._types.results",
    "DecodingConfig": "nextword._types.decoding_config",
    "Explanation": "nextword._analysis.explanation",
    "FinetuneOptions": "nextword._tuning",
    "FinetuneReport": "nextword._tuning",
    "ForkableSession": "nextword._contract.protocol",
    "Generation": "nextword._types.results",
    "GenerationStream": "nextword._types.streams",
    "Generator": "nextword._contract.protocol",
    "OptionSpec": "nextword._contract.spec",
    "Prediction": "nextword._types.results",
    "Score": "nextword._types.results",
    "Settings": "nextword._types.results",
    "Support": "nextword._contract.capabilities",
    "TextStream": "nextword._contract.text_stream",
    "TokenScore": "nextword._types.results",
    "TypingSession": "nextword._words.typing_session",
    "TypingStats": "nextword._words.typing_session",
    "agenerate": "nextword._api.async_calls",
    "apredict_next": "nextword._api.async_calls",
    "ascore": "nextword._api.async_calls",
    "astream": "nextword._api.async_calls",
    "backends": "nextword._plugins.registry",
    "explain": "nextword._analysis.explanation",
    "finetune": "nextword._tuning",
    "generate": "nextword._api.calls",
    "hookimpl": "nextword._plugins.hooks",
    "load": "nextword._api.calls",
    "loaded": "nextword._api.calls",
    "predict_next": "nextword._api.calls",
    "predict_words": "nextword._words.search",
    "register_plugin": "nextword._plugins.registry",
    "score": "nextword._api.calls",
    "stream": "nextword._api.calls",
    "typing_session": "nextword._api.calls",
    "unload": "nextword._api.calls",
    "unregister_plugin": "nextword._plugins.registry",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nextword' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "AsyncTextStream",
    "BackendInfo",
    "BackendNotFound",
    "BackendSpec",
    "BaseGenerator",
    "Cancelled",
    "Candidate",
    "Capabilities",
    "Completion",
    "ContextLengthExceeded",
    "DecodingConfig",
    "EngineError",
    "Explanation",
    "FinetuneOptions",
    "FinetuneReport",
    "ForkableSession",
    "Generation",
    "GenerationStream",
    "Generator",
    "InvalidConfig",
    "InvalidInput",
    "InvalidState",
    "ModelLoadError",
    "NextwordError",
    "OptionSpec",
    "Prediction",
    "Score",
    "Settings",
    "Support",
    "TextStream",
    "TokenScore",
    "TrainingInterrupted",
    "TypingSession",
    "TypingStats",
    "UnsupportedOption",
    "agenerate",
    "apredict_next",
    "ascore",
    "astream",
    "backends",
    "explain",
    "finetune",
    "generate",
    "hookimpl",
    "load",
    "loaded",
    "predict_next",
    "predict_words",
    "register_plugin",
    "score",
    "stream",
    "typing_session",
    "unload",
    "unregister_plugin",
]
