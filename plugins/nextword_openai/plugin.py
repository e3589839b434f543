"""Registers the ``openai`` backend through nextword's public hooks.

``nextword.load("openai", MODEL, base_url="http://host:port/v1", api_key=...)``; the options may
also come from ``[backends.openai]`` in ``nextword.toml`` or ``-o`` on the command line. The
API key is a secret option: it is sent as a bearer token and never shown.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Callable
from typing import Any

from nextword import BackendSpec, Capabilities, InvalidConfig, OptionSpec, Support, hookimpl

__all__ = ["OPTIONS", "SPEC", "register_backends"]

INSTALL_HINT = "pip install 'nextword[openai]'"

OPTIONS = {
    "base_url": OptionSpec(str, "the server's OpenAI API root, e.g. http://127.0.0.1:8000/v1 (required)"),
    "api_key": OptionSpec(str, "bearer token for the server (never shown)", secret=True),
    "timeout": OptionSpec(float, "seconds to wait for each answer", default=60.0),
    "max_retries": OptionSpec(
        int, "retries (with backoff) on 429/5xx answers and connection errors", default=2, minimum=0
    ),
    "server": OptionSpec(
        str,
        "the kind of server (default: recognised from /v1/models)",
        choices=("nextword", "vllm", "llama-cpp-python", "llama.cpp", "openai"),
    ),
    "tokenizer": OptionSpec(str, "a local tokenizer (.gguf file or Hugging Face folder) for servers without one"),
    "context_length": OptionSpec(int, "the server's context window, for servers that do not report it", minimum=1),
}


#: Upper bound of what the backend offers: every option sent natively, log-probabilities only.
CAPABILITIES = dataclasses.replace(Capabilities.all(Support.NATIVE), logits=False)


def _check() -> str | None:
    if importlib.util.find_spec("httpx") is None:
        return f"httpx is not installed; install it with {INSTALL_HINT}"
    return None


def _load(model: str, **options: Any) -> Any:
    from nextword_openai.generator import OpenAIGenerator

    if not options.get("base_url"):
        raise InvalidConfig("the openai backend needs the base_url option (e.g. base_url=http://127.0.0.1:8000/v1)")
    shown = {k: ("<hidden>" if k == "api_key" and v is not None else v) for k, v in options.items()}
    return OpenAIGenerator(model, settings_options=shown, **options)


SPEC = BackendSpec(
    name="openai",
    load=_load,
    default_model="default",
    description="a model behind an OpenAI-compatible server (nextword serve, vLLM, llama.cpp's server)",
    options=OPTIONS,
    # The most any server offers; what one honours is known once it answers.
    capabilities=CAPABILITIES,
    probed=True,
    check=_check,
)


@hookimpl
def register_backends(register: Callable[[BackendSpec], None]) -> None:
    """Register the openai backend."""
    register(SPEC)
