"""The ``predict`` and ``explain`` commands of the ``nextword`` CLI (word-level prediction).

:func:`register` adds them to the CLI group (``predict`` replaces the token-only one)::

    nextword predict "I love cats because" -k 10 [--unit word|token] [--json] [--plot FILE.png]
    nextword explain "The cat sat on the mat" [--top 5] [--json] [--html FILE] [--open]

Errors are :class:`~nextword.errors.NextwordError` subclasses, which the CLI's ``main()`` prints
as one line on stderr.
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

from nextword import api
from nextword.complete import CompleteMode
from nextword.errors import InvalidInput, NextwordError
from nextword.explanation import explain as explain_text
from nextword.explanation import render_terminal, to_html, to_json
from nextword.results import Prediction

__all__ = ["PLOT_FORMATS", "run_prediction", "register", "save_plot"]

#: File suffixes ``--plot`` can write, and the matplotlib format of each.
PLOT_FORMATS = {".png": "png", ".svg": "svg"}


def register(cli: click.Group) -> None:
    """Add ``explain`` and (replacing any existing one) ``predict`` to ``cli``. Idempotent."""
    predict, explain = _commands()
    cli.add_command(predict, "predict")
    cli.add_command(explain, "explain")


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


def save_plot(prediction: Prediction, path: str | Path) -> Path:
    """Save a horizontal bar chart of ``prediction``'s candidates (most likely on top) to a
    ``.png`` or ``.svg`` file. matplotlib is imported here, and only its Agg canvas is used (no
    pyplot, no window, no global backend switch)."""
    target = Path(path)
    fmt = PLOT_FORMATS.get(target.suffix.lower())
    if fmt is None:
        raise InvalidInput(f"--plot writes .png or .svg files, got {target.name!r}")
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise NextwordError("--plot needs matplotlib; install it with `pip install matplotlib`") from None

    cands = list(prediction.candidates)
    labels = [_label(c.text) for c in cands]
    probs = [c.prob for c in cands]
    fig = Figure(figsize=(7.0, 0.9 + 0.38 * max(1, len(cands))), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    y = list(range(len(cands)))
    bars = ax.barh(y, probs, color="#4c9a2a")
    ax.set_yticks(y, labels, fontfamily="monospace")
    ax.invert_yaxis()
    xlabel = "probability"
    if prediction.unit == "word":
        xlabel += f" (unexplored mass {prediction.unexplored_mass:.1%})"
    ax.set_xlabel(xlabel)
    ax.set_xlim(0, max(probs, default=1.0) * 1.18 or 1.0)
    ax.bar_label(bars, labels=[f"{p:.1%}" if p >= 0.001 else f"{p:.1e}" for p in probs], padding=3, fontsize=8)
    unit = "word" if prediction.unit == "word" else "token"
    ax.set_title(_escape_mathtext(f"Next {unit} after {_shorten(prediction.prompt)!r}"), loc="left", fontsize=10)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(target, format=fmt)
    except OSError as exc:
        raise NextwordError(f"could not write the plot to {str(target)!r}: {exc.strerror or exc}") from None
    return target


def _label(text: str) -> str:
    return _escape_mathtext(json.dumps(text, ensure_ascii=False))


def _escape_mathtext(text: str) -> str:
    return text.replace("$", r"\$")


def _shorten(text: str, limit: int = 50) -> str:
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


def _bar(prob: float) -> str:
    return "█" * max(1, round(prob * 40)) if prob >= 0.0125 else "▏"


def _write_text(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise NextwordError(f"could not write {str(path)!r}: {exc.strerror or exc}") from None


def _commands() -> tuple[click.Command, click.Command]:
    # nextword.cli imports this module to register the commands, so its helpers are looked up
    # only when the commands are built.
    from nextword.cli import _backend_options, _loading, _parse_options

    @click.command("predict")
    @click.argument("prompt")
    @_backend_options
    @click.option("-k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="How many candidates.")
    @click.option(
        "--unit",
        type=click.Choice(["word", "token"]),
        default="word",
        show_default=True,
        help="Predict whole words (several tokens each) or single tokens.",
    )
    @click.option(
        "--complete",
        "complete",
        type=click.Choice(["auto", "word", "next"]),
        default="auto",
        show_default=True,
        help="For a prompt ending inside a word: complete that word, predict the next one, or decide (auto).",
    )
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
        opts = _parse_options(options)
        with _loading(backend, model):
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
        completing = prediction.typed is not None
        title = (
            f"Completions of {prediction.typed!r} after {prompt[: len(prompt) - len(prediction.typed.lstrip())]!r}"
            if prediction.typed is not None
            else f"Next {what} after {prompt!r}"
        )
        table = Table(title=escape(title), title_justify="left")
        table.add_column("#", justify="right")
        table.add_column(what)
        if completing:
            table.add_column("to type")
        table.add_column("prob", justify="right")
        table.add_column("")
        for rank, cand in enumerate(prediction.candidates, 1):
            prob = f"{cand.prob:.2%}" if cand.prob >= 0.0001 else f"{cand.prob:.1e}"
            extra = [escape(repr(cand.remaining))] if completing else []
            table.add_row(str(rank), escape(repr(cand.text)), *extra, prob, f"[green]{_bar(cand.prob)}[/green]")
        console = Console()
        console.print(table)
        if prediction.unit == "word":
            console.print(f"[dim]unexplored probability mass: {prediction.unexplored_mass:.2%}[/dim]")
        if prediction.prefix_prob is not None:
            console.print(
                f"[dim]probabilities are conditioned on the word starting with {escape(repr(prediction.typed))} "
                f"(probability {prediction.prefix_prob:.2e} before conditioning)[/dim]"
            )

    @click.command("explain")
    @click.argument("text")
    @_backend_options
    @click.option(
        "--top", type=click.IntRange(min=0), default=5, show_default=True, help="Alternatives shown per token."
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
        as_json: bool,
        html_path: str | None,
        open_page: bool,
    ) -> None:
        """Show how likely the model finds each token and word of TEXT (rank, surprisal,
        alternatives)."""
        opts = _parse_options(options)
        with _loading(backend, model):
            generator = api.load(backend, model, **opts)
        expl = explain_text(generator, text, top=top)
        page: Path | None = None
        if html_path is not None:
            page = Path(html_path)
        elif open_page:
            with tempfile.NamedTemporaryFile("w", suffix=".html", prefix="nextword-explain-", delete=False) as f:
                page = Path(f.name)
        if page is not None:
            _write_text(page, to_html(expl))
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

    return predict, explain
