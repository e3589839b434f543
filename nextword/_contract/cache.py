"""Where a backend keeps files it makes (converted models, compiled kernels): one folder per
backend under nextword's cache root."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import platformdirs

from nextword.errors import InvalidConfig

__all__ = ["CACHE_DIR_ENV", "cache_dir", "cache_lock"]

CACHE_DIR_ENV = "NEXTWORD_CACHE_DIR"
"""Environment variable naming nextword's cache root (default: the user cache folder ``nextword``)."""


def cache_dir(name: str) -> Path:
    """The folder ``name`` under nextword's cache root: ``$NEXTWORD_CACHE_DIR/<name>`` when that
    variable is set, else ``<user cache folder>/nextword/<name>``. The folder is not created;
    ``name`` must be one plain folder name (``gguf``, a backend's name)."""
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise InvalidConfig(f"a cache folder name must be one plain folder name, got {name!r}")
    root = os.environ.get(CACHE_DIR_ENV, "").strip()
    base = Path(root).expanduser() if root else platformdirs.user_cache_path("nextword", appauthor=False)
    return base / name


@contextlib.contextmanager
def cache_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if missing) for the block, across
    processes and threads: the way for two loads that would make the same cached file to make it
    once (the second waits, then finds it made). Best effort: where the file cannot be created (a
    read-only folder) or the platform has no ``fcntl`` (Windows), the block runs without a lock,
    so the code inside must still be safe to run twice at once."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a")  # noqa: SIM115 - held across the yield, closed below
    except OSError:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
