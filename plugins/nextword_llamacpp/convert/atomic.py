"""Files that appear only when complete: written under a hidden temporary name beside the
destination, moved into place at the end, removed on any failure (``KeyboardInterrupt`` and the
CLI's termination signals included, wherever they land: the name is chosen before the file is
created, inside the block that removes it)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_output", "scratch_file", "temporary_file"]


@contextmanager
def temporary_file(out_path: Path, tag: str) -> Iterator[Path]:
    """An empty, uniquely named hidden file next to ``out_path``, removed when the block ends
    unless the block moved it away. Created like any other file (permissions from the umask), so
    a final ``os.replace`` gives the output ordinary permissions."""
    path: Path | None = None
    try:
        while True:
            path = out_path.with_name(f".nwconv{tag}.{secrets.token_hex(6)}.tmp")
            try:
                with path.open("xb"):
                    break
            except FileExistsError:
                path = None  # another process's file: never ours to remove
        yield path
    finally:
        if path is not None:
            path.unlink(missing_ok=True)


@contextmanager
def atomic_output(out_path: Path) -> Iterator[Path]:
    """A temporary path to write; when the block ends normally it replaces ``out_path``, and
    when it raises the temporary file is removed and ``out_path`` is left as it was."""
    with temporary_file(out_path, "") as tmp:
        yield tmp
        os.replace(tmp, out_path)


@contextmanager
def scratch_file(out_path: Path, tag: str) -> Iterator[Path]:
    """A temporary file beside ``out_path`` for an intermediate result, removed when the block ends."""
    with temporary_file(out_path, tag) as tmp:
        yield tmp
