"""One parse of a ``.gguf`` file per transformers load, instead of three.

transformers reads a GGUF file with gguf-py's ``GGUFReader`` once for the config, once for the
tokenizer and once for the weights, and each reader parses the whole metadata element by element
in Python: for Gemma 3 270M's 262,144-token vocabulary that is most of a conversion's time
(about 60 of 100 s on one core of a 2-core machine; 8 of 12 s for a 50k-token GPT-2 vocabulary).
While :func:`one_parse` is active, ``gguf.GGUFReader(path)`` in read mode returns the reader
already made for that file in this load. A reader maps the file read-only and its fields are
never changed by transformers, so sharing it gives the same config, tokenizer and weights.

transformers imports ``GGUFReader`` from ``gguf`` inside the function that reads, each time, which
is what this relies on; where that changes, the module attribute is simply not consulted and
every load parses three times, as before.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["one_parse"]

_LOCK = threading.Lock()
_readers: dict[tuple[str, int, int], Any] = {}  # (real path, size, mtime) -> reader, while active
_active: list[Any] = []  # [loads in progress, gguf-py's own GGUFReader]


@contextlib.contextmanager
def one_parse() -> Iterator[None]:
    """Within the block, every read-mode ``gguf.GGUFReader`` of one file (same path, size and
    modification time) is one reader. Loads may overlap (threads): the readers are dropped and
    gguf-py's class is put back when the last one ends."""
    try:
        import gguf
    except ImportError:
        yield
        return
    with _LOCK:
        if not _active:
            _active.extend([0, gguf.GGUFReader])
            setattr(gguf, "GGUFReader", _shared_reader)  # noqa: B010 - mypy refuses assigning to a class
        _active[0] += 1
    try:
        yield
    finally:
        with _LOCK:
            _active[0] -= 1
            if _active[0] == 0:
                setattr(gguf, "GGUFReader", _active[1])  # noqa: B010
                _active.clear()
                _readers.clear()


def _shared_reader(path: Any, mode: Any = "r") -> Any:
    with _LOCK:
        original = _active[1] if _active else None
    if original is None or mode != "r":
        import gguf

        cls = original or gguf.GGUFReader
        return cls(path, mode)
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    with _LOCK:
        reader = _readers.get(key)
    if reader is None:
        reader = original(path, mode)  # parsed outside the lock: other loads go on meanwhile
        with _LOCK:
            reader = _readers.setdefault(key, reader)
    return reader
