"""The terminal view of an explanation (a rich renderable); rich is imported only when it is drawn."""

from __future__ import annotations

from typing import Any

from nextword._analysis.explanation.formatting import pct, prob_colour, shown
from nextword._analysis.explanation.records import Explanation

__all__ = ["render_terminal"]


def render_terminal(expl: Explanation, *, words: bool = True) -> Any:
    """A rich renderable: the text with each token on a background coloured by its probability,
    a table of the tokens (probability, rank, surprisal, alternatives) and, with ``words``, a
    table of the words, and the completions of the last word when the explanation has them.
    Print it with ``rich.console.Console().print(...)``."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    body = Text()
    for tok in expl.tokens:
        body.append(tok.text, style=f"#000000 on {prob_colour(tok.prob)}")
    summary = Text(
        f"{len(expl.scored)} tokens scored, {expl.total_surprisal_bits:.1f} bits, perplexity {expl.perplexity:.2f}",
        style="dim",
    )
    table = Table(title="Tokens", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("token")
    table.add_column("prob", justify="right")
    table.add_column("rank", justify="right")
    table.add_column("bits", justify="right")
    table.add_column(f"top {expl.top} alternatives")
    for tok in expl.tokens:
        table.add_row(
            str(tok.index),
            Text(shown(tok.text), style=f"#000000 on {prob_colour(tok.prob)}"),
            pct(tok.prob),
            "-" if tok.rank is None else str(tok.rank),
            "-" if tok.surprisal_bits is None else f"{tok.surprisal_bits:.2f}",
            Text(", ".join(f"{shown(a.text)} {pct(a.prob)}" for a in tok.alternatives)),
        )
    parts: list[Any] = [body, summary, table]
    if words:
        wtable = Table(title="Words", title_justify="left")
        wtable.add_column("word")
        wtable.add_column("tokens", justify="right")
        wtable.add_column("prob", justify="right")
        wtable.add_column("bits", justify="right")
        for word in expl.words:
            wtable.add_row(
                Text(shown(word.text), style=f"#000000 on {prob_colour(word.prob)}"),
                str(word.end - word.start),
                pct(word.prob),
                "-" if word.surprisal_bits is None else f"{word.surprisal_bits:.2f}",
            )
        parts.append(wtable)
    completion = expl.completion
    if completion is not None and completion.typed is not None:
        ctable = Table(title=f"Completions of {shown(completion.typed)}", title_justify="left")
        ctable.add_column("#", justify="right")
        ctable.add_column("word")
        ctable.add_column("to type")
        ctable.add_column("prob", justify="right")
        for rank, cand in enumerate(completion.candidates, 1):
            ctable.add_row(
                str(rank),
                Text(shown(cand.text), style=f"#000000 on {prob_colour(cand.prob)}"),
                Text(shown(cand.remaining or "")),
                pct(cand.prob),
            )
        parts.append(ctable)
        parts.append(
            Text(
                f"conditioned on the word starting with {shown(completion.typed)} (probability "
                f"{completion.prefix_prob or 0.0:.2e} before conditioning); unexplored mass "
                f"{pct(completion.unexplored_mass)}",
                style="dim",
            )
        )
    return Group(*parts)
