"""Korean end to end on the real pretrained Gemma 3 270M (llama.cpp backend: it loads in about a second).

Korean is written in 어절 (space-separated words: a stem with its particles and endings attached,
"고양이를" = "고양이" + "를"). Gemma's vocabulary holds common syllables and words whole, and falls back
to single UTF-8 *bytes* for rare syllables ("똠" is three tokens of one byte each). These tests check
that nextword never shows a reader half a syllable and never cuts an 어절 apart: in word prediction,
in streaming, in ``explain`` (terminal table and HTML page, the page read back by a real browser)
and on the command line.

The sentences are ordinary Korean (the issue's example, the first line of the national anthem, the
start of the constitution's preamble, a sentence naming a dish with rare syllables); the assertions
are properties of the output, not the model's particular words.
"""

from __future__ import annotations

import html.parser
import math
import os
import re
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest

import nextword
from nextword.cli import main
from nextword.testing.pytest_fixtures import require_module, unavailable

pytestmark = pytest.mark.slow

REPLACEMENT = "\ufffd"

PROMPTS = [
    "나는 고양이를 좋아한다. 왜냐하면",
    "동해 물과 백두산이 마르고 닳도록",
    "유구한 역사와 전통에 빛나는 우리 대한국민은",
    "그 식당의 대표 메뉴는 똠얌꿍이다. 나는 그 식당에 갈 때마다",
]

SENTENCES = [
    "나는 고양이를 좋아한다. 왜냐하면 고양이는 귀엽기 때문이다.",
    "그 식당의 대표 메뉴는 똠얌꿍이다.",
]


@pytest.fixture(scope="module")
def gemma(gemma_gguf: Path) -> nextword.Generator:
    require_module("llama_cpp", "install nextword[llamacpp]")
    return nextword.load("llamacpp", str(gemma_gguf))


def is_byte_token(gen: nextword.Generator, token: int) -> bool:
    """A byte-fallback token: alone it is only part of a character."""
    return REPLACEMENT in gen.detokenize([token])


def is_hangul_syllable(ch: str) -> bool:
    return "\uac00" <= ch <= "\ud7a3"


def is_conjoining_jamo(ch: str) -> bool:
    """Jamo that only appear when a syllable is taken apart (not the compatibility jamo ㅋ, ㅠ)."""
    return "\u1100" <= ch <= "\u11ff" or "\ua960" <= ch <= "\ua97f" or "\ud7b0" <= ch <= "\ud7ff"


def assert_whole_text(text: str) -> None:
    assert REPLACEMENT not in text, f"{text!r} holds part of a character"
    assert not any(is_conjoining_jamo(ch) for ch in text), f"{text!r} holds a syllable taken apart"
    assert unicodedata.normalize("NFC", text) == text, f"{text!r} is not in composed (NFC) form"


# ---- predict_next --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def predictions(gemma: nextword.Generator) -> dict[str, nextword.Prediction]:
    return {prompt: gemma.predict_next(prompt, k=5) for prompt in PROMPTS}


@pytest.mark.parametrize("prompt", PROMPTS, ids=["cats", "anthem", "constitution", "rare-syllables"])
def test_predicted_words_are_whole_eojeol(
    gemma: nextword.Generator, predictions: dict[str, nextword.Prediction], prompt: str
) -> None:
    prediction = predictions[prompt]
    assert len(prediction.candidates) == 5
    prompt_ids = gemma.tokenize(prompt)
    head = gemma.detokenize(prompt_ids)
    for word in prediction.candidates:
        assert_whole_text(word.text)
        # one 어절 at most: an optional leading space, then no whitespace inside
        assert word.text.isspace() or re.fullmatch(r"\s?\S+", word.text), f"{word.text!r} is not one word"
        # the word is exactly what its tokens write after the prompt
        assert gemma.detokenize([*prompt_ids, *word.token_ids]) == head + word.text


def test_an_eojeol_probability_is_its_tokens_then_a_word_start(gemma: nextword.Generator) -> None:
    """Recomputed from raw next-token logits: P(" 고양이는") = p(" 고") p("양") p("이는") x P(a word
    starts next), so the particle is part of the word and the word ends only where a space or
    punctuation would follow."""
    from nextword._words.search import search_words, word_start_mask

    prompt = PROMPTS[0]
    ids = gemma.tokenize(prompt)

    def dist(path: tuple[int, ...]) -> np.ndarray:
        # read as the search reads it (prompt in one batch, then token by token): llama.cpp's
        # numbers for Gemma Q4_K_M depend on that order (up to 0.009 in a probability here)
        session = gemma.open_session(ids)  # type: ignore[attr-defined]
        for token in path:
            session.feed(token)
        logits = np.asarray(session.logits(), dtype=np.float64)
        e = np.exp(logits - logits.max())
        return e / e.sum()

    words = [w for w in search_words(gemma, prompt, k=5).words[:5] if len(w.token_ids) > 1]
    assert words
    for word in words:
        total = 0.0
        for path, _ in word.paths:
            p = math.prod(float(dist(path[:i])[t]) for i, t in enumerate(path))
            after = dist(path)
            total += p * float(after[word_start_mask(gemma, after.shape[-1])].sum())
        assert total == pytest.approx(word.prob, rel=1e-6), word.text


def test_multi_token_eojeol_keep_their_particles_and_rare_syllables(
    gemma: nextword.Generator, predictions: dict[str, nextword.Prediction]
) -> None:
    words = [w for p in predictions.values() for w in p.candidates if any(map(is_hangul_syllable, w.text))]
    # word prediction joins tokens into 어절: several candidates are more than one token
    # (e.g. " 고"+"양"+"이는"), and each ends where the text would have a space or punctuation
    multi = [w for w in words if len(w.token_ids) >= 2]
    assert len(multi) >= 3, [w.text for w in words]
    # a rare syllable travels as single bytes: the word built from those bytes is still whole
    dish = predictions[PROMPTS[3]]
    spelled_in_bytes = [w for w in dish.candidates if any(is_byte_token(gemma, t) for t in w.token_ids)]
    assert spelled_in_bytes, [w.text for w in dish.candidates]
    for w in spelled_in_bytes:
        assert_whole_text(w.text)
        assert "똠" in w.text


def test_token_level_pieces_are_joined_by_the_word_level(
    gemma: nextword.Generator, predictions: dict[str, nextword.Prediction]
) -> None:
    prompt = PROMPTS[0]
    tokens = {c.token_ids[0]: c.text for c in gemma.predict_next(prompt, k=10, unit="token").candidates}
    # a first token the token view lists alone (" 고") comes back in the word view as a whole 어절
    joined = [w for w in predictions[prompt].candidates if w.token_ids[0] in tokens and len(w.token_ids) > 1]
    assert joined, [w.text for w in predictions[prompt].candidates]
    for w in joined:
        assert w.text.startswith(tokens[w.token_ids[0]]) and len(w.text) > len(tokens[w.token_ids[0]])


# ---- stream ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "options"),
    [
        ("햏햏 햏햏 햏햏 햏햏", {"max_new_tokens": 24}),
        (PROMPTS[3], {"max_new_tokens": 16}),
        (PROMPTS[0], {"max_new_tokens": 24, "do_sample": True, "top_p": 0.95, "seed": 7}),
    ],
    ids=["bytes-greedy", "rare-syllables-greedy", "cats-sampled"],
)
def test_stream_never_splits_a_syllable(gemma: nextword.Generator, prompt: str, options: dict[str, object]) -> None:
    stream = gemma.stream(prompt, **options)
    chunks = list(stream)
    result = stream.result
    assert "".join(chunks) == result.text == gemma.generate(prompt, **options).text
    ids = list(result.sequences[0].token_ids)
    # every chunk but a last one cut by the token budget holds whole characters only
    for chunk in chunks[:-1]:
        assert_whole_text(chunk)
    complete = REPLACEMENT not in gemma.detokenize(ids)
    if complete or result.finish_reason != "length":
        assert_whole_text(chunks[-1])
    else:  # the budget ended inside a character: only the last chunk may say so
        assert chunks[-1].endswith(REPLACEMENT)
        assert_whole_text(chunks[-1].rstrip(REPLACEMENT))
    if prompt.startswith("햏"):
        # the rare syllable came as bytes, several tokens per chunk: the case a naive stream breaks
        assert sum(is_byte_token(gemma, t) for t in ids) >= 6
        assert len(chunks) < len(ids)


# ---- explain: terminal table and HTML page -------------------------------------------------------


def eojeol(sentence: str) -> list[str]:
    """The sentence's 어절 without the punctuation nextword counts as a word of its own."""
    return [re.sub(r"[.,!?]+$", "", w) for w in sentence.split()]


@pytest.mark.parametrize("sentence", SENTENCES, ids=["cats", "rare-syllables"])
def test_explain_groups_tokens_into_eojeol(gemma: nextword.Generator, sentence: str) -> None:
    expl = nextword.explain(gemma, sentence)
    assert "".join(t.text for t in expl.tokens) == "<bos>" + sentence
    assert "".join(w.text for w in expl.words) == "<bos>" + sentence
    for t in expl.tokens:
        assert_whole_text(t.text)
    hangul_words = [w.text.strip() for w in expl.words if any(map(is_hangul_syllable, w.text))]
    assert hangul_words == eojeol(sentence)
    for t in expl.tokens:
        # an alternative reads as the text it would write there: never empty, and the same as the
        # token's own text when the token is among them (the last byte of "똠" reads "똠", and its
        # alternatives the syllables they would complete)
        assert all(a.text for a in t.alternatives), t
        same = [a.text for a in t.alternatives if a.token_id == t.token_id]
        if same and t.text:
            assert same == [t.text], t


def test_explain_terminal_table_aligns_korean(gemma: nextword.Generator) -> None:
    from rich.cells import cell_len
    from rich.console import Console

    from nextword._analysis.explanation import render_terminal

    sentence = SENTENCES[0]
    console = Console(record=True, width=110, color_system=None, force_terminal=False)
    console.print(render_terminal(nextword.explain(gemma, sentence)))
    out = console.export_text()
    assert REPLACEMENT not in out
    for word in eojeol(sentence):
        assert f'" {word}"' in out or f'"{word}"' in out, word
    # Hangul takes two terminal cells: a table that counted characters instead would be ragged
    tables = _tables(out)
    assert len(tables) == 2  # tokens, words
    for block in tables:
        assert len({cell_len(line) for line in block}) == 1, "\n".join(block)


def _tables(text: str) -> list[list[str]]:
    blocks: list[list[str]] = []
    current: list[str] = []
    for line in text.splitlines():
        if line[:1] in "┏┃┡│└":
            current.append(line)
            if line.startswith("└"):
                blocks.append(current)
                current = []
    return blocks


def find_browser() -> str:
    for name in ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    unavailable(
        "no headless Chromium to check the HTML page in a browser "
        "(apt-get install chromium-headless-shell; .ci/run installs it)"
    )


def dump_dom(browser: str, page: Path) -> str:
    out = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--dump-dom", page.as_uri()],
        capture_output=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr.decode(errors="replace")[-2000:]
    return out.stdout.decode("utf-8")


class _PageText(html.parser.HTMLParser):
    """Text of the coloured passage (``div.text``, tooltips left out) and of the table cells."""

    def __init__(self) -> None:
        super().__init__()
        self.passage: list[str] = []
        self.cells: list[str] = []
        self._stack: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("br", "meta", "link"):
            return
        self._stack.append((tag, dict(attrs).get("class") or ""))
        if tag == "td":
            self.cells.append("")

    def handle_endtag(self, tag: str) -> None:
        while self._stack:
            if self._stack.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        classes = [c for _, c in self._stack]
        if "text" in classes and "tip" not in classes:
            self.passage.append(data)
        if self._stack and self._stack[-1][0] in ("td", "code") and self.cells and "tip" not in classes:
            self.cells[-1] += data


def test_explain_html_page_reads_korean_in_a_browser(gemma_gguf: Path, tmp_path: Path) -> None:
    browser = find_browser()
    sentence = SENTENCES[1]
    page = tmp_path / "설명.html"  # a Korean file name too
    # The page is what is tested, not the process: the command runs here.
    assert main(["explain", sentence, "-b", "llamacpp", "-m", str(gemma_gguf), "--html", str(page)]) == 0
    assert page.exists()
    parsed = _PageText()
    parsed.feed(dump_dom(browser, page))
    assert "".join(parsed.passage) == "<bos>" + sentence
    for word in eojeol(sentence):
        assert any(word in cell for cell in parsed.cells), word


# ---- command line ----------------------------------------------------------------------------------


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("NEXTWORD_")}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "nextword", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=full_env,
        timeout=300,
    )


def test_cli_prints_korean(
    gemma: nextword.Generator, gemma_gguf: Path, predictions: dict[str, nextword.Prediction]
) -> None:
    prompt = PROMPTS[0]
    out = run_cli("predict", prompt, "-b", "llamacpp", "-m", str(gemma_gguf), "-k", "5")
    assert out.returncode == 0, out.stderr
    assert REPLACEMENT not in out.stdout
    for word in predictions[prompt].candidates:
        assert repr(word.text) in out.stdout or word.text.strip() in out.stdout, word.text
    streamed = run_cli(
        "generate", prompt, "-b", "llamacpp", "-m", str(gemma_gguf), "--max-new-tokens", "16", "--stream"
    )
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout == prompt + gemma.generate(prompt, max_new_tokens=16).text + "\n"


def test_cli_on_a_terminal_that_cannot_show_korean(gemma_gguf: Path) -> None:
    # a latin-1 terminal: the Korean is written as escapes, and nothing aborts
    out = subprocess.run(
        [sys.executable, "-m", "nextword", "predict", PROMPTS[1], "-b", "llamacpp", "-m", str(gemma_gguf), "-k", "3"],
        capture_output=True,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("NEXTWORD_")}, "PYTHONIOENCODING": "latin-1"},
        timeout=300,
    )
    assert out.returncode == 0, out.stderr.decode("latin-1")
    assert "Traceback" not in out.stderr.decode("latin-1")
    for word in PROMPTS[1].split()[:2]:  # (the title may wrap between words)
        assert word.encode("latin-1", "backslashreplace") in out.stdout
