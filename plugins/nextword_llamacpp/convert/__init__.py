"""Convert a local Hugging Face checkpoint to GGUF, quantize it, and check the result.

:func:`convert` writes a GGUF file that llama.cpp runs: the model's hyper-parameters, its
tokenizer (taken from the checkpoint's own tokenizer files, so a model with a custom vocabulary
converts too) and its tensors under llama.cpp's names. ``f32``, ``f16``, ``q8_0`` and ``q4_0``
are written directly with the ``gguf`` package; the K-quants (``q4_k_m``, ``q5_k_m``, ``q6_k``)
are made by llama.cpp's own quantizer from an F32 intermediate. :func:`verify` runs the same
token ids through transformers (float32) and through llama.cpp on the GGUF file and reports how
far apart the two next-token distributions are.

One module per job:

* ``gguf_types``: the output types (:data:`GGUF_TYPES`); imports nothing heavy;
* ``checkpoint``: a checkpoint's JSON files and weights (safetensors with numpy, or torch pickles);
* ``bpe_vocab``: a byte-level BPE tokenizer read for GGUF;
* ``architectures``: one module per architecture (``gpt2``), each mapping a checkpoint to a
  ``source_model.SourceModel``; adding an architecture is adding a module there;
* ``gguf_writer``: the GGUF file written with gguf-py; ``quantize``: llama.cpp's K-quant quantizer;
* ``atomic``: outputs that appear only when complete; ``conversion``: :func:`convert` itself;
* ``verification``: :func:`verify` and :class:`VerifyReport`.

This package's ``__init__`` imports only :mod:`.gguf_types`; :func:`convert`, :func:`verify` and
:class:`VerifyReport` load their modules on first access. Heavy dependencies (``gguf``,
``llama_cpp``, ``torch``, ``transformers``) are imported only inside the functions that need them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from nextword_llamacpp.convert.gguf_types import GGUF_TYPES

if TYPE_CHECKING:
    from nextword_llamacpp.convert.conversion import convert
    from nextword_llamacpp.convert.verification import VerifyReport, verify

__all__ = ["GGUF_TYPES", "VerifyReport", "convert", "verify"]

_LAZY = {
    "convert": "nextword_llamacpp.convert.conversion",
    "verify": "nextword_llamacpp.convert.verification",
    "VerifyReport": "nextword_llamacpp.convert.verification",
}


def __getattr__(name: str) -> Any:
    """Load :func:`convert`, :func:`verify` and :class:`VerifyReport` on first access."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
