"""K-quants (q4_k_m, q5_k_m, q6_k) made by llama.cpp's own quantizer from an F32 GGUF file."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from nextword.errors import ModelLoadError
from nextword_llamacpp.convert.gguf_types import LLAMA_QUANT_FTYPES

__all__ = ["import_llama_cpp", "llama_quantize", "quantize_here"]


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

    The quantizer runs in a child process: a C call cannot be interrupted, so Ctrl-C or a
    termination signal would otherwise wait for the whole quantization. An interruption here
    kills the child at once and propagates (the caller removes the partial ``dst``).
    """
    del llama_cpp  # imported by the caller to check it is installed; the child imports its own
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=1, desc=f"Quantizing to {kind.upper()} (llama.cpp)", unit="file")
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, os.fsdecode(src), os.fsdecode(dst), kind],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = child.communicate()
        if bar is not None and child.returncode == 0:
            bar.update(1)
    except BaseException:  # Ctrl-C, a termination signal turned into an exception, anything
        child.kill()
        child.wait()
        raise
    finally:
        if bar is not None:
            bar.close()
    if child.returncode != 0:
        detail = out.strip() or (err.strip().splitlines() or [f"exit status {child.returncode}"])[-1]
        raise ModelLoadError(f"llama.cpp could not quantize the model to {kind} ({detail})")


_CHILD = """
import signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what an interruption does
from nextword_llamacpp.convert.quantize import quantize_here
sys.exit(quantize_here(sys.argv[1], sys.argv[2], sys.argv[3]))
"""


def quantize_here(src: str, dst: str, kind: str) -> int:
    """Run llama.cpp's quantizer in this process (the child's side of :func:`llama_quantize`);
    returns an exit status and prints what went wrong on failure."""
    llama_cpp = import_llama_cpp(f"quantize to {kind}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, LLAMA_QUANT_FTYPES[kind])
    llama_cpp.llama_backend_init()
    from nextword_llamacpp.llama_log import captured_llama_log

    with captured_llama_log() as log:
        rc = llama_cpp.llama_model_quantize(os.fsencode(src), os.fsencode(dst), ctypes.byref(params))
    if rc != 0:
        print(f"status {rc}{log.detail()}")
        return 1
    return 0
