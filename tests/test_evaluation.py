"""``nextword eval`` / nextword.evaluation: perplexity, next-word accuracy, keystroke savings checked
against slow references; KL between generators."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import nextword
from nextword.cli import cli
from nextword.complete import predict_or_complete
from nextword.evaluation import evaluate
from nextword.words import predict_words

TEXT = "The cat sat on the mat. It was happy, and so was I."


def slow_keystrokes(gen: nextword.Generator, text: str, k: int) -> tuple[int, int, list[int | None]]:
    """Type ``text`` word by word through the public predict functions on *strings* (the text so
    far plus the typed characters), the way an application would."""
    ids = gen.tokenize(text)
    pieces = [gen.detokenize(ids[: i + 1]) for i in range(len(ids))]
    mask_texts = [gen.detokenize(ids[i : i + 1]) for i in range(len(ids))]
    starts = [i for i in range(1, len(ids)) if nextword.words.starts_new_word(mask_texts[i])]
    keystrokes = chars = 0
    ranks: list[int | None] = []
    for a, b in zip(starts, [*starts[1:], len(ids)], strict=True):
        before = pieces[a - 1]
        word = pieces[b - 1][len(before) :]
        chars += len(word)
        top = [c.text for c in predict_words(gen, before, max(k, 3))]
        ranks.append(top.index(word) + 1 if word in top else None)
        cost = len(word)
        if word in top[:k]:
            cost = 1
        else:
            for typed in range(1, len(word) - 1):
                shown = predict_or_complete(gen, before + word[:typed], k, complete="word")
                if word in [c.text for c in shown]:
                    cost = typed + 1
                    break
        keystrokes += cost
    return keystrokes, chars, ranks


def test_keystrokes_and_accuracy_equal_a_slow_simulation(byte_gen: nextword.Generator) -> None:
    """The byte bigram model suggests real words often enough for the savings to be non-trivial."""
    text = "the the the cat sat on the mat and the cat sat"
    result = evaluate(byte_gen, text, k=3)
    keystrokes, chars, ranks = slow_keystrokes(byte_gen, text, 3)
    assert (result.keystrokes, result.n_chars) == (keystrokes, chars)
    assert [w.rank for w in result.words] == ranks
    assert result.word_top1 == sum(r == 1 for r in ranks) / len(ranks)
    assert result.word_top3 == sum(r is not None and r <= 3 for r in ranks) / len(ranks)
    assert result.keystroke_savings == pytest.approx(1 - keystrokes / chars)


@pytest.mark.slow
def test_keystrokes_on_the_tiny_gpt2(hf_gen: nextword.Generator) -> None:
    result = evaluate(hf_gen, TEXT, k=2, max_tokens=9)
    keystrokes, chars, ranks = slow_keystrokes(hf_gen, hf_gen.detokenize(hf_gen.tokenize(TEXT)[:9]), 2)
    assert (result.keystrokes, result.n_chars) == (keystrokes, chars)
    assert [w.rank for w in result.words] == ranks


def test_perplexity_is_the_score(hf_gen: nextword.Generator) -> None:
    result = evaluate(hf_gen, TEXT, words=False)
    score = hf_gen.score(TEXT)
    assert result.n_tokens == len(score.tokens)
    assert result.perplexity == pytest.approx(score.perplexity, rel=1e-5)
    bits = [-t.logprob / math.log(2) for t in score.tokens]
    assert list(result.surprisal_bits) == pytest.approx(bits, rel=1e-4, abs=1e-4)


def test_windows_and_max_tokens(hf_gen: nextword.Generator) -> None:
    n = len(hf_gen.tokenize(TEXT))
    short = evaluate(hf_gen, TEXT, words=False, max_tokens=6)
    assert short.n_tokens == 5
    windowed = evaluate(hf_gen, TEXT, words=False, window=4)
    assert windowed.window == 4
    assert windowed.n_tokens == sum(min(4, n - s) - 1 for s in range(0, n, 4) if min(4, n - s) >= 2)
    with pytest.raises(nextword.InvalidInput, match="window must be"):
        evaluate(hf_gen, TEXT, window=1)
    with pytest.raises(nextword.InvalidInput, match="text is empty"):
        evaluate(hf_gen, "")


def test_compare_with_itself(hf_gen: nextword.Generator) -> None:
    result = evaluate(hf_gen, TEXT, compare=hf_gen, words=False)
    assert result.comparison is not None
    assert result.comparison.mean_kl == 0.0
    assert result.comparison.same_top1 == 1.0
    assert result.comparison.perplexity == result.perplexity


def test_compare_needs_the_same_tokenizer(hf_gen: nextword.Generator, byte_gen: nextword.Generator) -> None:
    with pytest.raises(nextword.InvalidInput, match="tokenize the text differently"):
        evaluate(hf_gen, TEXT, compare=byte_gen, words=False)


@pytest.mark.slow
def test_f32_gguf_against_hf(hf_gen: nextword.Generator, tiny_gguf: Callable[[str], Path]) -> None:
    llama = nextword.load("llamacpp", str(tiny_gguf("f32")))
    result = evaluate(hf_gen, TEXT * 3, compare=llama, words=False)
    assert result.comparison is not None
    assert result.comparison.mean_kl < 1e-6
    assert result.comparison.same_top1 == 1.0
    assert result.comparison.perplexity == pytest.approx(result.perplexity, rel=1e-3)
    assert np.max(result.comparison.kl) < 1e-5


def test_cli(tiny_gpt2_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    model = str(tiny_gpt2_dir)
    runner = CliRunner()
    out = runner.invoke(cli, ["eval", str(path), "-m", model, "--compare", f"hf:{model}", "--json", "--no-words"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["compare"]["mean_kl"] == 0.0 and data["compare"]["same_top1"] == 1.0
    assert len(data["surprisal_bits"]) == data["tokens"]
    plot = tmp_path / "s.png"
    out = runner.invoke(cli, ["eval", str(path), "-m", model, "--max-tokens", "6", "-k", "2", "--plot", str(plot)])
    assert out.exit_code == 0, out.output
    assert "keystroke savings (k=2)" in out.output and plot.read_bytes()[:4] == b"\x89PNG"
    bad = runner.invoke(cli, ["eval", str(path), "-m", model, "--compare", "nocolon"])
    assert isinstance(bad.exception, nextword.InvalidInput) and "BACKEND:MODEL" in str(bad.exception)
