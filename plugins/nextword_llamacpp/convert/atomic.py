"""Files that appear only when complete: written under a hidden temporary name beside the
destination, moved into place at the end, removed on any failure (``KeyboardInterrupt`` included)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_output", "make_temp", "scratch_file"]


def make_temp(out_path: Path, tag: str) -> Path:
    """Create an empty, uniquely named hidden temp file next to ``out_path`` and return its path.

    The file is created like any other (permissions from the umask), so the final ``os.replace``
    gives the output ordinary permissions.
    """
    while True:
        path = out_path.with_name(f".nwconv{tag}.{secrets.token_hex(6)}.tmp")
        try:
            with path.open("xb"):
                return path
        except FileExistsError:
            continue


@contextmanager
def atomic_output(out_path: Path) -> Iterator[Path]:
    """A temporary path to write; when the block ends normally it replaces ``out_path``, and
    when it raises the temporary file is removed and ``out_path`` is left as it was."""
    tmp = make_temp(out_path, "")
    try:
        yield tmp
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def scratch_file(out_path: Path, tag: str) -> Iterator[Path]:
    """A temporary file beside ``out_path`` for an intermediate result, removed when the block ends."""
    tmp = make_temp(out_path, tag)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)
