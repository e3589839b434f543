"""Reading a GGUF file's header (key/values and tensor records) without loading any weights.

gguf-py's ``GGUFReader`` builds a numpy view per element of every array, which takes about 25
seconds for a vocabulary of 262,144 tokens; this reader skips arrays and reads the rest in tens
of milliseconds. It checks what any reader would otherwise trust: the magic ``GGUF``, a version
it reads (2 or 3), every key/value and tensor record lying inside the file, known tensor types
with shapes they can hold, aligned offsets, and every tensor's data lying inside the file.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nextword.errors import ModelLoadError

__all__ = ["GGUFHeader", "GGUFScalar", "GGUFTensor", "read_gguf_header"]

_GGUF_MAGIC = b"GGUF"
_GGUF_VERSIONS = (2, 3)
_GGUF_DEFAULT_ALIGNMENT = 32
_GGML_MAX_DIMS = 4
_STRING, _ARRAY = 8, 9
# GGUF scalar value types -> struct format (little-endian).
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

#: A GGUF metadata value the header keeps (arrays such as the vocabulary are left out).
GGUFScalar = int | float | bool | str


@dataclass(frozen=True)
class GGUFTensor:
    """One tensor record: ``shape`` in GGUF order (the fastest-varying dimension first, as
    ggml's ``ne``), ``type`` the GGML type id, ``offset`` from the start of the data section."""

    name: str
    shape: tuple[int, ...]
    type: int
    offset: int
    nbytes: int


@dataclass(frozen=True)
class GGUFHeader:
    """What :func:`read_gguf_header` read: the scalar ``metadata`` (arrays left out), the
    ``tensors`` in file order, and ``byte_tokens``, the distinct byte pieces (``<0xHH>``) of
    ``tokenizer.ggml.tokens``."""

    path: Path
    version: int
    file_size: int
    metadata: dict[str, GGUFScalar] = field(repr=False)
    tensors: tuple[GGUFTensor, ...] = field(repr=False)
    byte_tokens: frozenset[bytes] = field(repr=False)

    def tensor(self, name: str) -> GGUFTensor | None:
        """The record of the tensor ``name``, or None."""
        return next((t for t in self.tensors if t.name == name), None)


class _CorruptGGUF(Exception):
    """Raised inside the reader; :func:`read_gguf_header` turns it into ModelLoadError."""


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

    def scalar(self, vtype: int, what: str) -> GGUFScalar:
        fmt = "<" + _SCALARS[vtype]
        n = struct.calcsize(fmt)
        self.need(n, what)
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return value

    def value(self, vtype: int, what: str, bytes_seen: set[bytes] | None = None) -> GGUFScalar | None:
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


def read_gguf_header(path: str | os.PathLike[str]) -> GGUFHeader:
    """Read and check the header of the GGUF file ``path``, without loading any weights.

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
            return _read(p, buf, size)
    except ModelLoadError:
        raise
    except _CorruptGGUF as exc:
        raise ModelLoadError(
            f"{str(p)!r} is truncated or corrupt: {exc}; re-download or re-convert the model"
        ) from None
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {str(p)!r}: {exc}") from exc


def _read(path: Path, buf: Any, size: int) -> GGUFHeader:
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
    data_start = -(-r.pos // alignment) * alignment
    for t in tensors:
        end = data_start + t.offset + t.nbytes
        if end > size:
            raise _CorruptGGUF(f"the data of tensor {t.name!r} ends at byte {end} but the file has only {size} bytes")
    return GGUFHeader(path, version, size, metadata, tuple(tensors), frozenset(byte_tokens))


def _read_version(path: Path, buf: Any, r: _Reader) -> int:
    """Check the magic bytes and read a GGUF version this reader knows (little-endian)."""
    magic = bytes(buf[:4])
    if magic != _GGUF_MAGIC:
        raise ModelLoadError(
            f"{str(path)!r} is not a GGUF file (it starts with {magic!r}, a GGUF file with {_GGUF_MAGIC!r}); "
            "give a .gguf model file, or a Hugging Face model folder"
        )
    r.pos = 4
    version = r.u32("the version")
    if version not in _GGUF_VERSIONS:
        swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
        if swapped in _GGUF_VERSIONS:
            raise ModelLoadError(f"{str(path)!r} is a big-endian GGUF file; nextword reads little-endian ones")
        raise ModelLoadError(
            f"{str(path)!r} has GGUF version {version}; nextword reads versions "
            f"{', '.join(map(str, _GGUF_VERSIONS))} (convert the model again with a current converter)"
        )
    return version


def _read_metadata(r: _Reader, n_kv: int) -> tuple[dict[str, GGUFScalar], set[bytes]]:
    """The ``n_kv`` key/values (scalars kept, arrays skipped) and the distinct byte tokens of
    ``tokenizer.ggml.tokens``; a key that occurs twice is corrupt."""
    metadata: dict[str, GGUFScalar] = {}
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


def _read_tensor_records(r: _Reader, n_tensors: int, alignment: int) -> list[GGUFTensor]:
    """Each tensor record, checked: rank, known type, a shape its type can hold, an aligned
    offset, a name not seen before."""
    try:
        from gguf import GGML_QUANT_SIZES, GGMLQuantizationType  # the type table only
    except ImportError:
        raise ModelLoadError("reading a GGUF file needs the gguf package (pip install gguf)") from None

    tensors: list[GGUFTensor] = []
    names: set[str] = set()
    for i in range(n_tensors):
        name = r.string(f"the name of tensor #{i}")
        n_dims = r.u32(f"the rank of tensor {name!r}")
        if not 1 <= n_dims <= _GGML_MAX_DIMS:
            raise _CorruptGGUF(f"tensor {name!r} has {n_dims} dimensions (1 to {_GGML_MAX_DIMS} allowed)")
        dims = tuple(r.u64(f"the shape of tensor {name!r}") for _ in range(n_dims))
        ttype = r.u32(f"the type of tensor {name!r}")
        offset = r.u64(f"the offset of tensor {name!r}")
        try:
            block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ttype)]
        except (ValueError, KeyError):
            raise _CorruptGGUF(f"tensor {name!r} has unknown type {ttype}") from None
        n_elements = 1
        for d in dims:
            n_elements *= d
        if n_elements >= 2**62 or dims[0] % block:
            raise _CorruptGGUF(f"tensor {name!r} has an invalid shape {list(dims)} for its type")
        if offset % alignment:
            raise _CorruptGGUF(f"tensor {name!r} has an unaligned data offset {offset}")
        if name in names:
            raise _CorruptGGUF(f"the tensor {name!r} occurs twice")
        names.add(name)
        tensors.append(GGUFTensor(name, dims, ttype, offset, n_elements // block * type_size))
    return tensors
