"""``nextword serve``: an OpenAI-compatible HTTP server over any backend."""

from __future__ import annotations

import os
from typing import Any

import click

from nextword.cli.options import backend_options, loading, parse_options

__all__ = ["serve"]


@click.command()
@backend_options
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback unless told otherwise)."
)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="TCP port.")
@click.option(
    "--api-key",
    default=None,
    help="Require 'Authorization: Bearer KEY' on every endpoint but /health (default: $NEXTWORD_API_KEY).",
)
@click.option("--served-model-name", "name", default=None, help="The model name clients use (default: --model).")
@click.option(
    "--max-tokens", type=click.IntRange(min=1), default=4096, show_default=True, help="Most new tokens per completion."
)
@click.option(
    "--max-body-bytes", type=click.IntRange(min=1024), default=1 << 20, show_default=True, help="Largest request body."
)
@click.option(
    "--max-queue",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Most requests waiting for the model (503 above).",
)
@click.option(
    "--parallel",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Requests let into the model at once (the built-in backends are thread-safe; llamacpp batches them).",
)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="warning",
    show_default=True,
    help="uvicorn's log level.",
)
def serve(
    backend: str | None,
    model: str | None,
    options: tuple[str, ...],
    host: str,
    port: int,
    api_key: str | None,
    name: str | None,
    max_tokens: int,
    max_body_bytes: int,
    max_queue: int,
    parallel: int,
    log_level: str,
) -> None:
    """Serve a model over an OpenAI-compatible HTTP API (/v1/completions, /v1/models, /health,
    /tokenize, /detokenize, /v1/next_words, /v1/explain)."""
    from nextword._api import calls as api
    from nextword.serve.requests import Limits
    from nextword.serve.run import serve as run

    opts: dict[str, Any] = parse_options(options)
    with loading(backend, model):
        generator = api.load(backend, model, **opts)
    limits = Limits(max_body_bytes=max_body_bytes, max_tokens=max_tokens, max_queue=max_queue, parallel=parallel)
    key = api_key if api_key is not None else os.environ.get("NEXTWORD_API_KEY") or None
    run(generator, host=host, port=port, name=name, api_key=key, limits=limits, log_level=log_level)
