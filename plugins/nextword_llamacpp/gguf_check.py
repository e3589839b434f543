"""Checks a GGUF file's header in Python, so that a truncated, corrupt or foreign file is refused
with :class:`~nextword.ModelLoadError` before llama.cpp (which would trust it) sees it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from nextword import ModelLoadError
from nextword.backend import GGUFScalar, read_gguf_header

__all__ = ["GGUFInfo", "Scalar", "inspect_gguf"]

_MAX_LAYERS = 512  # llama.cpp's LLAMA_MAX_LAYERS

#: A GGUF metadata value that :class:`GGUFInfo` keeps (arrays are left out).
Scalar = GGUFScalar


@dataclass(frozen=True)
class GGUFInfo:
    """What :func:`inspect_gguf` read from a GGUF file's header.

    ``metadata`` holds the scalar key/values (arrays such as the vocabulary are left out);
    ``context_length`` is ``<architecture>.context_length`` (None when absent).
    """

    path: Path
    version: int
    architecture: str
    context_length: int | None
    n_tensors: int
    file_size: int
    metadata: dict[str, Scalar] = field(repr=False)


def inspect_gguf(path: str | os.PathLike[str]) -> GGUFInfo:
    """Read and check the header of the GGUF file ``path``, without loading any weights.

    Checks what llama.cpp would otherwise trust: the file's structure
    (:func:`nextword.backend.read_gguf_header`: magic, version, every record and every tensor's
    data inside the file, known tensor types, aligned offsets), at least one tensor, and the
    metadata llama.cpp aborts the process on. Takes tens of milliseconds even for large
    vocabularies.

    Raises:
        ModelLoadError: the file is missing, unreadable, not GGUF, or truncated/corrupt; the
            message says which and what to do.
    """
    header = read_gguf_header(path)
    p = header.path
    if not header.tensors:
        raise ModelLoadError(
            f"{str(p)!r} holds no tensors (a vocabulary-only GGUF?); give a GGUF file with the model's weights"
        )
    problem, arch = _check_model_metadata(header.metadata, header.byte_tokens)
    if problem:
        raise ModelLoadError(f"{str(p)!r} is truncated or corrupt: {problem}; re-download or re-convert the model")
    n_ctx_train = header.metadata.get(f"{arch}.context_length")
    return GGUFInfo(
        path=p,
        version=header.version,
        architecture=arch,
        context_length=int(n_ctx_train) if isinstance(n_ctx_train, int) and n_ctx_train > 0 else None,
        n_tensors=len(header.tensors),
        file_size=header.file_size,
        metadata=header.metadata,
    )


def _check_model_metadata(metadata: dict[str, Scalar], byte_tokens: frozenset[bytes]) -> tuple[str, str]:
    """(the problem, or "", and the architecture): the metadata checks llama.cpp would
    otherwise abort the process on."""
    arch = metadata.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        return "it has no general.architecture", ""
    if metadata.get("tokenizer.ggml.model") == "llama" and len(byte_tokens) < 256:
        # llama.cpp's SentencePiece tokenizer falls back to these and aborts when one is missing.
        return f"its SentencePiece vocabulary lacks byte tokens ({len(byte_tokens)} of 256)", arch
    n_layers = metadata.get(f"{arch}.block_count")
    if n_layers is not None and (not isinstance(n_layers, int) or not 1 <= n_layers <= _MAX_LAYERS):
        # llama.cpp asserts this range and aborts the process otherwise.
        return f"{arch}.block_count is {n_layers!r}, outside 1..{_MAX_LAYERS}", arch
    return "", arch
