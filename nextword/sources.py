"""Where a model comes from: helpers every backend uses to tell a file-system path from a
Hugging Face Hub id, and to find out quickly whether the Hub can be reached at all."""

from __future__ import annotations

import os
import socket
import urllib.parse

__all__ = ["hub_reachable", "looks_like_path"]


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
