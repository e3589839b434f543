"""The ``nextword`` command line (also ``python -m nextword``).

User errors print one line (``error: ...``) to stderr and exit with status 1; usage errors exit
with 2; no traceback is shown for either.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

import click

from nextword import api, cli_eval, cli_words
from nextword.config import DecodingConfig
from nextword.errors import NextwordError
from nextword.registry import backends as list_backends
from nextword.registry import get_backend, plugin_manager
from nextword.settings import config_files, resolve

__all__ = ["cli", "main"]

# (option name, click type, help) for each DecodingConfig field the CLI exposes.
_DECODING_OPTIONS: list[tuple[str, Any, str]] = [
    ("max_new_tokens", click.IntRange(min=0), "Tokens to generate (prompt not counted)."),
    ("max_length", click.IntRange(min=1), "Total tokens, prompt included (as in transformers)."),
    ("min_new_tokens", click.IntRange(min=0), "Forbid end-of-text before this many new tokens."),
    ("temperature", float, "Sampling temperature; 0 means greedy."),
    ("top_k", click.IntRange(min=0), "Sample among the k most likely tokens."),
    ("top_p", float, "Nucleus sampling probability mass."),
    ("min_p", float, "Drop tokens below min_p times the top probability."),
    ("typical_p", float, "Locally typical sampling mass."),
    ("repetition_penalty", float, "Penalty for tokens already present (1.0 = none)."),
    ("no_repeat_ngram_size", click.IntRange(min=0), "Never repeat an n-gram of this size."),
    ("num_return_sequences", click.IntRange(min=1), "Sequences to sample per prompt."),
    ("seed", click.IntRange(min=0), "Random seed for sampling."),
]


def _parse_options(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--option")
        out[key.strip()] = value.strip()
    return out


def _backend_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "-o",
        "--option",
        "options",
        multiple=True,
        metavar="KEY=VALUE",
        help="A backend load option, e.g. -o device=cpu -o dtype=float32 (repeatable).",
    )(f)
    f = click.option("-m", "--model", default=None, help="Model: hub id, folder or file (default: from settings).")(f)
    f = click.option("-b", "--backend", default=None, help="Backend name (default: from settings, else hf).")(f)
    return f


def _decoding_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for name, kind, help_text in reversed(_DECODING_OPTIONS):
        f = click.option(f"--{name.replace('_', '-')}", name, type=kind, default=None, help=help_text)(f)
    f = click.option("--stop", "stop", multiple=True, help="Stop string (repeatable); not included in the output.")(f)
    f = click.option(
        "--sample/--greedy", "do_sample", default=None, help="Sample, or always take the most likely token."
    )(f)
    return f


@contextlib.contextmanager
def _loading(backend: str | None, model: str | None) -> Iterator[None]:
    """A spinner on stderr while a model loads (only on a terminal)."""
    if not sys.stderr.isatty():
        yield
        return
    from rich.console import Console

    resolved = resolve(backend, model)
    label = resolved.model or "the default model"
    with Console(stderr=True).status(f"Loading {label} on {resolved.backend}..."):
        yield


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nextword")
def cli() -> None:
    """nextword: next-word prediction and text generation with pluggable backends."""


@cli.command()
@click.argument("prompt")
@_backend_options
@_decoding_options
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
    opts = _parse_options(options)
    DecodingConfig.from_options(None, **decoding)  # invalid options fail before a model loads
    with _loading(backend, model):
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
        click.echo(json.dumps(_generation_json(result), indent=2, ensure_ascii=False))
        return
    for i, seq in enumerate(result.sequences):
        if len(result.sequences) > 1:
            click.secho(f"--- sequence {i + 1} ({seq.finish_reason})", fg="cyan", err=True)
        click.echo(prompt + seq.text)


@cli.command()
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


@cli.command()
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


def _generation_json(result: Any) -> dict[str, Any]:
    return {
        "prompt": result.prompt,
        "prompt_tokens": result.prompt_tokens,
        "sequences": [
            {"text": s.text, "token_ids": list(s.token_ids), "finish_reason": s.finish_reason} for s in result.sequences
        ],
        "settings": result.settings.to_dict(),
    }


_commands_added = False


def _add_plugin_commands() -> None:
    global _commands_added
    if not _commands_added:
        _commands_added = True
        plugin_manager().hook.register_commands(cli=cli)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 a nextword error, 2 a usage error)."""
    try:
        _add_plugin_commands()
        cli.main(args=argv, prog_name="nextword", standalone_mode=False)
    except NextwordError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        return 1
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    return 0


# `predict` and `explain` live with the word-level code they show; `eval` with the evaluation.
cli_words.register(cli)
cli_eval.register(cli)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
