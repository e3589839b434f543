"""Saving matplotlib figures the way every ``--plot`` option does: only the Agg canvas (no
pyplot, no window, no global backend switch), a ``.png`` or ``.svg`` file chosen by its suffix,
and clear errors (:class:`~nextword.errors.InvalidInput` for another suffix,
:class:`~nextword.errors.NextwordError` when matplotlib is missing or the file cannot be written).

    fig, fmt = new_figure(path, figsize=(7.0, 3.0))
    ax = fig.add_subplot()
    ...
    save_figure(fig, path, fmt)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from nextword.errors import InvalidInput, NextwordError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["PLOT_FORMATS", "escape_mathtext", "new_figure", "plot_format", "save_figure"]

#: File suffixes a plot can be written to, and the matplotlib format of each.
PLOT_FORMATS = {".png": "png", ".svg": "svg"}


def plot_format(path: str | Path) -> str:
    """The matplotlib format for ``path``'s suffix; :class:`~nextword.errors.InvalidInput` when it
    is not one of :data:`PLOT_FORMATS`."""
    target = Path(path)
    fmt = PLOT_FORMATS.get(target.suffix.lower())
    if fmt is None:
        raise InvalidInput(f"--plot writes .png or .svg files, got {target.name!r}")
    return fmt


def new_figure(path: str | Path, figsize: tuple[float, float]) -> tuple[Figure, str]:
    """A figure on an Agg canvas, and the format :func:`save_figure` will write ``path`` in
    (checked first, so a bad suffix fails before any drawing)."""
    fmt = plot_format(path)
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise NextwordError("--plot needs matplotlib; install it with `pip install matplotlib`") from None
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fmt


def save_figure(fig: Figure, path: str | Path, fmt: str) -> Path:
    """Write ``fig`` to ``path`` (its folder made when missing); returns the path.
    :class:`~nextword.errors.NextwordError` names the file when it cannot be written."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(target, format=fmt)
    except OSError as exc:
        raise NextwordError(f"could not write the plot to {str(target)!r}: {exc.strerror or exc}") from None
    return target


def escape_mathtext(text: str) -> str:
    """``text`` with ``$`` escaped, so that matplotlib shows it as typed (not as math)."""
    return text.replace("$", r"\$")
