"""``nextword predict`` and ``nextword explain``: the next words after a prompt, and how likely
the model finds each token and word of a text.

    nextword predict "I love cats because" -k 10 [--unit word|token] [--complete auto|word|next]
                     [--json] [--plot FILE.png]
    nextword explain "The cat sat on the mat" [--top 5] [--json] [--html FILE] [--open]
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import webbrowser
from pathlib import Path
from typing import Any, Literal

import click

from nextword._analysis.explanation import explain as explain_text
from nextword._analysis.explanation import render_terminal, to_html, to_json
from nextword._api import calls as api
from nextword._types.results import Prediction
from nextword._words.complete import CompleteMode
from nextword.cli.options import backend_options, complete_option, loading, parse_options, write_text
from nextword.cli.plot import PLOT_FORMATS, save_plot
from nextword.errors import InvalidInput

__all__ = ["explain", "predict", "run_prediction"]


def run_prediction(
    prompt: str,
    k: int,
    unit: Literal["word", "token"],
    *,
    complete: CompleteMode = "auto",
    backend: str | None = None,
    model: str | None = None,
    options: dict[str, Any] | None = None,
) -> Prediction:
    """The prediction ``nextword predict`` shows, through :func:`nextword.predict_next` (so the
    effective settings are attached)."""
    return api.predict_next(prompt, k, unit=unit, complete=complete, backend=backend, model=model, options=options)


def _bar(prob: float) -> str:
    return "█" * max(1, round(prob * 40)) if prob >= 0.0125 else "▏"


@click.command("predict")
@click.argument("prompt")
@backend_options
@click.option("-k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="How many candidates.")
@click.option(
    "--unit",
    type=click.Choice(["word", "token"]),
    default="word",
    show_default=True,
    help="Predict whole words (several tokens each) or single tokens.",
)
@complete_option("For a prompt ending inside a word: complete that word, predict the next one, or decide (auto).")
@click.option("--json", "as_json", is_flag=True, help="Print the candidates as JSON.")
@click.option(
    "--plot",
    "plot",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="FILE",
    help="Also save a bar chart of the candidates (.png or .svg).",
)
def predict(
    prompt: str,
    backend: str | None,
    model: str | None,
    options: tuple[str, ...],
    k: int,
    unit: Literal["word", "token"],
    complete: CompleteMode,
    as_json: bool,
    plot: str | None,
) -> None:
    """Show the most likely next words (or tokens) after PROMPT, with probability bars."""
    if plot is not None and Path(plot).suffix.lower() not in PLOT_FORMATS:
        raise InvalidInput(f"--plot writes .png or .svg files, got {Path(plot).name!r}")
    opts = parse_options(options)
    with loading(backend, model):
        api.load(backend, model, **opts)
    if unit == "token" and complete != "auto":
        raise InvalidInput("--complete applies to word predictions, not to --unit token")
    prediction = run_prediction(prompt, k, unit, complete=complete, backend=backend, model=model, options=opts)
    if plot is not None:
        written = save_plot(prediction, plot)
        click.echo(f"wrote {written}", err=True)
    if as_json:
        payload = {
            "prompt": prompt,
            "unit": prediction.unit,
            "unexplored_mass": prediction.unexplored_mass,
            "typed": prediction.typed,
            "prefix_prob": prediction.prefix_prob,
            "settings": prediction.settings.to_dict(),
            "candidates": [dataclasses.asdict(c) for c in prediction.candidates],
        }
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    what = "word" if prediction.unit == "word" else "token"
    typed = prediction.typed
    title = f"Completions of {typed!r}" if typed is not None else f"Next {what} after {prompt!r}"
    table = Table(title=escape(title), title_justify="left")
    table.add_column("#", justify="right")
    table.add_column(what)
    if typed is not None:
        table.add_column("to type")
    table.add_column("prob", justify="right")
    table.add_column("")
    for rank, cand in enumerate(prediction.candidates, 1):
        prob = f"{cand.prob:.2%}" if cand.prob >= 0.0001 else f"{cand.prob:.1e}"
        extra = [escape(repr(cand.remaining))] if typed is not None else []
        table.add_row(str(rank), escape(repr(cand.text)), *extra, prob, f"[green]{_bar(cand.prob)}[/green]")
    console = Console()
    console.print(table)
    if prediction.unit == "word":
        console.print(f"[dim]unexplored probability mass: {prediction.unexplored_mass:.2%}[/dim]")
    if typed is not None and prediction.prefix_prob is not None:
        console.print(
            f"[dim]conditioned on the word starting with {escape(repr(typed))} "
            f"(probability {prediction.prefix_prob:.2e} before conditioning)[/dim]"
        )


@click.command("explain")
@click.argument("text")
@backend_options
@click.option("--top", type=click.IntRange(min=0), default=5, show_default=True, help="Alternatives shown per token.")
@complete_option(
    "For a text ending inside a word: show that word's completions (word), never (next), or decide (auto)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the explanation as JSON.")
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="FILE",
    help="Also write a self-contained HTML page.",
)
@click.option("--open", "open_page", is_flag=True, help="Open the HTML page in a browser.")
def explain(
    text: str,
    backend: str | None,
    model: str | None,
    options: tuple[str, ...],
    top: int,
    complete: CompleteMode,
    as_json: bool,
    html_path: str | None,
    open_page: bool,
) -> None:
    """Show how likely the model finds each token and word of TEXT (rank, surprisal,
    alternatives)."""
    opts = parse_options(options)
    with loading(backend, model):
        generator = api.load(backend, model, **opts)
    expl = explain_text(generator, text, top=top, complete=complete)
    page: Path | None = None
    if html_path is not None:
        page = Path(html_path)
    elif open_page:
        with tempfile.NamedTemporaryFile("w", suffix=".html", prefix="nextword-explain-", delete=False) as f:
            page = Path(f.name)
    if page is not None:
        write_text(page, to_html(expl))
        click.echo(f"wrote {page}", err=True)
        if open_page and not webbrowser.open(page.resolve().as_uri()):
            click.echo(f"could not open a browser; the page is at {page}", err=True)
    if as_json:
        click.echo(json.dumps(to_json(expl), indent=2, ensure_ascii=False, allow_nan=False))
        return
    from rich.console import Console

    Console().print(render_terminal(expl))
    if math.isnan(expl.perplexity):
        click.echo("(a single token: nothing to score)", err=True)
