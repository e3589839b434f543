"""The llamacpp backend's load options (described in :mod:`nextword_llamacpp.plugin`) and the KV
cache types they accept. Imports nothing heavy: the plugin reads it to register the backend."""

from __future__ import annotations

from nextword import OptionSpec
from nextword_llamacpp.convert.gguf_types import GGUF_TYPES

__all__ = ["KV_TYPES", "OPTIONS"]

#: KV cache element types: the option value -> ggml type name.
KV_TYPES: dict[str, str] = {
    "f16": "F16",
    "f32": "F32",
    "bf16": "BF16",
    "q8_0": "Q8_0",
    "q5_1": "Q5_1",
    "q5_0": "Q5_0",
    "q4_1": "Q4_1",
    "q4_0": "Q4_0",
    "iq4_nl": "IQ4_NL",
}

OPTIONS = {
    "n_ctx": OptionSpec(
        int, "context window in tokens (default: the model's training context, at most 4096)", minimum=1
    ),
    "threads": OptionSpec(
        int, "CPU threads for generation and prompt evaluation (default: one per usable physical core)", minimum=1
    ),
    "kv_type": OptionSpec(
        str,
        "KV cache element type for keys and values (quantized types need flash_attn)",
        default="f16",
        choices=tuple(KV_TYPES),
    ),
    "flash_attn": OptionSpec(bool, "flash attention (default: on exactly when kv_type is quantized)"),
    "n_gpu_layers": OptionSpec(
        int, "layers offloaded to the GPU, -1 for all (needs a GPU build of llama-cpp-python)", default=0, minimum=-1
    ),
    "parallel": OptionSpec(
        int, "sequences decoded together (default: as many as fit 1 GiB of KV cache, at most 8)", minimum=1
    ),
    "batching": OptionSpec(
        str,
        "exact: share decodes only where bit-identical to a call alone; fast: all active sequences in one",
        default="exact",
        choices=("exact", "fast"),
    ),
    "n_batch": OptionSpec(int, "most tokens per llama.cpp evaluation call (prompts, scoring)", default=512, minimum=1),
    "quant": OptionSpec(
        str,
        "GGUF type a Hugging Face GPT-2 folder is converted to (once, cached)",
        default="q8_0",
        choices=GGUF_TYPES,
    ),
    "cache_dir": OptionSpec(
        str, "folder for converted GGUF files (default: $NEXTWORD_CACHE_DIR/gguf or the user cache nextword/gguf)"
    ),
}
