"""Loading a GGUF model into llama.cpp for :meth:`LlamaCppGenerator.load
<nextword_llamacpp.generator.LlamaCppGenerator.load>`, in named steps: check the load options,
find the file, size the context, open it in llama.cpp, bound the usable context, and make the
context of ``parallel`` sequences that evaluates everything (:class:`~nextword_llamacpp.multiseq.SeqPool`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gguf
import llama_cpp

from nextword.backend import default_threads
from nextword.errors import InvalidConfig, ModelLoadError
from nextword_llamacpp.gguf_check import GGUFInfo
from nextword_llamacpp.llama_log import captured_llama_log
from nextword_llamacpp.locate import locate_gguf
from nextword_llamacpp.multiseq import BATCH_MODES, SeqPool, default_parallel
from nextword_llamacpp.options import KV_TYPES

__all__ = ["MAX_DEFAULT_N_CTX", "LoadedModel", "default_threads", "open_model"]

#: Default context window cap, for models trained on longer contexts (the KV cache grows with it).
MAX_DEFAULT_N_CTX = 4096

# Most logits (floats) requested from llama.cpp in one scoring call: its output buffer holds them all.
SCORE_LOGITS_BUDGET = 8 * 1024 * 1024

# Architectures whose positions come from a learned table: llama.cpp cannot run them past it.
LEARNED_POSITIONS = frozenset({"gpt2", "starcoder"})


@dataclass(frozen=True)
class LoadedModel:
    """A model opened by :func:`open_model`: the ``llama_cpp.Llama``, its checked GGUF header,
    the context length nextword may use, the effective load options, and the pool of sequences
    (a context of its own) that evaluates every request."""

    llama: Any
    info: GGUFInfo
    context_length: int
    options: dict[str, Any]
    pool: SeqPool


def open_model(
    model: str,
    *,
    n_ctx: int | None = None,
    threads: int | None = None,
    kv_type: str = "f16",
    flash_attn: bool | None = None,
    n_gpu_layers: int = 0,
    n_batch: int = 512,
    quant: str = "q8_0",
    cache_dir: str | None = None,
    parallel: int | None = None,
    batching: str = "exact",
) -> LoadedModel:
    """Open ``model`` (see :func:`~nextword_llamacpp.locate.locate_gguf`) in llama.cpp with the
    plugin's load options (documented in :mod:`nextword_llamacpp.plugin`).

    Raises:
        ModelLoadError: the model cannot be found, converted, validated or loaded by llama.cpp.
        InvalidConfig: an option value cannot work with this model or this llama.cpp build.
    """
    flash_attn = check_options(
        kv_type=kv_type, flash_attn=flash_attn, n_gpu_layers=n_gpu_layers, n_ctx=n_ctx, threads=threads,
        n_batch=n_batch, parallel=parallel, batching=batching,
    )  # fmt: skip
    info = locate_gguf(model, quant=quant, cache_dir=cache_dir)
    ctx = context_size(info, n_ctx)
    threads = threads or default_threads()
    llama = _open_llama(
        info, threads=threads, kv_type=kv_type, flash_attn=flash_attn, n_gpu_layers=n_gpu_layers,
    )  # fmt: skip
    limit = usable_context(llama, info, ctx)
    slots = parallel or default_parallel(llama.model, limit, kv_type)
    try:
        with captured_llama_log() as log:
            pool = SeqPool.create(
                llama, seq_len=limit, n_slots=slots, n_batch=min(n_batch, limit), mode=batching,  # type: ignore[arg-type]
                threads=threads, logits_budget=SCORE_LOGITS_BUDGET, detail=log.detail,
            )  # fmt: skip
    except BaseException:
        llama.close()
        raise
    options = {
        "n_ctx": n_ctx,
        "threads": threads,
        "kv_type": kv_type,
        "flash_attn": flash_attn,
        "n_gpu_layers": n_gpu_layers,
        "n_batch": n_batch,
        "quant": quant,
        "cache_dir": cache_dir,
        "parallel": slots,
        "batching": batching,
    }
    return LoadedModel(llama, info, pool.seq_len, options, pool)


def check_options(
    *,
    kv_type: str,
    flash_attn: bool | None,
    n_gpu_layers: int,
    n_ctx: int | None,
    threads: int | None,
    n_batch: int,
    parallel: int | None = None,
    batching: str = "exact",
) -> bool:
    """Refuse option values that cannot work here; returns the effective ``flash_attn`` (on
    exactly when the KV cache is quantized, unless given)."""
    if kv_type not in KV_TYPES:
        raise InvalidConfig(f"llamacpp option 'kv_type' must be one of {', '.join(KV_TYPES)}, got {kv_type!r}")
    quantized_kv = kv_type not in ("f16", "f32", "bf16")
    if flash_attn is None:
        flash_attn = quantized_kv
    elif quantized_kv and not flash_attn:
        raise InvalidConfig(f"kv_type={kv_type!r} (a quantized KV cache) needs flash attention; drop flash_attn=False")
    if n_gpu_layers and not llama_cpp.llama_supports_gpu_offload():
        raise InvalidConfig(
            f"n_gpu_layers={n_gpu_layers} asks for GPU offload, but this llama-cpp-python build has no GPU "
            'support; reinstall it with e.g. CMAKE_ARGS="-DGGML_CUDA=on", or use n_gpu_layers=0'
        )
    if batching not in BATCH_MODES:
        raise InvalidConfig(f"llamacpp option 'batching' must be one of {', '.join(BATCH_MODES)}, got {batching!r}")
    for name, value in (("n_ctx", n_ctx), ("threads", threads), ("n_batch", n_batch), ("parallel", parallel)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InvalidConfig(f"llamacpp option {name!r} must be a positive integer, got {value!r}")
    return flash_attn


def context_size(info: GGUFInfo, n_ctx: int | None) -> int:
    """The context llama.cpp is asked for: ``n_ctx``, or the training context capped at
    :data:`MAX_DEFAULT_N_CTX`. A learned position table cannot be run past its length."""
    train = info.context_length
    if n_ctx is None:
        return min(train or MAX_DEFAULT_N_CTX, MAX_DEFAULT_N_CTX)
    if train and n_ctx > train and info.architecture in LEARNED_POSITIONS:
        raise InvalidConfig(
            f"n_ctx={n_ctx} exceeds the {train} positions {info.architecture} was trained with; "
            f"its position table has no more (use n_ctx <= {train})"
        )
    return n_ctx


def _open_llama(info: GGUFInfo, *, threads: int, kv_type: str, flash_attn: bool, n_gpu_layers: int) -> Any:
    """``llama_cpp.Llama`` on the checked file; llama.cpp's log goes into the error message.
    Its own context only serves as the template of the pool's: it is kept small."""
    kv = gguf.GGMLQuantizationType[KV_TYPES[kv_type]].value
    kwargs: dict[str, Any] = {
        "model_path": str(info.path),
        "n_ctx": 256,
        "n_batch": 8,
        "n_ubatch": 8,
        "n_gpu_layers": n_gpu_layers,
        "flash_attn": flash_attn,
        "type_k": kv,
        "type_v": kv,
        "logits_all": False,
        "verbose": False,
        # The same count for prompts: more threads than free cores makes ggml's spinning
        # barriers wait for descheduled threads (a 4-token prompt took 0.37 s instead of 0.5 ms
        # with 2 threads on 2 busy cores).
        "n_threads": threads,
        "n_threads_batch": threads,
    }
    with captured_llama_log() as log:
        try:
            return llama_cpp.Llama(**kwargs)
        except Exception as exc:  # llama-cpp-python raises ValueError / RuntimeError on NULL
            raise ModelLoadError(f"llama.cpp could not load {str(info.path)!r}: {exc}{log.detail()}") from exc


def usable_context(llama: Any, info: GGUFInfo, requested: int) -> int:
    """Tokens nextword lets a request use: never past the position table."""
    limit = requested
    n_train = int(llama_cpp.llama_model_n_ctx_train(llama.model))
    if n_train > 0 and info.architecture in LEARNED_POSITIONS:
        limit = min(limit, n_train)
    return limit
