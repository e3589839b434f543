"""``nextword backends`` and ``nextword config``: what is installed, and the effective settings."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import click

from nextword._api.calls import effective_settings
from nextword._api.settings import config_files, resolve
from nextword._plugins.registry import backends as list_backends
from nextword._plugins.registry import get_backend
from nextword._types.decoding_config import DecodingConfig
from nextword._types.results import Settings, to_jsonable
from nextword.cli.options import backend_options, parse_options
from nextword.errors import BackendNotFound

__all__ = ["backends", "config"]


@click.command("backends")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def backends(as_json: bool) -> None:
    """List installed backends, whether each is usable here and, if not, why."""
    infos = list_backends()
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(i) for i in infos], indent=2))
        return
    for info in infos:
        status = click.style("usable", fg="green") if info.usable else click.style("unusable", fg="red")
        line = f"{info.name:<12} {status}"
        if info.default_model:
            line += f"  default model: {info.default_model}"
        click.echo(line)
        if info.description:
            click.echo(f"{'':<13}{info.description}")
        if info.reason:
            click.echo(f"{'':<13}reason: {info.reason}")


@click.command("config")
@backend_options
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def config(backend: str | None, model: str | None, options: tuple[str, ...], as_json: bool) -> None:
    """Print the effective settings and where each value came from (what a load with the same
    -b/-m/-o would use)."""
    resolved = resolve(backend, model, parse_options(options) or None)
    problem: str | None = None
    try:
        spec = get_backend(resolved.backend)
        settings = effective_settings(resolved, spec)
        settings = dataclasses.replace(settings, options=spec.shown_options(settings.options))
    except BackendNotFound as exc:  # still show what was resolved, and why it cannot load
        problem = str(exc)
        settings = Settings(
            backend=resolved.backend,
            model=resolved.model or "",
            options=dict(resolved.options),
            sources=resolved.sources,
        )
    sources = settings.sources
    decoding = DecodingConfig.from_options(None, **resolved.decoding)
    data: dict[str, Any] = {
        "backend": settings.backend,
        "model": settings.model or None,
        "options": settings.options,
        "decoding": decoding.to_dict(),
        "sources": {**sources, **{k: v for k, v in resolved.sources.items() if k.startswith("decoding.")}},
        "config_files": [str(cf.path) for cf in config_files()],
    }
    if problem:
        data["problem"] = problem
    if as_json:
        click.echo(json.dumps(to_jsonable(data), indent=2))
        return
    click.echo(f"backend  = {data['backend']!r}  ({sources.get('backend', 'default')})")
    click.echo(f"model    = {data['model']!r}  ({sources.get('model', 'default')})")
    for name, value in settings.options.items():
        click.echo(f"options.{name} = {value!r}  ({sources.get(f'options.{name}', 'default')})")
    for name, value in decoding.to_dict().items():
        click.echo(f"decoding.{name} = {value!r}  ({data['sources'].get(f'decoding.{name}', 'default')})")
    files = data["config_files"]
    click.echo(f"config files read: {', '.join(files) if files else 'none'}")
    if problem:
        click.secho(f"problem: {problem}", fg="red")
