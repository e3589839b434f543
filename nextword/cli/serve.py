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
@click.option(
    "--served-model-name",
    "name",
    default=None,
    help="The model name clients use (default: --model; for a local path, only its file or folder name).",
)
@click.option(
    "--max-tokens", type=click.IntRange(min=1), default=4096, show_default=True, help="Most new tokens per completion."
)
@click.option(
    "--max-request-tokens",
    type=click.IntRange(min=1),
    default=8192,
    show_default=True,
    help="Most new tokens per request in all (prompts x n x max_tokens).",
)
@click.option(
    "--max-logprobs",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="Most log-probabilities per position (logprobs; /v1/explain's top).",
)
@click.option(
    "--max-logprob-entries",
    type=click.IntRange(min=1),
    default=131072,
    show_default=True,
    help="Most log-probability entries per request: positions (with echo, the prompt's too) x (logprobs + 1).",
)
@click.option(
    "--max-body-bytes", type=click.IntRange(min=1024), default=1 << 20, show_default=True, help="Largest request body."
)
@click.option(
    "--max-json-depth",
    type=click.IntRange(min=4),
    default=32,
    show_default=True,
    help="Deepest nesting of arrays and objects in a request body.",
)
@click.option(
    "--max-tokenize-chars",
    type=click.IntRange(min=1),
    default=65536,
    show_default=True,
    help="Longest text /tokenize takes (characters).",
)
@click.option(
    "--max-detokenize-tokens",
    type=click.IntRange(min=1),
    default=65536,
    show_default=True,
    help="Most token ids /detokenize takes.",
)
@click.option(
    "--max-explain-chars",
    type=click.IntRange(min=1),
    default=8192,
    show_default=True,
    help="Longest text /v1/explain takes (characters).",
)
@click.option(
    "--max-queue",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Most requests waiting for the model (503 with Retry-After above).",
)
@click.option(
    "--parallel",
    type=click.IntRange(min=1),
    default=None,
    help="Generations let into the model at once (default: the backend's own 'parallel' option, "
    "llamacpp's sequence slots whose steps are decoded together; else 1).",
)
@click.option(
    "--schedule",
    type=click.Choice(["exact", "fast"]),
    default=None,
    help="exact (the backend's default): a request's results are bit-identical to the same call alone, "
    "whatever else runs; fast: concurrent sequences and new prompts share decodes for throughput, and "
    "results may differ from a call alone by the amounts in the docs (sets the backend's 'batching').",
)
@click.option(
    "--request-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=600.0,
    show_default=True,
    help="Seconds a request may take from its arrival; then it is cancelled (504, or an error event).",
)
@click.option(
    "--shutdown-grace",
    type=click.FloatRange(min=0),
    default=20.0,
    show_default=True,
    help="On SIGTERM or Ctrl-C, seconds running requests get to finish before they are cancelled.",
)
@click.option(
    "--metrics/--no-metrics",
    default=False,
    show_default=True,
    help="Serve Prometheus metrics at /metrics (behind the API key when one is set).",
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
    max_request_tokens: int,
    max_logprobs: int,
    max_logprob_entries: int,
    max_body_bytes: int,
    max_json_depth: int,
    max_tokenize_chars: int,
    max_detokenize_tokens: int,
    max_explain_chars: int,
    max_queue: int,
    parallel: int | None,
    schedule: str | None,
    request_timeout: float,
    shutdown_grace: float,
    metrics: bool,
    log_level: str,
) -> None:
    """Serve a model over an OpenAI-compatible HTTP API (/v1/completions, /v1/models, /health,
    /tokenize, /detokenize, /v1/next_words, /v1/explain, and /metrics with --metrics).

    Every request is checked against the --max-* limits before any engine work (a 400 naming
    the limit); requests share the model fairly; a request whose client leaves, or that runs
    past --request-timeout, is cancelled at the next engine step."""
    from nextword._api import calls as api
    from nextword.serve.requests import Limits
    from nextword.serve.run import serve as run

    opts: dict[str, Any] = parse_options(options)
    if schedule is not None:
        if opts.setdefault("batching", schedule) != schedule:
            raise click.UsageError(f"--schedule {schedule} contradicts -o batching={opts['batching']}")
    with loading(backend, model):
        generator = api.load(backend, model, **opts)
    limits = Limits(
        max_body_bytes=max_body_bytes,
        max_json_depth=max_json_depth,
        max_tokens=max_tokens,
        max_request_tokens=max_request_tokens,
        max_logprobs=max_logprobs,
        max_logprob_entries=max_logprob_entries,
        max_tokenize_chars=max_tokenize_chars,
        max_detokenize_tokens=max_detokenize_tokens,
        max_explain_chars=max_explain_chars,
        max_queue=max_queue,
        parallel=parallel,
        request_timeout_s=request_timeout,
    )
    key = api_key if api_key is not None else os.environ.get("NEXTWORD_API_KEY") or None
    run(
        generator,
        host=host,
        port=port,
        name=name,
        api_key=key,
        limits=limits,
        log_level=log_level,
        metrics=metrics,
        shutdown_grace_s=shutdown_grace,
    )
