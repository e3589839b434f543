"""Where a backend keeps files it makes (converted models, compiled kernels): one folder per
backend under nextword's cache root."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from nextword.errors import InvalidConfig

__all__ = ["CACHE_DIR_ENV", "cache_dir"]

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
