"""Options and helpers shared by the commands of the ``nextword`` CLI: backend/model/load options,
decoding options, ``KEY=VALUE`` parsing and the loading spinner. Plugins' commands may use them."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from nextword._api.settings import resolve
from nextword.errors import NextwordError

__all__ = ["DECODING_OPTIONS", "backend_options", "decoding_options", "loading", "parse_options", "write_text"]

#: (option name, click type, help) for each DecodingConfig field the CLI exposes.
DECODING_OPTIONS: list[tuple[str, Any, str]] = [
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


def parse_options(pairs: tuple[str, ...]) -> dict[str, str]:
    """``("device=cpu", ...)`` as ``{"device": "cpu", ...}``; a pair without ``=`` or without a
    key is a usage error naming ``--option``."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--option")
        out[key.strip()] = value.strip()
    return out


def backend_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``-b/--backend``, ``-m/--model`` and the repeatable ``-o/--option KEY=VALUE`` to a command."""
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


def decoding_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add one option per :data:`DECODING_OPTIONS` entry (default None: unset), ``--stop``
    (repeatable) and ``--sample/--greedy`` to a command."""
    for name, kind, help_text in reversed(DECODING_OPTIONS):
        f = click.option(f"--{name.replace('_', '-')}", name, type=kind, default=None, help=help_text)(f)
    f = click.option("--stop", "stop", multiple=True, help="Stop string (repeatable); not included in the output.")(f)
    f = click.option(
        "--sample/--greedy", "do_sample", default=None, help="Sample, or always take the most likely token."
    )(f)
    return f


def complete_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--complete auto|word|next`` (default auto): how a text ending inside a word is read."""
    return click.option(
        "--complete",
        "complete",
        type=click.Choice(["auto", "word", "next"]),
        default="auto",
        show_default=True,
        help=help_text,
    )


@contextlib.contextmanager
def loading(backend: str | None, model: str | None) -> Iterator[None]:
    """A spinner on stderr while a model loads (only on a terminal)."""
    if not sys.stderr.isatty():
        yield
        return
    from rich.console import Console

    resolved = resolve(backend, model)
    label = resolved.model or "the default model"
    with Console(stderr=True).status(f"Loading {label} on {resolved.backend}..."):
        yield


def write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path``, creating its folder; an OS error becomes a NextwordError."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise NextwordError(f"could not write {str(path)!r}: {exc.strerror or exc}") from None
