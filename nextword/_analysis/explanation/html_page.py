"""An explanation as a self-contained HTML page."""

from __future__ import annotations

import html

from nextword._analysis.explanation.formatting import pct, prob_colour, shown
from nextword._analysis.explanation.records import Explanation

__all__ = ["to_html"]

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 60em; }
h1 { font-size: 1.3em; }
.meta { color: #666; font-size: 0.9em; }
.text { font-family: ui-monospace, monospace; font-size: 1.05em; line-height: 2; white-space: pre-wrap;
        border: 1px solid #ddd; padding: 0.8em; border-radius: 6px; }
.tok { position: relative; border-radius: 3px; padding: 0.1em 0; cursor: help; }
.tok .tip { display: none; position: absolute; left: 0; top: 1.8em; z-index: 10; min-width: 16em;
            background: #fff; border: 1px solid #999; border-radius: 5px; padding: 0.4em 0.6em;
            box-shadow: 0 2px 8px rgba(0,0,0,.2); white-space: normal; font-size: 0.85em; line-height: 1.4; }
.tok:hover .tip, .tok:focus .tip { display: block; }
.tip table, table.data { border-collapse: collapse; }
.tip td { padding: 0 0.4em; }
table.data { margin-top: 0.5em; font-size: 0.9em; }
table.data th, table.data td { border-bottom: 1px solid #eee; padding: 0.2em 0.6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { white-space: pre; }
"""


def to_html(expl: Explanation, *, title: str | None = None) -> str:
    """A self-contained HTML page (no scripts, no external resources): the text with each token
    on a background coloured by its probability, a hover tooltip per token (probability, rank,
    surprisal, alternatives), tables of the words and tokens, and the completions of the last word
    when the explanation has them. All text is HTML-escaped."""
    esc = html.escape
    page_title = title or "nextword explain"
    spans = []
    for tok in expl.tokens:
        if tok.scored:
            rows = "".join(
                f"<tr><td><code>{esc(shown(a.text))}</code></td><td class='num'>{esc(pct(a.prob))}</td></tr>"
                for a in tok.alternatives
            )
            tip = (
                f"<b>{esc(shown(tok.text))}</b><br>probability {esc(pct(tok.prob))}, rank {tok.rank}, "
                f"{tok.surprisal_bits:.2f} bits" + (f"<br>most likely here:<table>{rows}</table>" if rows else "")
            )
        else:
            tip = f"<b>{esc(shown(tok.text))}</b><br>first token: not predicted"
        spans.append(
            f"<span class='tok' tabindex='0' style='background:{prob_colour(tok.prob)}'>{esc(tok.text)}"
            f"<span class='tip'>{tip}</span></span>"
        )
    word_rows = "".join(
        f"<tr><td style='background:{prob_colour(w.prob)}'><code>{esc(shown(w.text))}</code></td>"
        f"<td class='num'>{w.end - w.start}</td><td class='num'>{esc(pct(w.prob))}</td>"
        f"<td class='num'>{'-' if w.surprisal_bits is None else f'{w.surprisal_bits:.2f}'}</td></tr>"
        for w in expl.words
    )
    token_rows = "".join(
        f"<tr><td class='num'>{t.index}</td><td style='background:{prob_colour(t.prob)}'>"
        f"<code>{esc(shown(t.text))}</code></td><td class='num'>{esc(pct(t.prob))}</td>"
        f"<td class='num'>{'-' if t.rank is None else t.rank}</td>"
        f"<td class='num'>{'-' if t.surprisal_bits is None else f'{t.surprisal_bits:.2f}'}</td>"
        f"<td>{esc(', '.join(f'{shown(a.text)} {pct(a.prob)}' for a in t.alternatives))}</td></tr>"
        for t in expl.tokens
    )
    completion = ""
    if expl.completion is not None and expl.completion.typed is not None:
        c = expl.completion
        rows = "".join(
            f"<tr><td class='num'>{rank}</td><td style='background:{prob_colour(cand.prob)}'>"
            f"<code>{esc(shown(cand.text))}</code></td><td><code>{esc(shown(cand.remaining or ''))}</code></td>"
            f"<td class='num'>{esc(pct(cand.prob))}</td></tr>"
            for rank, cand in enumerate(c.candidates, 1)
        )
        completion = (
            f"<h2>Completions of <code>{esc(shown(c.typed or ''))}</code></h2>\n"
            "<table class='data'><tr><th>#</th><th>word</th><th>to type</th><th>prob</th></tr>"
            f"{rows}</table>\n<p class='meta'>Conditioned on the word starting with the typed characters "
            f"(probability {c.prefix_prob or 0.0:.2e} before conditioning); unexplored mass "
            f"{esc(pct(c.unexplored_mass))}.</p>\n"
        )
    s = expl.settings
    meta = (
        f"backend {esc(s.backend)} · model {esc(s.model)} · {len(expl.scored)} tokens scored · "
        f"{expl.total_surprisal_bits:.1f} bits · perplexity {expl.perplexity:.2f}"
    )
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        f"<title>{esc(page_title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{esc(page_title)}</h1>\n<p class='meta'>{meta}</p>\n"
        f"<div class='text'>{''.join(spans)}</div>\n"
        "<p class='meta'>Background: red = unlikely (10<sup>-4</sup> or less), yellow = 1%, "
        "green = certain; grey = not predicted. Hover a token for its rank and alternatives.</p>\n"
        "<h2>Words</h2>\n<table class='data'><tr><th>word</th><th>tokens</th><th>prob</th><th>bits</th></tr>"
        f"{word_rows}</table>\n"
        f"{completion}"
        "<h2>Tokens</h2>\n<table class='data'><tr><th>#</th><th>token</th><th>prob</th><th>rank</th>"
        f"<th>bits</th><th>top {expl.top} alternatives</th></tr>{token_rows}</table>\n"
        "</body>\n</html>\n"
    )
