"""Shared formatting of the explain views: the probability colour scale and how token texts and
probabilities are written."""

from __future__ import annotations

import json
import math

__all__ = ["pct", "prob_colour", "shown"]


def prob_colour(prob: float | None) -> str:
    """A background colour (``#rrggbb``) for a probability: red for unlikely (1e-4 and below),
    through yellow, to green for certain; grey for None. The scale is logarithmic."""
    if prob is None:
        return "#d0d0d0"
    x = 1.0 if prob >= 1.0 else max(0.0, (math.log10(prob) + 4.0) / 4.0) if prob > 0 else 0.0
    hue = 120.0 * x  # 0 = red, 60 = yellow, 120 = green
    r, g, b = _hsl_to_rgb(hue, 0.75, 0.72)
    return f"#{r:02x}{g:02x}{b:02x}"


def _hsl_to_rgb(hue: float, sat: float, light: float) -> tuple[int, int, int]:
    c = (1 - abs(2 * light - 1)) * sat
    x = c * (1 - abs((hue / 60.0) % 2 - 1))
    m = light - c / 2
    r, g, b = (c, x, 0.0) if hue < 60 else (x, c, 0.0)
    return round((r + m) * 255), round((g + m) * 255), round((b + m) * 255)


def shown(text: str) -> str:
    """A token's text made visible for tables and tooltips (quotes; escapes for newlines, tabs)."""
    return json.dumps(text, ensure_ascii=False)


def pct(prob: float | None) -> str:
    if prob is None:
        return "-"
    return f"{prob:.2%}" if prob >= 0.0001 else f"{prob:.1e}"
