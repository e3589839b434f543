"""Explain a text: how likely the model found each of its tokens and words.

:func:`explain` scores every token of a text against the model's full next-token distribution
(probability, rank among all candidates, surprisal, the most likely alternatives) and groups the
tokens into words. The result renders to a terminal (:func:`render_terminal`), JSON
(:func:`to_json` / :func:`from_json`) and a self-contained HTML page (:func:`to_html`).
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from nextword.config import DecodingConfig
from nextword.decoding.detok import IncrementalDetokenizer, piece_text
from nextword.decoding.processors import log_softmax, top_indices
from nextword.errors import InvalidInput
from nextword.protocol import Generator
from nextword.results import Settings
from nextword.validation import check_length, encode_text
from nextword.words import word_start_mask

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

_LN2 = math.log(2.0)


@dataclasses.dataclass(frozen=True)
class Alternative:
    """A token the model considered at a position: its id, text and probability."""

    token_id: int
    text: str
    prob: float


@dataclasses.dataclass(frozen=True)
class TokenExplanation:
    """One token of the explained text.

    ``text`` is the token's share of the text: the tokens' texts joined give the decoded text (a
    character split across tokens is given whole to the token that completes it). The first token
    has no context to be predicted from, so its ``prob``, ``logprob``, ``rank`` and
    ``surprisal_bits`` are None and it has no alternatives. Otherwise ``prob`` is the probability
    the model gave this token after the tokens before it, ``rank`` its place among all vocabulary
    tokens (1 = most likely; ties ordered by token id, as in ``predict_next``), ``surprisal_bits``
    is ``-log2(prob)`` and ``alternatives`` the ``top`` most likely tokens at this position.
    """

    index: int
    token_id: int
    text: str
    prob: float | None
    logprob: float | None
    rank: int | None
    surprisal_bits: float | None
    alternatives: tuple[Alternative, ...] = ()

    @property
    def scored(self) -> bool:
        """Whether the token was predicted (every token but the first)."""
        return self.prob is not None


@dataclasses.dataclass(frozen=True)
class WordExplanation:
    """A word of the text: tokens ``start`` to ``end - 1``.

    ``prob`` is the product of its tokens' conditional probabilities and ``surprisal_bits`` their
    sum of surprisals; both are None for a word that holds the unscored first token. (Unlike
    :func:`nextword.words.predict_words`, no "the word ends here" factor is included: that event is
    the next word's first token, so the word surprisals of a text add up to its total.)
    """

    text: str
    start: int
    end: int
    prob: float | None
    surprisal_bits: float | None


@dataclasses.dataclass(frozen=True)
class Explanation:
    """Per-token and per-word likelihoods of a text under a model."""

    text: str
    tokens: tuple[TokenExplanation, ...]
    words: tuple[WordExplanation, ...]
    top: int
    settings: Settings

    @property
    def scored(self) -> tuple[TokenExplanation, ...]:
        """The tokens that were predicted (all but the first)."""
        return tuple(t for t in self.tokens if t.scored)

    @property
    def total_surprisal_bits(self) -> float:
        """Surprisal of the whole text (bits), the first token excepted."""
        return math.fsum(t.surprisal_bits for t in self.tokens if t.surprisal_bits is not None)

    @property
    def perplexity(self) -> float:
        """exp(mean negative log-likelihood) over the scored tokens (nan when none were scored)."""
        scored = self.scored
        if not scored:
            return math.nan
        mean = -math.fsum(t.logprob for t in scored if t.logprob is not None) / len(scored)
        return math.exp(mean) if mean < 709 else math.inf  # past that, exp overflows a float


def explain(generator: Generator, text: str, *, top: int = 5) -> Explanation:
    """Explain ``text`` token by token and word by word under ``generator``'s model.

    Each token after the first is scored against the full next-token distribution given the
    tokens before it, exactly as :meth:`~nextword.protocol.Generator.predict_next` would on that
    prefix (probability, log-probability, rank, surprisal, the ``top`` most likely alternatives).
    Words follow the rule of :func:`nextword.words.starts_new_word`; a token the tokenizer added
    before the text (a BOS token) is a word of its own.

    Costs one next-token distribution per token (through ``open_session`` when the generator has
    it, so a KV-cache backend reads each token once). Raises
    :class:`~nextword.errors.InvalidInput` for an empty text or a bad ``top`` and
    :class:`~nextword.errors.ContextLengthExceeded` when the text does not fit the context window.
    """
    if isinstance(top, bool) or not isinstance(top, int) or top < 0:
        raise InvalidInput(f"top must be a non-negative integer, got {top!r}")
    generator.capabilities.require("predict_next", generator.backend)
    ids = encode_text(generator, text, "text")
    check_length(len(ids), 0, generator.context_length, "text")

    texts = _token_texts(generator, ids)
    tokens = [TokenExplanation(0, ids[0], texts[0], None, None, None, None)]
    starts: npt.NDArray[np.bool_] | None = None
    word_start = [True]
    for i, logp in enumerate(_distributions(generator, ids), start=1):
        if starts is None:
            starts = word_start_mask(generator, logp.shape[-1])
        token = ids[i]
        lp = float(logp[token])
        rank = 1 + int(np.count_nonzero(logp > lp)) + int(np.count_nonzero(logp[:token] == lp))
        alternatives = tuple(
            Alternative(int(t), piece_text(generator.detokenize, ids[i - 1 : i], int(t)), float(math.exp(logp[t])))
            for t in top_indices(logp, top)
        )
        tokens.append(TokenExplanation(i, token, texts[i], math.exp(lp), lp, rank, -lp / _LN2, alternatives))
        word_start.append(bool(starts[token]) if token < starts.shape[-1] else True)
    if len(ids) > 1 and _added_first_token(generator, ids, text):
        word_start[1] = True  # the first token was added by the tokenizer (BOS): a word of its own
    return Explanation(
        text=text, tokens=tuple(tokens), words=_words(tokens, word_start), top=top, settings=generator.settings
    )


def _added_first_token(generator: Generator, ids: Sequence[int], text: str) -> bool:
    """Whether the tokenizer put a token of its own (a BOS token) before the text."""
    return generator.detokenize(list(ids)) != text and generator.detokenize(list(ids[1:])) == text


def _distributions(generator: Generator, ids: Sequence[int]) -> Iterator[npt.NDArray[np.float64]]:
    """Log-probabilities of the token after ``ids[:i]``, for i = 1 .. len(ids) - 1."""
    open_session = getattr(generator, "open_session", None)
    if open_session is None:
        for i in range(1, len(ids)):
            yield log_softmax(np.asarray(generator.next_token_logits(list(ids[:i]))))
        return
    session = open_session(list(ids[:1]))
    for i in range(1, len(ids)):
        yield log_softmax(np.asarray(session.logits()))
        if i + 1 < len(ids):
            session.feed(ids[i])


def _token_texts(generator: Generator, ids: Sequence[int]) -> list[str]:
    detok = IncrementalDetokenizer(generator.detokenize)
    texts = [detok.add(t) for t in ids]
    texts[-1] += detok.flush()
    return texts


def _words(tokens: Sequence[TokenExplanation], word_start: Sequence[bool]) -> tuple[WordExplanation, ...]:
    bounds = [i for i, s in enumerate(word_start) if s] + [len(tokens)]
    words = []
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        group = tokens[start:end]
        text = "".join(t.text for t in group)
        if all(t.logprob is not None for t in group):
            logprob = math.fsum(t.logprob for t in group if t.logprob is not None)
            words.append(WordExplanation(text, start, end, math.exp(logprob), -logprob / _LN2))
        else:
            words.append(WordExplanation(text, start, end, None, None))
    return tuple(words)


# ---- colours ----------------------------------------------------------------------------------


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


def _shown(text: str) -> str:
    """A token's text made visible for tables and tooltips (quotes; escapes for newlines, tabs)."""
    return json.dumps(text, ensure_ascii=False)


def _pct(prob: float | None) -> str:
    if prob is None:
        return "-"
    return f"{prob:.2%}" if prob >= 0.0001 else f"{prob:.1e}"


# ---- terminal -----------------------------------------------------------------------------------


def render_terminal(expl: Explanation, *, words: bool = True) -> Any:
    """A rich renderable: the text with each token on a background coloured by its probability,
    a table of the tokens (probability, rank, surprisal, alternatives) and, with ``words``, a
    table of the words. Print it with ``rich.console.Console().print(...)``."""
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
            Text(_shown(tok.text), style=f"#000000 on {prob_colour(tok.prob)}"),
            _pct(tok.prob),
            "-" if tok.rank is None else str(tok.rank),
            "-" if tok.surprisal_bits is None else f"{tok.surprisal_bits:.2f}",
            Text(", ".join(f"{_shown(a.text)} {_pct(a.prob)}" for a in tok.alternatives)),
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
                Text(_shown(word.text), style=f"#000000 on {prob_colour(word.prob)}"),
                str(word.end - word.start),
                _pct(word.prob),
                "-" if word.surprisal_bits is None else f"{word.surprisal_bits:.2f}",
            )
        parts.append(wtable)
    return Group(*parts)


# ---- JSON ---------------------------------------------------------------------------------------


def to_json(expl: Explanation) -> dict[str, Any]:
    """A JSON-friendly dict of the explanation (settings included); :func:`from_json` reads it back."""
    return {
        "text": expl.text,
        "top": expl.top,
        "tokens": [dataclasses.asdict(t) for t in expl.tokens],
        "words": [dataclasses.asdict(w) for w in expl.words],
        "total_surprisal_bits": expl.total_surprisal_bits,
        "perplexity": expl.perplexity if math.isfinite(expl.perplexity) else None,
        "settings": expl.settings.to_dict(),
    }


def from_json(data: dict[str, Any]) -> Explanation:
    """The :class:`Explanation` that :func:`to_json` wrote (derived totals are recomputed)."""
    try:
        tokens = tuple(
            TokenExplanation(
                **{k: v for k, v in t.items() if k != "alternatives"},
                alternatives=tuple(Alternative(**a) for a in t["alternatives"]),
            )
            for t in data["tokens"]
        )
        words = tuple(WordExplanation(**w) for w in data["words"])
        s = data["settings"]
        settings = Settings(
            backend=s["backend"],
            model=s["model"],
            options=dict(s.get("options", {})),
            decoding=DecodingConfig.from_options(None, **s.get("decoding", {})),
            sources=dict(s.get("sources", {})),
        )
        return Explanation(text=data["text"], tokens=tokens, words=words, top=data["top"], settings=settings)
    except (KeyError, TypeError) as exc:
        raise InvalidInput(f"not an explanation written by nextword.explain.to_json: {exc}") from None


# ---- HTML ---------------------------------------------------------------------------------------

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
    surprisal, alternatives), and tables of the words and tokens. All text is HTML-escaped."""
    esc = html.escape
    page_title = title or "nextword explain"
    spans = []
    for tok in expl.tokens:
        if tok.scored:
            rows = "".join(
                f"<tr><td><code>{esc(_shown(a.text))}</code></td><td class='num'>{esc(_pct(a.prob))}</td></tr>"
                for a in tok.alternatives
            )
            tip = (
                f"<b>{esc(_shown(tok.text))}</b><br>probability {esc(_pct(tok.prob))}, rank {tok.rank}, "
                f"{tok.surprisal_bits:.2f} bits" + (f"<br>most likely here:<table>{rows}</table>" if rows else "")
            )
        else:
            tip = f"<b>{esc(_shown(tok.text))}</b><br>first token: not predicted"
        spans.append(
            f"<span class='tok' tabindex='0' style='background:{prob_colour(tok.prob)}'>{esc(tok.text)}"
            f"<span class='tip'>{tip}</span></span>"
        )
    word_rows = "".join(
        f"<tr><td style='background:{prob_colour(w.prob)}'><code>{esc(_shown(w.text))}</code></td>"
        f"<td class='num'>{w.end - w.start}</td><td class='num'>{esc(_pct(w.prob))}</td>"
        f"<td class='num'>{'-' if w.surprisal_bits is None else f'{w.surprisal_bits:.2f}'}</td></tr>"
        for w in expl.words
    )
    token_rows = "".join(
        f"<tr><td class='num'>{t.index}</td><td style='background:{prob_colour(t.prob)}'>"
        f"<code>{esc(_shown(t.text))}</code></td><td class='num'>{esc(_pct(t.prob))}</td>"
        f"<td class='num'>{'-' if t.rank is None else t.rank}</td>"
        f"<td class='num'>{'-' if t.surprisal_bits is None else f'{t.surprisal_bits:.2f}'}</td>"
        f"<td>{esc(', '.join(f'{_shown(a.text)} {_pct(a.prob)}' for a in t.alternatives))}</td></tr>"
        for t in expl.tokens
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
        "<h2>Tokens</h2>\n<table class='data'><tr><th>#</th><th>token</th><th>prob</th><th>rank</th>"
        f"<th>bits</th><th>top {expl.top} alternatives</th></tr>{token_rows}</table>\n"
        "</body>\n</html>\n"
    )
