"""What one request may cost: the bounds the server enforces, with defaults safe for a public
deployment, and the 400 that names a bound a request went past.

Every bound is checked on the request as it arrived, before any engine work, so a request over
a limit costs the server only the reading of its body. Each one can be changed by the operator
(``nextword serve --max-...``); the error message names the limit, its value and the option that
sets it, and ``/metrics`` counts the rejection under the limit's name.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from nextword.serve.errors import RequestError

__all__ = ["Limits", "default_parallel", "display_name", "over_limit"]


@dataclasses.dataclass(frozen=True)
class Limits:
    """Bounds the server enforces on every request (see docs/serving.md for the reasons behind
    each default). ``parallel=None`` means "chosen from the backend": its own ``parallel`` load
    option where it has one (the ``llamacpp`` sequence slots), else 1."""

    max_body_bytes: int = 1 << 20
    """Largest request body accepted (413 above)."""
    max_json_depth: int = 32
    """Deepest nesting of arrays and objects in a request body (a completions body needs 3)."""
    max_tokens: int = 4096
    """Most new tokens one completion may ask for (also bounded by the context window)."""
    max_prompts: int = 64
    """Most prompts in one list prompt."""
    max_n: int = 16
    """Most completions per prompt (``n``)."""
    max_request_tokens: int = 8192
    """Most new tokens one request may ask for in all: prompts x ``n`` x ``max_tokens``."""
    max_logprobs: int = 20
    """Most log-probabilities per position (``logprobs``; vLLM's default is the same)."""
    max_logprob_entries: int = 131072
    """Most log-probability entries one request may ask for: for every sequence, its positions
    with log-probabilities (the generated tokens, and the prompt's with ``echo``) x
    (``logprobs`` + 1). A text prompt counts as its UTF-8 length in bytes + 1 (never fewer than
    its tokens), at most the context window."""
    max_tokenize_chars: int = 65536
    """Longest text ``/tokenize`` takes, in characters."""
    max_detokenize_tokens: int = 65536
    """Most token ids ``/detokenize`` takes."""
    max_explain_chars: int = 8192
    """Longest text ``/v1/explain`` takes, in characters (its ``top`` is bounded by
    ``max_logprobs``)."""
    max_queue: int = 256
    """Most requests waiting for the model at once (503 with ``Retry-After`` above)."""
    parallel: int | None = None
    """Generations let into the model at once; None: chosen from the backend."""
    request_timeout_s: float | None = 600.0
    """Longest a request may take from its arrival, waiting included; then it is cancelled at
    the next engine step and answered with a 504 (a stream: an error event). None: no limit."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in ("parallel", "request_timeout_s"):
                continue
            least = 0 if f.name == "max_logprobs" else 1e-9
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < least:
                raise ValueError(f"Limits.{f.name} must be a positive number, got {value!r}")

    def as_dict(self) -> dict[str, Any]:
        """Every limit by name (what ``/v1/models`` reports)."""
        return dataclasses.asdict(self)


#: The command-line option that sets each limit (named in error messages).
OPTION = {f.name: "--" + f.name.replace("_", "-").removesuffix("-s") for f in dataclasses.fields(Limits)}


def over_limit(
    limit: str, value: float | int | None, what: str, *, status: int = 400, param: str | None = None
) -> RequestError:
    """The error for a request past ``limit`` (a :class:`Limits` field whose value is ``value``):
    its message says what was asked (``what``) and names the limit, its value and its option;
    its code is ``limit_exceeded`` and its metrics reason the limit's name."""
    shown = f"{limit}={value}"
    message = f"{what}: over the server's limit {shown} (set by {OPTION.get(limit, limit)})"
    return RequestError(status, message, param=param, code="limit_exceeded", reason=limit)


def default_parallel(generator: Any) -> int:
    """How many generations the server lets into ``generator`` at once by default: the backend's
    own ``parallel`` load option where it has one (``llamacpp``: its sequence slots, whose
    steps are decoded together, one token of every sequence per step), else 1 (the generations
    then take turns, one prompt at a time, in the server's fair queue)."""
    value = generator.settings.options.get("parallel")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    return 1


def display_name(model: str) -> str:
    """The name a model is served under when the operator gives none: a local path shows only
    its last component (its file or folder name), so no response reveals where the model lies
    on the server's disk; any other name (a hub id) is shown as given."""
    text = str(model)
    stripped = text.rstrip("/\\") or text
    looks_local = (
        os.path.isabs(stripped)
        or stripped.startswith(("./", "../", "~", ".\\", "..\\"))
        or os.path.exists(stripped)
        or "\\" in stripped
    )
    if looks_local:
        return Path(stripped).name or stripped
    return text
