"""``nextword generate``: continue a prompt."""

from __future__ import annotations

import json
from typing import Any

import click

from nextword._api import calls as api
from nextword._types.decoding_config import DecodingConfig
from nextword.cli.options import backend_options, decoding_options, loading, parse_options

__all__ = ["generate"]


@click.command("generate")
@click.argument("prompt")
@backend_options
@decoding_options
@click.option("--stream", "do_stream", is_flag=True, help="Print text as it is generated.")
@click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON.")
def generate(
    prompt: str,
    backend: str | None,
    model: str | None,
    options: tuple[str, ...],
    do_stream: bool,
    as_json: bool,
    stop: tuple[str, ...],
    **decoding: Any,
) -> None:
    """Continue PROMPT with the chosen backend and decoding options."""
    decoding = {k: v for k, v in decoding.items() if v is not None}
    if stop:
        decoding["stop"] = list(stop)
    opts = parse_options(options)
    DecodingConfig.from_options(None, **decoding)  # invalid options fail before a model loads
    with loading(backend, model):
        api.load(backend, model, **opts)
    if do_stream:
        if as_json:
            raise click.UsageError("--stream and --json cannot be combined")
        stream = api.stream(prompt, backend=backend, model=model, options=opts, **decoding)
        click.echo(prompt, nl=False)
        for chunk in stream:
            click.echo(chunk, nl=False)
        click.echo()
        return
    result = api.generate(prompt, backend=backend, model=model, options=opts, **decoding)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        return
    for i, seq in enumerate(result.sequences):
        if len(result.sequences) > 1:
            click.secho(f"--- sequence {i + 1} ({seq.finish_reason})", fg="cyan", err=True)
        click.echo(prompt + seq.text)
