"""Explain a text: how likely the model found each of its tokens and words.

:func:`explain` scores every token of a text against the model's full next-token distribution
(probability, rank among all candidates, surprisal, the most likely alternatives) and groups the
tokens into words. The result renders to a terminal (:func:`render_terminal`), JSON
(:func:`to_json` / :func:`from_json`) and a self-contained HTML page (:func:`to_html`).

Modules: ``records`` (the result types), ``compute`` (:func:`explain`), ``formatting`` (colour
scale), ``terminal``, ``html_page`` and ``json_io`` (the views).
"""

from __future__ import annotations

from nextword._analysis.explanation.compute import explain
from nextword._analysis.explanation.formatting import prob_colour
from nextword._analysis.explanation.html_page import to_html
from nextword._analysis.explanation.json_io import from_json, to_json
from nextword._analysis.explanation.records import Alternative, Explanation, TokenExplanation, WordExplanation
from nextword._analysis.explanation.terminal import render_terminal

__all__ = [
    "Alternative",
    "Explanation",
    "TokenExplanation",
    "WordExplanation",
    "explain",
    "from_json",
    "prob_colour",
    "render_terminal",
    "to_html",
    "to_json",
]
