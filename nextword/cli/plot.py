"""A bar chart of a prediction's candidates (``nextword predict --plot``), drawn with matplotlib's
Agg canvas: no pyplot, no window, no global backend switch."""

from __future__ import annotations

import json
from pathlib import Path

from nextword.errors import InvalidInput, NextwordError
from nextword.results import Prediction

__all__ = ["PLOT_FORMATS", "save_plot"]

#: File suffixes ``--plot`` can write, and the matplotlib format of each.
PLOT_FORMATS = {".png": "png", ".svg": "svg"}


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
