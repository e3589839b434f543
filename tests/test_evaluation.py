"""``nextword eval`` / nextword._analysis.evaluation: perplexity, next-word accuracy, keystroke savings checked
against slow references; KL between generators."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pytest
from click.testing import CliRunner

import nextword
from nextword._analysis.evaluation import _Reader, _word_plan, evaluate
from nextword._words.complete import complete_after, predict_or_complete
from nextword._words.search import WordSearch, predict_words, search_words_from_ids
from nextword.cli import cli
from nextword.testing.compare import Primitives

TEXT = "The cat sat on the mat. It was happy, and so was I."


def slow_keystrokes(gen: nextword.Generator, text: str, k: int) -> tuple[int, int, list[int | None]]:
    """Type ``text`` word by word through the public predict functions on *strings* (the text so
    far plus the typed characters), the way an application would."""
    ids = gen.tokenize(text)
    pieces = [gen.detokenize(ids[: i + 1]) for i in range(len(ids))]
    mask_texts = [gen.detokenize(ids[i : i + 1]) for i in range(len(ids))]
    starts = [i for i in range(1, len(ids)) if nextword._words.search.starts_new_word(mask_texts[i])]
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


@pytest.mark.slow
def test_cli_compare_exits_cleanly(tiny_gpt2_dir: Path, tiny_gguf: Callable[[str], Path], tmp_path: Path) -> None:
    """`nextword eval --compare` with llama.cpp and torch in one process: the engine threads are
    stopped and joined before the interpreter finalizes (an atexit handler). Without that, the
    process aborted ("terminate called without an active exception", exit status 134) in about
    one run of three; a few runs here catch that."""
    path = tmp_path / "text.txt"
    path.write_text(" ".join([TEXT] * 70), encoding="utf-8")
    argv = [sys.executable, "-m", "nextword", "eval", str(path), "-b", "llamacpp", "-m", str(tiny_gguf("f32"))]
    argv += ["--compare", f"hf:{tiny_gpt2_dir}", "--max-tokens", "1024", "--window", "128", "--no-words", "--json"]
    for _ in range(4):
        run = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0 and "terminate called" not in run.stderr, run.stderr[-2000:]
        assert json.loads(run.stdout)["compare"]["same_top1"] > 0.9


def test_cli_search_bound_and_reuse_reach_evaluate(
    hf_gen: nextword.Generator, tiny_gpt2_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nextword.cli.evaluation as cli_eval

    seen: list[dict[str, Any]] = []

    def spy(generator: Any, text: str, **settings: Any) -> Any:
        seen.append(settings)
        return evaluate(generator, text, **settings)

    monkeypatch.setattr(cli_eval, "evaluate", spy)
    path = tmp_path / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    runner = CliRunner()
    for beam, reuse in ((1, "none"), (2, "text")):
        args = ["eval", str(path), "-m", str(tiny_gpt2_dir), "--beam-width", str(beam), "--reuse", reuse, "--json"]
        out = runner.invoke(cli, args)
        assert out.exit_code == 0, out.output
        data = json.loads(out.stdout)
        assert seen[-1]["beam_width"] == beam and seen[-1]["reuse"] == reuse
        direct = evaluate(hf_gen, TEXT, beam_width=beam, reuse=reuse)  # type: ignore[arg-type]
        assert data["words"] == direct.n_words
        assert data["keystroke_savings"] == pytest.approx(direct.keystroke_savings, abs=1e-12)
        assert data["word_top3"] == pytest.approx(direct.word_top3, abs=1e-12)
    bad = runner.invoke(cli, ["eval", str(path), "-m", str(tiny_gpt2_dir), "--reuse", "all"])
    assert bad.exit_code == 2 and "'all' is not one of" in bad.output


# ---- the state of the text read so far (KV reuse) against the plain path ------------------------


Plain = Primitives
"""The primitives alone: no forking sessions, so the evaluation takes the plain path (every row
from ``next_token_logits`` on the whole sequence); ``token_bytes`` is passed on so that
completions follow split characters the same way."""


class ForkingSession:
    """A session that recomputes from ``next_token_logits`` (exact: no KV numerics) and forks."""

    def __init__(self, generator: Primitives, ids: list[int]) -> None:
        self.generator = generator
        self.ids = ids

    def logits(self) -> npt.NDArray[np.floating]:
        return self.generator.next_token_logits(self.ids)

    def feed(self, token_id: int) -> None:
        self.ids.append(int(token_id))

    def fork(self) -> ForkingSession:
        return ForkingSession(self.generator, list(self.ids))


class Forking(Primitives):
    """:class:`Plain` with forkable sessions: the evaluation takes the fast path, with numbers
    that cannot depend on how the text was read, so both paths must agree exactly."""

    def open_session(self, prompt_ids: Sequence[int]) -> ForkingSession:
        return ForkingSession(self, list(prompt_ids))


def same_search(a: WordSearch, b: WordSearch, rel: float) -> None:
    assert [w.text for w in a.words] == [w.text for w in b.words]
    assert [w.prob for w in a.words] == pytest.approx([w.prob for w in b.words], rel=rel, abs=1e-12)
    assert a.unexplored_mass == pytest.approx(b.unexplored_mass, rel=rel, abs=1e-12)


def searches_both_ways(gen: Any, plain: Any, text: str, k: int, rel: float) -> int:
    """Every word search and completion search of the evaluation, from the reader's state and
    from scratch on the plain generator: same words, same probabilities. Returns the searches run."""
    ids = gen.tokenize(text)
    plan = _word_plan(gen, ids, [(0, len(ids))])
    reader = _Reader(gen, ids, 0)
    assert reader.session is not None  # the fast path is taken
    runs = 0
    for s, a, word in plan:
        branches = reader.branches_at(a)
        try:
            context = ids[s:a]
            fast = search_words_from_ids(gen, context, k, beam_width=4, branches=branches)
            same_search(fast, search_words_from_ids(plain, context, k, beam_width=4), rel)
            runs += 1
            for typed in range(1, len(word)):
                try:
                    done = complete_after(gen, context, word[:typed], k, beam_width=4, branches=branches)
                except nextword.InvalidInput:
                    with pytest.raises(nextword.InvalidInput):
                        complete_after(plain, context, word[:typed], k, beam_width=4)
                    continue
                slow = complete_after(plain, context, word[:typed], k, beam_width=4)
                same_search(done.search, slow.search, rel)
                assert done.normalizer == pytest.approx(slow.normalizer, rel=rel, abs=1e-12)
                runs += 1
        finally:
            branches.close()
    return runs


def test_reading_state_gives_the_plain_numbers_exactly(byte_gen: nextword.Generator) -> None:
    """With a session whose numbers cannot depend on how the text was read, the fast path (one
    session reading the text, forked for every search of a word, rows shared between them)
    gives exactly the plain path's searches, and the same evaluation."""
    text = "the cat sat on the mat and the dog"
    plain: Any = Plain(byte_gen)
    forking: Any = Forking(byte_gen)
    assert searches_both_ways(forking, plain, text, 3, rel=1e-12) > 9
    a, b = evaluate(plain, text, k=3), evaluate(forking, text, k=3, reuse="text")
    assert a.words == b.words and a.keystrokes == b.keystrokes and a.word_top1 == b.word_top1
    for reuse in ("word", "none"):  # one state per word; every search reading its context anew
        assert evaluate(forking, text, k=3, reuse=reuse).words == b.words
    with pytest.raises(nextword.InvalidInput, match="reuse must be"):
        evaluate(forking, text, reuse="all")  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["hf", "llamacpp"])
def test_reading_state_on_kv_engines(engine: str, hf_gen: nextword.Generator, tiny_gguf: Callable[[str], Path]) -> None:
    """On the real KV-cache engines (hf's cache, llama.cpp's sequence pool) the fast path reads
    each token once and agrees with the plain path: same words, same suggestions, probabilities
    equal up to rounding: the engines' numbers depend on how many tokens one pass holds (the plain
    path reads context and path in one pass; llama.cpp's differ by up to ~2e-4 relative here)."""
    gen = hf_gen if engine == "hf" else nextword.load("llamacpp", str(tiny_gguf("f32")), threads=1)
    text, plain = "The cat sat on the mat", cast(Any, Plain(gen))
    assert searches_both_ways(gen, plain, text, 2, rel=1e-4 if engine == "hf" else 1e-3) > 4
    fast, slow = evaluate(gen, text, k=2, reuse="text"), evaluate(plain, text, k=2)
    assert fast.words == slow.words == evaluate(gen, text, k=2).words
    if engine == "llamacpp":  # one state per word: the numbers of the engine's own open_branches, bit for bit
        ids = gen.tokenize(text)
        reader = _Reader(gen, ids, 0, fork=False)
        for s, a, _ in _word_plan(gen, ids, [(0, len(ids))]):
            branches = reader.branches_at(a)
            try:
                shared = search_words_from_ids(gen, ids[s:a], 2, beam_width=4, branches=branches)
            finally:
                branches.close()
            same_search(shared, search_words_from_ids(gen, ids[s:a], 2, beam_width=4), rel=0.0)
