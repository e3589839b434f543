"""nextword: next-word prediction and text generation with pluggable backends.

>>> from nextword import generate, predict_next            # doctest: +SKIP
>>> generate("I love cats because", max_length=50, no_repeat_ngram_size=2).text  # doctest: +SKIP

Importing nextword never imports torch or llama.cpp: a backend's engine is imported when that
backend is first used.
"""

from __future__ import annotations

from nextword.aio import AsyncTextStream
from nextword.api import generate, load, loaded, predict_next, score, stream, unload
from nextword.async_api import agenerate, apredict_next, ascore, astream
from nextword.backend_spec import BackendSpec, OptionSpec
from nextword.base import BaseGenerator, TextStream
from nextword.capabilities import Capabilities, Support
from nextword.decoding_config import DecodingConfig
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
from nextword.explanation import Explanation, explain
from nextword.hookspecs import hookimpl
from nextword.protocol import ForkableSession, Generator, SupportsSessions
from nextword.registry import BackendInfo, backends, register_plugin, unregister_plugin
from nextword.results import Candidate, Completion, Generation, Prediction, Score, Settings, TokenScore
from nextword.streams import GenerationStream
from nextword.tuning import FinetuneOptions, FinetuneReport, finetune
from nextword.words import predict_words

__version__ = "0.1.0"

__all__ = [
    "AsyncTextStream",
    "BackendInfo",
    "BackendNotFound",
    "BackendSpec",
    "BaseGenerator",
    "Candidate",
    "Capabilities",
    "Completion",
    "ContextLengthExceeded",
    "DecodingConfig",
    "Cancelled",
    "EngineError",
    "ForkableSession",
    "Explanation",
    "FinetuneOptions",
    "FinetuneReport",
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
    "SupportsSessions",
    "TextStream",
    "TokenScore",
    "TrainingInterrupted",
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
    "unload",
    "unregister_plugin",
]
