"""Reading a Hugging Face checkpoint folder: its JSON files and its weights (safetensors read with
numpy alone, one tensor at a time; PyTorch pickles through ``torch.load(weights_only=True)``)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from nextword.errors import ModelLoadError

__all__ = ["WEIGHT_FILES", "SafetensorsReader", "TensorReader", "TorchReader", "open_weights", "read_json"]

#: The weight files looked for in a checkpoint folder, in order of preference.
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


class TensorReader(Protocol):
    """Lazy access to the tensors of one checkpoint file."""

    def keys(self) -> Iterable[str]:
        """The tensor names stored in the file."""
        ...

    def shape(self, key: str) -> tuple[int, ...]:
        """The shape of tensor ``key``, without reading its data."""
        ...

    def load(self, key: str) -> np.ndarray:
        """Tensor ``key`` as a float32 array."""
        ...


class SafetensorsReader:
    """Reads a ``.safetensors`` file with numpy only (no torch), one tensor at a time."""

    _DTYPES = {
        "F64": "<f8",
        "F32": "<f4",
        "F16": "<f2",
        "BF16": "<u2",
        "I64": "<i8",
        "I32": "<i4",
        "I16": "<i2",
        "I8": "i1",
        "U8": "u1",
        "BOOL": "?",
    }

    def __init__(self, path: Path) -> None:
        """Parse the header of ``path``; raise ModelLoadError if it is not a safetensors file."""
        self.path = path
        try:
            with path.open("rb") as f:
                n = int.from_bytes(f.read(8), "little")
                if not 0 < n <= 100_000_000:
                    raise ValueError(f"implausible header length {n}")
                header = json.loads(f.read(n))
            header.pop("__metadata__", None)
            self._data_start = 8 + n
            self._entries: dict[str, dict[str, Any]] = header
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot read safetensors file {path}: {exc}") from exc

    def keys(self) -> Iterable[str]:
        """The tensor names stored in the file."""
        return self._entries.keys()

    def shape(self, key: str) -> tuple[int, ...]:
        """The shape of tensor ``key`` as recorded in the header."""
        return tuple(int(d) for d in self._entries[key]["shape"])

    def load(self, key: str) -> np.ndarray:
        """Read tensor ``key`` from disk and return it as float32 (BF16 is widened exactly)."""
        entry = self._entries[key]
        dtype = entry["dtype"]
        if dtype not in self._DTYPES:
            raise ModelLoadError(f"{self.path}: tensor {key} has unsupported dtype {dtype}")
        begin, end = (int(x) for x in entry["data_offsets"])
        with self.path.open("rb") as f:
            f.seek(self._data_start + begin)
            raw = f.read(end - begin)
        if len(raw) != end - begin:
            raise ModelLoadError(f"{self.path} is truncated (tensor {key})")
        arr = np.frombuffer(raw, dtype=self._DTYPES[dtype])
        if dtype == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        return arr.astype(np.float32).reshape(self.shape(key))


class TorchReader:
    """Reads a ``pytorch_model.bin`` file through ``torch.load(weights_only=True)``."""

    def __init__(self, path: Path) -> None:
        """Open ``path`` memory-mapped; raise ModelLoadError if torch is missing or it is unreadable."""
        try:
            import torch
        except ImportError as exc:
            raise ModelLoadError(
                f"{path.name} is a PyTorch pickle and reading it needs torch; install torch or "
                "save the model as safetensors"
            ) from exc
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:  # torch raises RuntimeError, UnpicklingError, ...
            raise ModelLoadError(f"cannot read {path}: {exc}") from exc
        if not isinstance(state, dict):
            raise ModelLoadError(f"{path} does not hold a state dict")
        self._state: dict[str, Any] = state

    def keys(self) -> Iterable[str]:
        """The tensor names stored in the file."""
        return self._state.keys()

    def shape(self, key: str) -> tuple[int, ...]:
        """The shape of tensor ``key``."""
        return tuple(int(d) for d in self._state[key].shape)

    def load(self, key: str) -> np.ndarray:
        """Tensor ``key`` as float32."""
        return self._state[key].float().numpy()


def read_json(path: Path) -> dict[str, Any]:
    """Parse the JSON object in ``path``; raise ModelLoadError if it is unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} does not hold a JSON object")
    return data


def open_weights(src: Path) -> dict[str, TensorReader]:
    """Map every tensor name of the checkpoint in ``src`` to the reader of the file holding it."""
    found = [name for name in WEIGHT_FILES if (src / name).is_file()]
    if not found:
        raise ModelLoadError(f"{src} has no weights: expected one of {', '.join(WEIGHT_FILES)}")
    name = found[0]
    if name.endswith(".index.json"):
        index = read_json(src / name)
        weight_map = index.get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ModelLoadError(f"{src / name} has no weight_map")
        files = sorted(set(weight_map.values()))
    else:
        files = [name]
    by_key: dict[str, TensorReader] = {}
    for file_name in files:
        path = src / file_name
        if not path.is_file():
            raise ModelLoadError(f"weight shard listed in the index is missing: {path}")
        reader: TensorReader = SafetensorsReader(path) if file_name.endswith(".safetensors") else TorchReader(path)
        for key in reader.keys():
            by_key[key] = reader
    return by_key
