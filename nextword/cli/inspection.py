"""``nextword backends`` and ``nextword config``: what is installed, and the effective settings."""

from __future__ import annotations

import dataclasses
import json

import click

from nextword.decoding_config import DecodingConfig
from nextword.errors import NextwordError
from nextword.registry import backends as list_backends
from nextword.registry import get_backend
from nextword.settings import config_files, resolve

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
@click.option("-b", "--backend", default=None, help="Backend to resolve for (default: from settings).")
@click.option("-m", "--model", default=None, help="Model to resolve for (default: from settings).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def config(backend: str | None, model: str | None, as_json: bool) -> None:
    """Print the effective settings and where each value came from."""
    resolved = resolve(backend, model)
    sources = dict(resolved.sources)
    model_name = resolved.model
    try:
        spec = get_backend(resolved.backend)
    except NextwordError as exc:
        spec = None
        problem: str | None = str(exc)
    else:
        problem = None
    if model_name is None and spec is not None:
        model_name = spec.default_model
        sources["model"] = f"default of the {spec.name!r} backend"
    options = dict(resolved.options)
    if spec is not None:
        options = spec.validate_options(options)
        for name, opt in spec.options.items():
            if name not in options and opt.default is not None:
                options[name] = opt.default
                sources[f"options.{name}"] = "default"
    decoding = DecodingConfig.from_options(None, **resolved.decoding)
    data = {
        "backend": resolved.backend,
        "model": model_name,
        "options": options,
        "decoding": decoding.to_dict(),
        "sources": sources,
        "config_files": [str(cf.path) for cf in config_files()],
    }
    if problem:
        data["problem"] = problem
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"backend  = {resolved.backend!r}  ({sources.get('backend', 'default')})")
    click.echo(f"model    = {model_name!r}  ({sources.get('model', 'default')})")
    for name, value in options.items():
        click.echo(f"options.{name} = {value!r}  ({sources.get(f'options.{name}', 'default')})")
    for name, value in decoding.to_dict().items():
        click.echo(f"decoding.{name} = {value!r}  ({sources.get(f'decoding.{name}', 'default')})")
    files = data["config_files"]
    click.echo(f"config files read: {', '.join(files) if files else 'none'}")
    if problem:
        click.secho(f"problem: {problem}", fg="red")
