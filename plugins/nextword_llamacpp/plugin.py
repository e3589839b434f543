"""Registers the ``llamacpp`` backend through nextword's public hooks.

Load options (``nextword.load("llamacpp", model, **options)``, ``[backends.llamacpp]`` in a config
file, or ``--option`` on the command line):

``n_ctx``
    Context window in tokens. Default: the model's training context, capped at 4096. For models
    with a learned position table (GPT-2) it may not exceed the training context.
``threads``
    CPU threads, for generation and prompt evaluation alike. Default: one per physical core this
    process may use, within its cgroup CPU quota (:func:`nextword._runtime.cpu.default_threads`; 2 on a
    2-core machine, where llama-cpp-python's own ``cpu_count() // 2`` gives 1). More threads than
    free cores is much slower, not faster: ggml's threads wait for each other at every step.
``parallel``
    Sequences the context holds, each with its own KV cells: concurrent calls (threads, a batch
    of prompts, ``num_return_sequences``) decode their steps together, one ``llama_decode`` for
    all of them. Default: as many as fit 1 GiB of KV cache at ``n_ctx`` tokens each, at most 8.
``batching``
    ``exact`` (default): the steps of different sequences share a decode only in groups that
    were measured (when the model is loaded) to give bit-identical logits to a step alone, so a result never
    depends on what else runs. ``fast``: every active sequence in one decode; faster for weight
    types whose kernels change with the row count (K-quants), and results may then differ in
    the last bits from a call alone (see the concurrency docs for the measured divergence).
``kv_type``
    Element type of the KV cache, for keys and values alike: ``f16`` (llama.cpp's default),
    ``f32`` (closest to the reference numerics), ``bf16``, or a quantized type (``q8_0``,
    ``q5_1``, ``q5_0``, ``q4_1``, ``q4_0``, ``iq4_nl``), which needs flash attention.
``flash_attn``
    Use flash attention. Default: on exactly when ``kv_type`` is quantized (llama.cpp requires it
    there), off otherwise, as in llama-cpp-python. On a CPU it evaluates prompts faster at every
    length, and one-token steps faster up to a few hundred tokens of context (slower beyond), but
    its numbers are further from the reference: on Gemma 3 270M the KL divergence from the
    float32 model grows by a quarter (see the concurrency docs).
``n_gpu_layers``
    Layers offloaded to the GPU, ``-1`` for all. Default 0. Needs a GPU build of
    llama-cpp-python; a CPU-only build refuses a non-zero value rather than ignoring it.
``n_batch``
    Most tokens handed to llama.cpp in one evaluation (prompts and scoring). Default 512.
``quant``
    When ``model`` is a Hugging Face GPT-2 folder (or hub id), the GGUF type it is converted to,
    once, into the cache: one of ``f32``, ``f16``, ``q8_0`` (default), ``q4_0``, ``q4_k_m``,
    ``q5_k_m``, ``q6_k``.
``cache_dir``
    Folder for converted GGUF files. Default: ``$NEXTWORD_CACHE_DIR/gguf`` when that variable is
    set, else the user cache folder ``nextword/gguf``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

from nextword import BackendSpec, Capabilities, ModelLoadError, Support, hookimpl
from nextword_llamacpp.options import KV_TYPES, OPTIONS

__all__ = [
    "CAPABILITIES",
    "SPEC",
    "DEFAULT_MODEL",
    "INSTALL_HINT",
    "KV_TYPES",
    "OPTIONS",
    "register_backends",
    "register_commands",
]

DEFAULT_MODEL = "gpt2"

INSTALL_HINT = "CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" pip install 'nextword[llamacpp]'"

#: Every decoding option runs through nextword's shared decoding loop (Hugging Face semantics)
#: on top of llama.cpp's next-token logits; llama.cpp's own samplers are not used, because their
#: semantics differ (top-k before temperature, min_keep, penalty windows, ...).
CAPABILITIES = Capabilities.all(Support.EMULATED)


def _check() -> str | None:
    """None when llama-cpp-python and gguf are installed, else why not (with the install command).

    Only looks the modules up: ``nextword backends`` must stay fast and must not load llama.cpp's
    shared library. A build that is installed but cannot be imported is reported when a model is
    loaded (:class:`~nextword.ModelLoadError`, same hint).
    """
    for module, what in (("llama_cpp", "llama-cpp-python"), ("gguf", "gguf")):
        if importlib.util.find_spec(module) is None:
            return f"{what} is not installed; install it with {INSTALL_HINT}"
    return None


def _load(model: str, **options: Any) -> Any:
    try:
        from nextword_llamacpp.generator import LlamaCppGenerator
    except (ImportError, OSError) as exc:  # a broken llama-cpp-python build fails to load its library
        raise ModelLoadError(
            f"llama-cpp-python is installed but cannot be imported ({type(exc).__name__}: {exc}); "
            f"reinstall it with {INSTALL_HINT}"
        ) from exc
    return LlamaCppGenerator.load(model, spec=SPEC, **options)


#: The backend's one declaration: name, default model, options and capabilities (the
#: generators it loads report them: the spec is passed on to each).
SPEC = BackendSpec(
    name="llamacpp",
    load=_load,
    default_model=DEFAULT_MODEL,
    description="llama.cpp through llama-cpp-python (.gguf files; GPT-2 folders are converted once)",
    options=OPTIONS,
    capabilities=CAPABILITIES,
    check=_check,
)


@hookimpl
def register_backends(register: Callable[[BackendSpec], None]) -> None:
    """Register the llamacpp backend."""
    register(SPEC)


@hookimpl
def register_commands(cli: Any) -> None:
    """Add ``nextword convert`` (Hugging Face GPT-2 -> GGUF) to the command line."""
    from nextword_llamacpp.commands import convert_command

    cli.add_command(convert_command)


def _export_gguf(model_dir: Any, out_path: Any, kind: str) -> Any:
    from nextword_llamacpp.convert import convert

    return convert(model_dir, out_path, type=kind)


def _verify_gguf(model_dir: Any, gguf_path: Any) -> Any:
    from nextword_llamacpp.convert import verify

    return verify(model_dir, gguf_path)


def _check_export() -> str | None:
    for module in ("gguf", "llama_cpp", "torch", "transformers"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed; GGUF export and its check need nextword[hf,llamacpp]"
    return None


def _gguf_accepts(config: dict[str, Any]) -> str | None:
    from nextword_llamacpp.convert.architectures import supported_model_types

    model_type = config.get("model_type")
    supported = supported_model_types()
    if model_type in supported:
        return None
    return f"nextword's GGUF converter does not write model_type {model_type!r} (it writes {', '.join(supported)})"


@hookimpl
def register_exporters(register: Callable[[Any], None]) -> None:
    """Register GGUF export (nextword's converter, then its verify report against the folder)."""
    from nextword.backend import ExporterSpec
    from nextword_llamacpp.convert import GGUF_TYPES

    register(
        ExporterSpec(
            name="gguf",
            types=GGUF_TYPES,
            export=_export_gguf,
            verify=_verify_gguf,
            check=_check_export,
            accepts=_gguf_accepts,
        )
    )
