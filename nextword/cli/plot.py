"""A bar chart of a prediction's candidates (``nextword predict --plot``), drawn with matplotlib's
Agg canvas: no pyplot, no window, no global backend switch."""

from __future__ import annotations

import json
from pathlib import Path

from nextword._analysis.plotting import PLOT_FORMATS, escape_mathtext, new_figure, save_figure
from nextword._types.results import Prediction

__all__ = ["PLOT_FORMATS", "save_plot"]


def save_plot(prediction: Prediction, path: str | Path) -> Path:
    """Save a horizontal bar chart of ``prediction``'s candidates (most likely on top) to a
    ``.png`` or ``.svg`` file. matplotlib is imported here, and only its Agg canvas is used (no
    pyplot, no window, no global backend switch)."""
    cands = list(prediction.candidates)
    fig, fmt = new_figure(path, figsize=(7.0, 0.9 + 0.38 * max(1, len(cands))))
    labels = [_label(c.text) for c in cands]
    probs = [c.prob for c in cands]
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
    ax.set_title(escape_mathtext(f"Next {unit} after {_shorten(prediction.prompt)!r}"), loc="left", fontsize=10)
    return save_figure(fig, path, fmt)


def _label(text: str) -> str:
    return escape_mathtext(json.dumps(text, ensure_ascii=False))


def _shorten(text: str, limit: int = 50) -> str:
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]
