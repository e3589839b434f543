"""K-quants (q4_k_m, q5_k_m, q6_k) made by llama.cpp's own quantizer from an F32 GGUF file."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Any

from nextword.errors import ModelLoadError
from nextword_llamacpp.convert.gguf_types import LLAMA_QUANT_FTYPES

__all__ = ["import_llama_cpp", "llama_quantize"]


def import_llama_cpp(purpose: str) -> Any:
    """Import llama-cpp-python or raise ModelLoadError naming what it was needed for."""
    try:
        import llama_cpp
    except ImportError as exc:
        raise ModelLoadError(f"llama-cpp-python is needed to {purpose} ({exc}); install nextword[llamacpp]") from exc
    return llama_cpp


def llama_quantize(llama_cpp: Any, src: Path, dst: Path, kind: str, *, progress: bool) -> None:
    """Quantize the GGUF ``src`` into ``dst`` with llama.cpp's quantizer at K-quant type ``kind``.

    llama.cpp picks the per-tensor mix (the ``_m`` variants give some layers more bits) and falls
    back to a 32-block type, or F16, for tensors whose rows are not a multiple of 256. Its log is
    captured, not printed; on failure the error lines it logged are part of the raised message.
    """
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, LLAMA_QUANT_FTYPES[kind])
    llama_cpp.llama_backend_init()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=1, desc=f"Quantizing to {kind.upper()} (llama.cpp)", unit="file")
    from nextword_llamacpp.llama_log import captured_llama_log

    try:
        with captured_llama_log() as log:
            rc = llama_cpp.llama_model_quantize(os.fsencode(src), os.fsencode(dst), ctypes.byref(params))
        if bar is not None:
            bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    if rc != 0:
        raise ModelLoadError(f"llama.cpp could not quantize the model to {kind} (status {rc}){log.detail()}")
