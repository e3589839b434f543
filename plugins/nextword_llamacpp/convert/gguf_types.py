"""The GGUF file types the converter writes, and which tool makes each. Imports nothing heavy:
the plugin reads :data:`GGUF_TYPES` from here for its option and command choices."""

from __future__ import annotations

from nextword.errors import InvalidConfig

__all__ = ["DIRECT_TYPES", "GGUF_TYPES", "LLAMA_QUANT_FTYPES", "check_type"]

#: The output types :func:`~nextword_llamacpp.convert.convert` can write, in order of decreasing size.
GGUF_TYPES: tuple[str, ...] = ("f32", "f16", "q8_0", "q4_0", "q4_k_m", "q5_k_m", "q6_k")

#: Types written directly with gguf-py (numpy quantization).
DIRECT_TYPES: tuple[str, ...] = ("f32", "f16", "q8_0", "q4_0")

#: Types made by llama.cpp's quantizer from an F32 intermediate: our name -> llama_ftype constant name.
LLAMA_QUANT_FTYPES: dict[str, str] = {
    "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K",
}


def check_type(type_: str) -> str:
    """Normalize ``type_`` to one of :data:`GGUF_TYPES` or raise InvalidConfig listing them."""
    kind = type_.lower() if isinstance(type_, str) else type_
    if kind not in GGUF_TYPES:
        raise InvalidConfig(f"unknown GGUF type {type_!r}: choose one of {', '.join(GGUF_TYPES)}")
    return kind
