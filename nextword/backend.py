"""The public face for backend authors: everything a plugin needs from nextword's core.

A backend subclasses :class:`BaseGenerator`, declares itself once with a :class:`BackendSpec`
(its :class:`Capabilities` and load :class:`OptionSpec` s) and registers the spec from a
:data:`hookimpl`-marked ``register_backends`` hook. The rest is shared runtime a backend may use:

- the engine thread and step scheduler (:class:`EngineThread`, :class:`StepScheduler`,
  :class:`CancelScope`, :func:`check_cancelled`, :func:`run_concurrently`) and CPU defaults
  (:func:`default_threads`);
- input checks (:func:`check_length`, :func:`encode_text`, :func:`utf8_bytes`);
- decoding helpers (:func:`sample_tokens`, :func:`log_softmax`, :class:`TopLogprobs`) and the
  grid of blocks a prompt is evaluated in (:func:`prompt_blocks`, :func:`shared_block_end`), so
  that a prompt extending a cached one costs one short step with the numbers of a fresh one;
- the one table of OpenAI request fields and the config options they set
  (:data:`OPENAI_FIELDS`, :func:`openai_field_names`);
- model location (:func:`locate_model`, :func:`from_hub`, :func:`looks_like_path`), the cache
  folder (:func:`cache_dir`, :func:`cache_lock`) and a GGUF file's header (:func:`read_gguf_header`: its metadata
  and tensor records, checked, without reading the weights);
- the fine-tuning specs through which a plugin offers training and export (:class:`TrainerSpec`,
  :class:`ExporterSpec`, ...).

The built-in backends import the core only through ``nextword``, ``nextword.backend``,
``nextword.errors`` and ``nextword.testing``, exactly as a third-party backend would; every other
module of the core is private and may change without notice.
"""

from __future__ import annotations

from nextword._contract.base import BaseGenerator
from nextword._contract.cache import CACHE_DIR_ENV, cache_dir, cache_lock
from nextword._contract.capabilities import Capabilities, Support
from nextword._contract.checks import check_length, encode_text, utf8_bytes
from nextword._contract.gguf_header import GGUFHeader, GGUFScalar, GGUFTensor, read_gguf_header
from nextword._contract.model_location import from_hub, locate_model, looks_like_path
from nextword._contract.protocol import ForkableSession, Generator
from nextword._contract.spec import BackendSpec, OptionSpec
from nextword._contract.text_stream import CompletionStream, TextStream
from nextword._decoding.blocks import BLOCK_SIZES, prompt_blocks, shared_block_end
from nextword._decoding.logprobs import TopLogprobs
from nextword._decoding.loop import RecomputeSession, Session, sample_tokens
from nextword._decoding.processors import log_softmax
from nextword._plugins.hooks import hookimpl
from nextword._runtime.cpu import default_threads
from nextword._runtime.engine_thread import EngineThread
from nextword._runtime.scheduler import CancelScope, StepScheduler, check_cancelled, run_concurrently
from nextword._tuning import (
    Document,
    ExporterSpec,
    ExportResult,
    FinetuneOptions,
    TrainerSpec,
    TrainingJob,
    TrainingOutcome,
    hold_out,
    overfit_warning,
    pack,
    split_single_document,
)
from nextword._types.decoding_config import DecodingConfig
from nextword._types.openai_fields import OPENAI_FIELDS, OpenAIField, openai_field_names
from nextword._words.complete import CompleteMode

__all__ = [
    "BLOCK_SIZES",
    "CACHE_DIR_ENV",
    "OPENAI_FIELDS",
    "OpenAIField",
    "BackendSpec",
    "BaseGenerator",
    "CancelScope",
    "Capabilities",
    "CompleteMode",
    "DecodingConfig",
    "Document",
    "EngineThread",
    "ExportResult",
    "ExporterSpec",
    "FinetuneOptions",
    "ForkableSession",
    "GGUFHeader",
    "GGUFScalar",
    "GGUFTensor",
    "Generator",
    "OptionSpec",
    "RecomputeSession",
    "Session",
    "StepScheduler",
    "Support",
    "CompletionStream",
    "TextStream",
    "TopLogprobs",
    "TrainerSpec",
    "TrainingJob",
    "TrainingOutcome",
    "cache_dir",
    "cache_lock",
    "check_cancelled",
    "check_length",
    "default_threads",
    "encode_text",
    "from_hub",
    "hold_out",
    "hookimpl",
    "locate_model",
    "log_softmax",
    "openai_field_names",
    "prompt_blocks",
    "read_gguf_header",
    "looks_like_path",
    "overfit_warning",
    "pack",
    "run_concurrently",
    "sample_tokens",
    "shared_block_end",
    "split_single_document",
    "utf8_bytes",
]
