"""Checks a GGUF file's header in Python, so that a truncated, corrupt or foreign file is refused
with :class:`~nextword.ModelLoadError` before llama.cpp (which would trust it) sees it."""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf

from nextword import ModelLoadError

__all__ = ["GGUFInfo", "Scalar", "inspect_gguf"]

_GGUF_MAGIC = b"GGUF"
_GGUF_VERSIONS = (2, 3)
_GGUF_DEFAULT_ALIGNMENT = 32
_GGML_MAX_DIMS = 4
_MAX_LAYERS = 512  # llama.cpp's LLAMA_MAX_LAYERS
_STRING, _ARRAY = 8, 9
# GGUF scalar value types -> struct format (little-endian).
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

#: A GGUF metadata value that :class:`GGUFInfo` keeps (arrays are left out).
Scalar = int | float | bool | str


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


class _CorruptGGUF(Exception):
    """Raised inside the header reader; :func:`inspect_gguf` turns it into ModelLoadError."""


class _Reader:
    """Bounds-checked little-endian reads from a buffer."""

    def __init__(self, buf: Any, size: int) -> None:
        self.buf = buf
        self.size = size
        self.pos = 0

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise _CorruptGGUF(f"{what} at byte {self.pos} runs past the end of the file ({self.size} bytes)")

    def u32(self, what: str) -> int:
        self.need(4, what)
        (value,) = _U32.unpack_from(self.buf, self.pos)
        self.pos += 4
        return int(value)

    def u64(self, what: str) -> int:
        self.need(8, what)
        (value,) = _U64.unpack_from(self.buf, self.pos)
        self.pos += 8
        return int(value)

    def string(self, what: str) -> str:
        n = self.u64(f"length of {what}")
        self.need(n, what)
        raw = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def skip_strings(self, count: int, what: str, bytes_seen: set[bytes] | None = None) -> None:
        """Skip ``count`` strings; with ``bytes_seen``, collect the byte tokens (``<0xHH>``) met."""
        buf, pos, size, unpack = self.buf, self.pos, self.size, _U64.unpack_from
        for _ in range(count):
            if pos + 8 > size:
                raise _CorruptGGUF(f"{what} runs past the end of the file ({size} bytes)")
            n = unpack(buf, pos)[0]
            if bytes_seen is not None and n == 6 and pos + 14 <= size:
                piece = bytes(buf[pos + 8 : pos + 14])
                if piece.startswith(b"<0x") and piece.endswith(b">"):
                    bytes_seen.add(piece)
            pos += 8 + n
        if pos > size:
            raise _CorruptGGUF(f"{what} runs past the end of the file ({size} bytes)")
        self.pos = pos

    def scalar(self, vtype: int, what: str) -> Scalar:
        fmt = "<" + _SCALARS[vtype]
        n = struct.calcsize(fmt)
        self.need(n, what)
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return value

    def value(self, vtype: int, what: str, bytes_seen: set[bytes] | None = None) -> Scalar | None:
        """Read one value; arrays are skipped (None), string arrays noting byte tokens in
        ``bytes_seen``."""
        if vtype in _SCALARS:
            return self.scalar(vtype, what)
        if vtype == _STRING:
            return self.string(what)
        if vtype == _ARRAY:
            etype = self.u32(f"element type of {what}")
            count = self.u64(f"length of {what}")
            if etype in _SCALARS:
                self.need(count * struct.calcsize(_SCALARS[etype]), what)
                self.pos += count * struct.calcsize(_SCALARS[etype])
            elif etype == _STRING:
                self.need(count * 8, what)  # every string takes at least its 8-byte length
                self.skip_strings(count, what, bytes_seen)
            else:
                raise _CorruptGGUF(f"{what} is an array of unsupported value type {etype}")
            return None
        raise _CorruptGGUF(f"{what} has unknown value type {vtype}")


def inspect_gguf(path: str | os.PathLike[str]) -> GGUFInfo:
    """Read and check the header of the GGUF file ``path``, without loading any weights.

    Checks what llama.cpp would otherwise trust: the magic ``GGUF``, a supported version (2 or 3),
    every key/value and tensor record lying inside the file, known tensor types with valid
    shapes, aligned tensor offsets, and every tensor's data lying inside the file (a truncated
    download fails here). Takes tens of milliseconds even for large vocabularies.

    Raises:
        ModelLoadError: the file is missing, unreadable, not GGUF, or truncated/corrupt; the
            message says which and what to do.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
        if not p.is_file():
            raise ModelLoadError(f"{str(p)!r} is not a file; give the path of a .gguf model file")
        if size == 0:
            raise ModelLoadError(f"{str(p)!r} is empty; it is not a GGUF model (re-download or re-convert it)")
        with p.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return _read_header(p, buf, size)
    except ModelLoadError:
        raise
    except _CorruptGGUF as exc:
        raise ModelLoadError(
            f"{str(p)!r} is truncated or corrupt: {exc}; re-download or re-convert the model"
        ) from None
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {str(p)!r}: {exc}") from exc


def _read_header(path: Path, buf: Any, size: int) -> GGUFInfo:
    """Read and check the whole header of the GGUF file ``path`` (``buf``, ``size`` bytes):
    magic and version, key/values, tensor records, then what llama.cpp would abort on."""
    r = _Reader(buf, size)
    version = _read_version(path, buf, r)
    n_tensors = r.u64("the tensor count")
    n_kv = r.u64("the key/value count")
    # Every record takes some bytes; counts the file cannot hold are corrupt (and would loop for long).
    if n_kv * 12 > size or n_tensors * 24 > size:
        raise _CorruptGGUF(f"it declares {n_tensors} tensors and {n_kv} key/values, more than the file can hold")
    metadata, byte_tokens = _read_metadata(r, n_kv)
    alignment = metadata.get("general.alignment", _GGUF_DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise _CorruptGGUF(f"general.alignment is {alignment!r}, not a power of two")
    tensors = _read_tensor_records(r, n_tensors, alignment)
    _check_tensor_data(path, tensors, -(-r.pos // alignment) * alignment, size)
    arch = _check_model_metadata(metadata, byte_tokens)
    n_ctx_train = metadata.get(f"{arch}.context_length")
    return GGUFInfo(
        path=path,
        version=version,
        architecture=arch,
        context_length=int(n_ctx_train) if isinstance(n_ctx_train, int) and n_ctx_train > 0 else None,
        n_tensors=n_tensors,
        file_size=size,
        metadata=metadata,
    )


def _read_version(path: Path, buf: Any, r: _Reader) -> int:
    """Check the magic bytes and read a GGUF version llama.cpp reads (little-endian)."""
    magic = bytes(buf[:4])
    if magic != _GGUF_MAGIC:
        raise ModelLoadError(
            f"{str(path)!r} is not a GGUF file (it starts with {magic!r}, a GGUF file with {_GGUF_MAGIC!r}); "
            "give a .gguf model file, or a Hugging Face GPT-2 folder to convert"
        )
    r.pos = 4
    version = r.u32("the version")
    if version not in _GGUF_VERSIONS:
        swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
        if swapped in _GGUF_VERSIONS:
            raise ModelLoadError(f"{str(path)!r} is a big-endian GGUF file; llama.cpp here reads little-endian ones")
        raise ModelLoadError(
            f"{str(path)!r} has GGUF version {version}; llama.cpp reads versions "
            f"{', '.join(map(str, _GGUF_VERSIONS))} (convert the model again with a current converter)"
        )
    return version


def _read_metadata(r: _Reader, n_kv: int) -> tuple[dict[str, Scalar], set[bytes]]:
    """The ``n_kv`` key/values (scalars kept, arrays skipped) and the distinct byte tokens of
    ``tokenizer.ggml.tokens``; a key that occurs twice is corrupt."""
    metadata: dict[str, Scalar] = {}
    byte_tokens: set[bytes] = set()
    for i in range(n_kv):
        key = r.string(f"key #{i}")
        vtype = r.u32(f"the type of {key!r}")
        value = r.value(vtype, f"the value of {key!r}", byte_tokens if key == "tokenizer.ggml.tokens" else None)
        if key in metadata:
            raise _CorruptGGUF(f"the key {key!r} occurs twice")
        if value is not None:
            metadata[key] = value
    return metadata, byte_tokens


def _read_tensor_records(r: _Reader, n_tensors: int, alignment: int) -> list[tuple[str, int, int]]:
    """(name, data offset, size in bytes) of each tensor record, each checked: rank, known type,
    a shape its type can hold, an aligned offset, a name not seen before."""
    tensors: list[tuple[str, int, int]] = []
    names: set[str] = set()
    for i in range(n_tensors):
        name = r.string(f"the name of tensor #{i}")
        n_dims = r.u32(f"the rank of tensor {name!r}")
        if not 1 <= n_dims <= _GGML_MAX_DIMS:
            raise _CorruptGGUF(f"tensor {name!r} has {n_dims} dimensions (1 to {_GGML_MAX_DIMS} allowed)")
        dims = [r.u64(f"the shape of tensor {name!r}") for _ in range(n_dims)]
        ttype = r.u32(f"the type of tensor {name!r}")
        offset = r.u64(f"the offset of tensor {name!r}")
        try:
            block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(ttype)]
        except (ValueError, KeyError):
            raise _CorruptGGUF(f"tensor {name!r} has unknown type {ttype}") from None
        n_elements = 1
        for d in dims:
            n_elements *= d
        if n_elements >= 2**62 or dims[0] % block:
            raise _CorruptGGUF(f"tensor {name!r} has an invalid shape {dims} for its type")
        if offset % alignment:
            raise _CorruptGGUF(f"tensor {name!r} has an unaligned data offset {offset}")
        if name in names:
            raise _CorruptGGUF(f"the tensor {name!r} occurs twice")
        names.add(name)
        tensors.append((name, offset, n_elements // block * type_size))
    return tensors


def _check_tensor_data(path: Path, tensors: list[tuple[str, int, int]], data_start: int, size: int) -> None:
    """Every tensor's data lies inside the file, and there is at least one tensor."""
    for name, offset, nbytes in tensors:
        end = data_start + offset + nbytes
        if end > size:
            raise _CorruptGGUF(f"the data of tensor {name!r} ends at byte {end} but the file has only {size} bytes")
    if not tensors:
        raise ModelLoadError(
            f"{str(path)!r} holds no tensors (a vocabulary-only GGUF?); give a GGUF file with the model's weights"
        )


def _check_model_metadata(metadata: dict[str, Scalar], byte_tokens: set[bytes]) -> str:
    """The architecture, after the metadata checks llama.cpp would otherwise abort the process on."""
    arch = metadata.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise _CorruptGGUF("it has no general.architecture")
    if metadata.get("tokenizer.ggml.model") == "llama" and len(byte_tokens) < 256:
        # llama.cpp's SentencePiece tokenizer falls back to these and aborts when one is missing.
        raise _CorruptGGUF(f"its SentencePiece vocabulary lacks byte tokens ({len(byte_tokens)} of 256)")
    n_layers = metadata.get(f"{arch}.block_count")
    if n_layers is not None and (not isinstance(n_layers, int) or not 1 <= n_layers <= _MAX_LAYERS):
        # llama.cpp asserts this range and aborts the process otherwise.
        raise _CorruptGGUF(f"{arch}.block_count is {n_layers!r}, outside 1..{_MAX_LAYERS}")
    return arch
