"""Where a model comes from: helpers every backend uses to tell a file-system path from a
Hugging Face Hub id (:func:`locate_model`), to find out quickly whether the Hub can be reached at
all, and to fetch from it with the local cache first (:func:`from_hub`)."""

from __future__ import annotations

import os
import socket
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from nextword.errors import ModelLoadError

__all__ = ["ModelLocation", "from_hub", "hub_reachable", "locate_model", "looks_like_path"]

T = TypeVar("T")


@dataclass(frozen=True)
class ModelLocation:
    """What a ``model`` string names: an existing ``file`` or ``folder`` (``path``, resolved), or
    a Hugging Face Hub id (``kind == "hub"``, ``path`` None, the id in ``model``)."""

    kind: Literal["file", "folder", "hub"]
    model: str
    path: Path | None = None


def locate_model(model: str) -> ModelLocation:
    """Classify ``model``: an existing file, an existing folder (``~`` expanded), else a hub id.

    Raises :class:`~nextword.errors.ModelLoadError` ("no such model file or folder") for a string
    that can only be a path (see :func:`looks_like_path`) and does not exist. What a backend
    accepts of each kind (a ``.gguf`` file, a folder with ``config.json``) is the backend's to check.
    """
    path = Path(model).expanduser()
    if path.is_file():
        return ModelLocation("file", model, path.resolve())
    if path.is_dir():
        return ModelLocation("folder", model, path.resolve())
    if looks_like_path(model):
        raise ModelLoadError(f"no such model file or folder: {model!r}")
    return ModelLocation("hub", model)


def from_hub(model_id: str, local: Callable[[], T], download: Callable[[], T], *, hint: str) -> T:
    """``local()`` (the model from the local Hugging Face cache), or when that raises,
    ``download()`` after a quick check that the Hub can be reached.

    With the Hub unreachable (offline, or ``HF_HUB_OFFLINE`` set) this raises
    :class:`~nextword.errors.ModelLoadError` at once, ending with ``hint`` (what to pass
    instead), rather than waiting through the Hub client's retries. Errors of ``download`` pass
    through unchanged.
    """
    try:
        return local()
    except Exception:  # not in the local cache (the Hub clients raise many types)
        pass
    if not hub_reachable():
        raise ModelLoadError(
            f"cannot fetch {model_id!r}: the Hugging Face Hub is unreachable (offline, or HF_HUB_OFFLINE is set) "
            f"and the model is not in the local cache; {hint}"
        )
    return download()


def looks_like_path(model: str) -> bool:
    """True for strings that can only be file-system paths, not hub ids such as ``org/name``:
    absolute or relative paths, ``~``, a ``.gguf`` name, or more than one ``/``."""
    return (
        model.startswith(("/", "./", "../", "~", "\\"))
        or model.lower().endswith(".gguf")
        or model.count("/") > 1
        or (os.sep != "/" and os.sep in model)
    )


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub endpoint (``HF_ENDPOINT``) accepts a TCP connection within
    ``timeout`` seconds. False at once when ``HF_HUB_OFFLINE`` is set, so offline use fails fast
    instead of waiting through the Hub client's retries."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    parsed = urllib.parse.urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
