"""The ``nextword serve`` command."""

from __future__ import annotations

import os
from typing import Any

import click

__all__ = ["register"]


def register(cli: click.Group) -> None:
    """Add ``serve`` to ``cli``."""
    cli.add_command(_command(), "serve")


def _command() -> click.Command:
    from nextword.cli import _backend_options, _loading, _parse_options

    @click.command()
    @_backend_options
    @click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback by default).")
    @click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="TCP port.")
    @click.option(
        "--api-key",
        default=None,
        help="Require 'Authorization: Bearer KEY' on every endpoint but /health (default: $NEXTWORD_API_KEY).",
    )
    @click.option("--served-model-name", "name", default=None, help="Model name clients use (default: --model).")
    @click.option(
        "--max-tokens",
        type=click.IntRange(min=1),
        default=4096,
        show_default=True,
        help="Most new tokens per completion.",
    )
    @click.option(
        "--max-body-bytes",
        type=click.IntRange(min=1024),
        default=1 << 20,
        show_default=True,
        help="Largest request body.",
    )
    @click.option(
        "--max-queue",
        type=click.IntRange(min=1),
        default=256,
        show_default=True,
        help="Most requests waiting for the model (503 above).",
    )
    @click.option(
        "--log-level",
        type=click.Choice(["critical", "error", "warning", "info", "debug"]),
        default="warning",
        show_default=True,
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
        log_level: str,
    ) -> None:
        """Serve a model over an OpenAI-compatible HTTP API (/v1/completions, /v1/models, ...)."""
        from nextword import api
        from nextword.serve.requests import Limits
        from nextword.serve.run import serve as run

        opts: dict[str, Any] = _parse_options(options)
        with _loading(backend, model):
            generator = api.load(backend, model, **opts)
        limits = Limits(max_body_bytes=max_body_bytes, max_tokens=max_tokens, max_queue=max_queue)
        key = api_key if api_key is not None else os.environ.get("NEXTWORD_API_KEY") or None
        run(generator, host=host, port=port, name=name, api_key=key, limits=limits, log_level=log_level)

    return serve
