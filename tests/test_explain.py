"""Explaining a text (nextword._analysis.explanation) and the word-level CLI commands (nextword.cli.words)."""

from __future__ import annotations

import html
import html.parser
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

import nextword
from nextword import ContextLengthExceeded, InvalidInput
from nextword._analysis.explanation import (
    Explanation,
    explain,
    from_json,
    prob_colour,
    render_terminal,
    to_html,
    to_json,
)
from nextword._decoding.processors import log_softmax
from nextword._words.search import starts_new_word
from nextword.cli import main

TEXT = "The cat sat on the mat, and the dog's bowl was empty."


@pytest.fixture(scope="module")
def hf_expl(hf_gen: nextword.Generator) -> Explanation:
    return explain(hf_gen, TEXT, top=4)


def test_tokens_match_predict_next_at_every_position(hf_gen: nextword.Generator, hf_expl: Explanation) -> None:
    ids = hf_gen.tokenize(TEXT)
    assert [t.token_id for t in hf_expl.tokens] == ids
    first = hf_expl.tokens[0]
    assert first.prob is None and first.rank is None and first.surprisal_bits is None and not first.alternatives
    for tok in hf_expl.tokens[1:]:
        i = tok.index
        prefix = hf_gen.detokenize(ids[:i])
        assert hf_gen.tokenize(prefix) == ids[:i]  # the prefix text reads back as the same tokens
        pred = hf_gen.predict_next(prefix, k=4, unit="token")
        assert [a.token_id for a in tok.alternatives] == [c.token_id for c in pred]
        assert [a.text for a in tok.alternatives] == [c.text for c in pred]
        # explain() reads logits through a KV-cache session, predict_next recomputes the whole
        # prefix: float32 rounding differs by about 1e-6 relative.
        assert [a.prob for a in tok.alternatives] == pytest.approx([c.prob for c in pred], rel=1e-4)
        logp = log_softmax(hf_gen.next_token_logits(ids[:i]))
        assert tok.prob == pytest.approx(math.exp(logp[tok.token_id]), rel=1e-4)
        assert tok.logprob is not None and tok.surprisal_bits == pytest.approx(-tok.logprob / math.log(2))
        assert tok.rank == 1 + int(np.sum(logp > logp[tok.token_id]))
        if tok.rank <= 50:
            ranked = hf_gen.predict_next(prefix, k=tok.rank, unit="token")
            assert ranked[tok.rank - 1].token_id == tok.token_id


def test_totals_agree_with_score(hf_gen: nextword.Generator, hf_expl: Explanation) -> None:
    score = hf_gen.score(TEXT)
    assert hf_expl.total_surprisal_bits == pytest.approx(-score.logprob / math.log(2), rel=1e-5)
    assert hf_expl.perplexity == pytest.approx(score.perplexity, rel=1e-5)


def test_words_group_the_tokens(hf_expl: Explanation) -> None:
    assert "".join(t.text for t in hf_expl.tokens) == TEXT
    assert "".join(w.text for w in hf_expl.words) == TEXT
    texts = [w.text for w in hf_expl.words]
    assert texts[:3] == ["The", " cat", " sat"] and " dog's" in texts and "," in texts
    assert hf_expl.words[0].prob is None  # holds the unscored first token
    assert [w.start for w in hf_expl.words[1:]] == [w.end for w in hf_expl.words[:-1]]
    for word in hf_expl.words[1:]:
        tokens = hf_expl.tokens[word.start : word.end]
        assert starts_new_word(tokens[0].text)
        assert not any(starts_new_word(t.text) for t in tokens[1:])
        assert word.prob == pytest.approx(math.prod(t.prob or 0.0 for t in tokens), rel=1e-9)
        assert word.surprisal_bits == pytest.approx(sum(t.surprisal_bits or 0.0 for t in tokens), rel=1e-9)
    scored_words = [w.surprisal_bits for w in hf_expl.words if w.surprisal_bits is not None]
    assert math.fsum(scored_words) == pytest.approx(hf_expl.total_surprisal_bits)


def test_bytes_join_into_whole_characters(byte_gen: nextword.Generator) -> None:
    text = "Un café, s'il vous plaît"
    expl = explain(byte_gen, text, top=2)
    assert len(expl.tokens) == len(text.encode("utf-8"))
    assert "".join(t.text for t in expl.tokens) == text
    assert "\ufffd" not in "".join(t.text for t in expl.tokens)
    assert [w.text for w in expl.words][:4] == ["Un", " café", ",", " s'il"]
    for tok in expl.tokens[1:]:
        assert tok.rank is not None and 1 <= tok.rank <= 257 and len(tok.alternatives) == 2


def test_json_round_trips(hf_expl: Explanation) -> None:
    data = json.loads(json.dumps(to_json(hf_expl), allow_nan=False))
    assert data["tokens"][1]["alternatives"][0].keys() == {"token_id", "text", "prob"}
    assert from_json(data) == hf_expl
    with pytest.raises(InvalidInput):
        from_json({"text": "x"})


def test_html_escapes_everything_and_is_well_formed(hf_gen: nextword.Generator) -> None:
    text = "<script>alert('x & y')</script> \"quoted\""
    page = to_html(explain(hf_gen, text, top=3), title="<b>title</b>")
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page.lower() and "<b>title" not in page
    assert "&lt;" in page and "&amp;" in page
    checker = _TagChecker()
    checker.feed(page)
    checker.close()
    assert checker.stack == [] and checker.text_tokens
    assert html_unescaped_text(checker.text_tokens) == text


def html_unescaped_text(parts: list[str]) -> str:
    return "".join(parts)


class _TagChecker(html.parser.HTMLParser):
    """Checks that tags nest properly and collects the token spans' own text."""

    VOID = {"meta", "br"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.text_tokens: list[str] = []
        self._in_tok = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.VOID:
            return
        self.stack.append(tag)
        cls = dict(attrs).get("class")
        if cls == "tok":
            self.text_tokens.append("")
            self._in_tok = len(self.stack)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, (self.stack, tag)
        if len(self.stack) == self._in_tok:
            self._in_tok = 0
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        if self._in_tok and len(self.stack) == self._in_tok:
            self.text_tokens[-1] += data


def test_terminal_rendering(hf_expl: Explanation) -> None:
    console = Console(record=True, width=160, color_system="truecolor")
    console.print(render_terminal(hf_expl))
    out = console.export_text()
    assert "Tokens" in out and "Words" in out and '" dog"' in out and "perplexity" in out
    assert prob_colour(None) == "#d0d0d0" and prob_colour(1.0) != prob_colour(1e-6)


def test_errors(hf_gen: nextword.Generator) -> None:
    with pytest.raises(InvalidInput, match="empty"):
        explain(hf_gen, "")
    with pytest.raises(InvalidInput, match="top"):
        explain(hf_gen, "hi", top=-1)
    with pytest.raises(ContextLengthExceeded):
        explain(hf_gen, "word " * 2000)
    single = explain(hf_gen, "Hello")
    assert len(single.tokens) == 1 and not single.scored and math.isnan(single.perplexity)


# ---- the CLI --------------------------------------------------------------------------------------


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Any:
    def call(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return call


def test_cli_predict_words_and_tokens(run: Any, tiny_gpt2_dir: Path) -> None:
    model = str(tiny_gpt2_dir)
    code, out, err = run("predict", "I love cats because", "-m", model, "-k", "4", "--json")
    assert code == 0, err
    data = json.loads(out)
    words = nextword.predict_next("I love cats because", model=model, k=4)  # what the command must show
    assert data["unit"] == "word" and [c["text"] for c in data["candidates"]] == [c.text for c in words]
    assert [c["prob"] for c in data["candidates"]] == pytest.approx([c.prob for c in words], rel=1e-6)
    assert data["unexplored_mass"] == pytest.approx(words.unexplored_mass, abs=1e-9)
    code, out, _ = run("predict", "I love cats because", "-m", model, "-k", "3", "--unit", "token", "--json")
    tokens = json.loads(out)
    expected = nextword.predict_next("I love cats because", model=model, k=3, unit="token")
    assert code == 0 and tokens["unit"] == "token"
    assert [c["token_ids"] for c in tokens["candidates"]] == [list(c.token_ids) for c in expected]
    code, out, _ = run("predict", "I love cats because", "-m", model, "-k", "3")
    assert code == 0 and "Next word after" in out and "unexplored" in out


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_cli_predict_plot(run: Any, tiny_gpt2_dir: Path, tmp_path: Path, suffix: str) -> None:
    target = tmp_path / f"chart{suffix}"
    code, _, err = run("predict", "Price: $5 and", "-m", str(tiny_gpt2_dir), "-k", "5", "--plot", str(target))
    assert code == 0, err
    data = target.read_bytes()
    assert data.startswith(b"\x89PNG") if suffix == ".png" else b"<svg" in data


def test_cli_errors_are_one_line(run: Any, tiny_gpt2_dir: Path, tmp_path: Path) -> None:
    code, _, err = run("predict", "hi", "-m", str(tiny_gpt2_dir), "--plot", str(tmp_path / "chart.gif"))
    assert code == 1 and err.count("error:") == 1 and ".png or .svg" in err and "Traceback" not in err
    code, _, err = run("explain", "", "-m", str(tiny_gpt2_dir))
    assert code == 1 and err.strip().startswith("error:") and "empty" in err and len(err.strip().splitlines()) == 1


def test_cli_explain(run: Any, tiny_gpt2_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = str(tiny_gpt2_dir)
    code, out, err = run("explain", "The cat sat", "-m", model, "--top", "2", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert [t["text"] for t in data["tokens"]] == ["The", " cat", " sat"]
    expected = explain(nextword.load("hf", model), "The cat sat", top=2)
    for shown, tok in zip(data["tokens"][1:], expected.tokens[1:], strict=True):
        assert [a["token_id"] for a in shown["alternatives"]] == [a.token_id for a in tok.alternatives]
        assert shown["prob"] == pytest.approx(tok.prob, rel=1e-6)
    code, out, _ = run("explain", "The cat sat", "-m", model)
    assert code == 0 and "Tokens" in out and "rank" in out
    opened: list[str] = []

    def fake_open(url: str) -> bool:
        opened.append(url)
        return True

    monkeypatch.setattr("webbrowser.open", fake_open)
    page = tmp_path / "out" / "page.html"
    code, _, err = run("explain", "The <cat> sat", "-m", model, "--html", str(page), "--open")
    assert code == 0 and page.exists() and "&lt;" in page.read_text() and "wrote" in err
    assert opened == [page.resolve().as_uri()]


# ---- the completion of a word the text ends in ---------------------------------------------------


def test_completion_of_the_last_word(hf_gen: nextword.Generator, tiny_gpt2_dir: Path) -> None:
    """A text ending inside a word carries that word's completions: the prediction predict_next
    gives for the text with unit="word", in the data, the JSON, and both renderings."""
    text = "The cat sat on the ma"
    expl = explain(hf_gen, text, top=3, complete="word")
    pred = nextword.predict_next(text, 3, unit="word", complete="word", backend="hf", model=str(tiny_gpt2_dir))
    assert expl.completion is not None and expl.completion.typed == pred.typed == " ma"
    got = expl.completion.candidates
    assert [(c.text, c.remaining, c.token_ids) for c in got] == [(c.text, c.remaining, c.token_ids) for c in pred]
    assert [c.prob for c in got] == pytest.approx([c.prob for c in pred], rel=1e-9, abs=0)
    assert all(c.text.startswith(" ma") and c.text == " ma" + (c.remaining or "") for c in got)
    assert expl.completion.prefix_prob == pytest.approx(pred.prefix_prob, rel=1e-9)
    assert from_json(json.loads(json.dumps(to_json(expl), allow_nan=False))) == expl
    page = to_html(expl)
    assert "Completions of" in page and html.escape(got[0].text) in page
    console = Console(record=True, width=160)
    console.print(render_terminal(expl))
    assert "Completions of" in console.export_text()
    # "auto" decides as predict_next does; "next" and top=0 give none.
    auto = nextword.predict_next(text, 3, unit="word", backend="hf", model=str(tiny_gpt2_dir))
    auto_expl = explain(hf_gen, text, top=3)
    if auto.typed is None:
        assert auto_expl.completion is None
    else:
        assert auto_expl.completion is not None and auto_expl.completion.candidates == auto.candidates
    assert explain(hf_gen, text, top=3, complete="next").completion is None
    assert explain(hf_gen, text, top=0, complete="word").completion is None
    with pytest.raises(InvalidInput, match="complete must be"):
        explain(hf_gen, text, complete="sometimes")  # type: ignore[arg-type]


def test_cli_explain_completion(run: Any, tiny_gpt2_dir: Path) -> None:
    model, text = str(tiny_gpt2_dir), "The cat sat on the ma"
    code, out, err = run("explain", text, "-m", model, "--top", "2", "--complete", "word", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["completion"]["typed"] == " ma" and len(data["completion"]["candidates"]) == 2
    code, out, err = run("explain", text, "-m", model, "--complete", "next", "--json")
    assert code == 0 and json.loads(out)["completion"] is None
