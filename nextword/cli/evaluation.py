"""The ``eval`` command of the ``nextword`` CLI: prediction quality on a text, as a keyboard sees it.

::

    nextword eval FILE... [-b BACKEND] [-m MODEL] [--compare BACKEND:MODEL] [-k 3]
                  [--max-tokens N] [--window N] [--beam-width N] [--reuse word|text|none]
                  [--json] [--plot FILE.png]

The files are read as UTF-8 and joined with a blank line between them. See
:mod:`nextword._analysis.evaluation` for what each figure means.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import click

from nextword._analysis.evaluation import DEFAULT_WINDOW, Evaluation, evaluate, save_surprisal_plot, to_json
from nextword._api import calls as api
from nextword.cli.options import backend_options, loading, parse_options
from nextword.errors import InvalidInput, NextwordError

__all__ = ["eval_command"]


def _read(files: tuple[str, ...]) -> str:
    parts = []
    for name in files:
        try:
            parts.append(Path(name).read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"{name!r} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except OSError as exc:
            raise NextwordError(f"could not read {name!r}: {exc.strerror or exc}") from None
    return "\n\n".join(p.strip("\n") for p in parts)


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.1%}"


def _num(x: float, fmt: str = ".2f") -> str:
    return "-" if math.isnan(x) else format(x, fmt)


def _table(result: Evaluation, names: list[str]) -> Any:
    from rich.table import Table

    table = Table(title=f"{result.n_tokens} tokens, {result.n_words} words, {result.n_chars} characters")
    table.add_column("")
    for name in names[: 2 if result.comparison else 1]:
        table.add_column(name, justify="right")
    rows: list[tuple[str, ...]] = [("perplexity (per token)", _num(result.perplexity))]
    if result.comparison is not None:
        rows[0] += (_num(result.comparison.perplexity),)
    single = [
        ("next-word top-1", _pct(result.word_top1)),
        ("next-word top-3", _pct(result.word_top3)),
        (f"keystroke savings (k={result.k})", _pct(result.keystroke_savings)),
        ("seconds per 1,000 words", _num(result.seconds_per_1000_words, ".0f")),
    ]
    for label, value in single:
        rows.append((label, value, "") if result.comparison is not None else (label, value))
    if result.comparison is not None:
        rows.append(("mean KL (first || second), nats", _num(result.comparison.mean_kl, ".3g"), ""))
        rows.append(("same top-1 token", _pct(result.comparison.same_top1), ""))
    for row in rows:
        table.add_row(*row)
    return table


@click.command("eval")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@backend_options
@click.option(
    "--compare",
    "compare",
    default=None,
    metavar="BACKEND:MODEL",
    help="Also score the text with this generator: mean KL and same-top-1 rate per token.",
)
@click.option("-k", "k", type=click.IntRange(min=1), default=3, show_default=True, help="Suggestions shown.")
@click.option("--max-tokens", type=click.IntRange(min=2), default=None, help="Read at most this many tokens.")
@click.option(
    "--window", type=click.IntRange(min=2), default=DEFAULT_WINDOW, show_default=True, help="Tokens per window."
)
@click.option(
    "--beam-width",
    type=click.IntRange(min=1),
    default=None,
    help="Prefixes of each length the word searches extend (default: from k).",
)
@click.option(
    "--reuse",
    type=click.Choice(["word", "text", "none"]),
    default="word",
    show_default=True,
    help="What the word searches start from: one state per word, the text read so far, or nothing.",
)
@click.option("--no-words", "no_words", is_flag=True, help="Token figures only (no word search, no keyboard).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON (with per-token values).")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="FILE",
    help="Save a plot of the per-token surprisal (.png or .svg).",
)
def eval_command(
    files: tuple[str, ...],
    backend: str | None,
    model: str | None,
    options: tuple[str, ...],
    compare: str | None,
    k: int,
    max_tokens: int | None,
    window: int,
    beam_width: int | None,
    reuse: str,
    no_words: bool,
    as_json: bool,
    plot: str | None,
) -> None:
    """Measure prediction quality on FILE(s): perplexity, next-word top-1/top-3 accuracy and the
    keystroke savings of a keyboard showing k suggestions (optionally against a second model)."""
    if plot is not None and Path(plot).suffix.lower() not in (".png", ".svg"):
        raise InvalidInput(f"--plot writes .png or .svg files, got {Path(plot).name!r}")
    text = _read(files)
    opts = parse_options(options)
    with loading(backend, model):
        generator = api.load(backend, model, **opts)
    other = None
    names = [f"{generator.backend}:{Path(generator.model).name}"]
    if compare is not None:
        other_backend, sep, other_model = compare.partition(":")
        if not sep or not other_backend or not other_model:
            raise InvalidInput(f"--compare takes BACKEND:MODEL, got {compare!r}")
        with loading(other_backend, other_model):
            other = api.load(other_backend, other_model)
        names.append(f"{other_backend}:{Path(other_model).name}")
    settings: dict[str, Any] = {
        "k": k,
        "compare": other,
        "max_tokens": max_tokens,
        "window": window,
        "words": not no_words,
        "beam_width": beam_width,
        "reuse": reuse,
    }
    result = _run(generator, text, settings)
    if plot is not None:
        click.echo(f"wrote {save_surprisal_plot(result, plot, labels=names)}", err=True)
    if as_json:
        click.echo(json.dumps(to_json(result, per_token=True), indent=2, ensure_ascii=False))
        return
    from rich.console import Console

    Console().print(_table(result, names))


def _run(generator: Any, text: str, settings: dict[str, Any]) -> Evaluation:
    if not sys.stderr.isatty():
        return evaluate(generator, text, **settings)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("eval", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return evaluate(generator, text, progress=advance, **settings)
