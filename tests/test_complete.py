"""Completing the word being typed (nextword._words.complete): exact conditional probabilities checked by
brute force on the tiny GPT-2 with the real vocabulary, hf against llamacpp, Unicode, the switch,
and real cases on Gemma 3 270M."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nextword
from nextword import InvalidInput
from nextword._decoding.processors import log_softmax
from nextword._words.complete import (
    FINISHED_WORD,
    complete_word,
    partial_word,
    predict_or_complete,
    read_typed_word,
)
from nextword._words.search import starts_new_word
from nextword.testing.compare import Primitives

# ---- brute force, independent of the completion code ------------------------------------------


def brute_completions(gen: Any, context: list[int], typed: str, depth: int) -> tuple[dict[str, float], float, float]:
    """Enumerate every token path of at most ``depth`` tokens whose text is consistent with
    ``typed`` (from each token's own text, read with ``detokenize``), with probabilities from
    ``next_token_logits`` on the whole sequence. Returns the words of paths that spell all of
    ``typed`` (each path's probability times the probability that a word start follows), the
    total probability of the consistent paths (the normalizer) and of the covering paths'
    continuations (what a search bounded at ``depth`` tokens leaves unexplored)."""
    vocab = len(gen.next_token_logits(context))
    texts = [gen.detokenize([t]) for t in range(vocab)]
    eos = set(gen.eos_token_ids)
    starts = np.array([starts_new_word(x) or t in eos for t, x in enumerate(texts)])
    words: dict[str, float] = {}
    normalizer = 0.0
    rest = 0.0

    def visit(path: list[int], text: str, prob: float) -> None:
        nonlocal normalizer, rest
        logp = log_softmax(gen.next_token_logits(context + path))
        p = np.exp(logp)
        for t in range(vocab):
            piece = texts[t]
            if t in eos or "\ufffd" in piece or (path and starts[t]):
                continue
            new = text + piece
            if not (new.startswith(typed) or typed.startswith(new)):
                continue
            q = prob * float(p[t])
            if new.startswith(typed):  # covers the typed text: a start of the search
                normalizer += q
                if len(path) + 1 <= depth:
                    after = np.exp(log_softmax(gen.next_token_logits([*context, *path, t])))
                    words[new] = words.get(new, 0.0) + q * float(after[starts].sum())
                    rest += q * float(after[~starts].sum())
                else:
                    rest += q
            elif len(path) + 1 < depth:
                visit([*path, t], new, q)
            else:  # still inside the typed text at the depth limit: unresolved
                normalizer += q
                rest += q

    visit([], "", 1.0)
    return words, normalizer, rest


@pytest.mark.slow
@pytest.mark.parametrize(
    ("prompt", "typed", "depth"),
    [
        ("I love ca", " ca", 1),  # the typed part is a whole token (" ca"), and a prefix of many
        ("The old man bought some penic", " penic", 2),  # no token spells it: split across two or more
    ],
)
def test_completion_equals_the_brute_force(hf_gen: nextword.Generator, prompt: str, typed: str, depth: int) -> None:
    gen: Any = Primitives(hf_gen)  # every distribution from next_token_logits, as the brute force reads
    context, _, found_typed = partial_word(gen, prompt)
    assert found_typed == typed
    assert gen.detokenize(context) + typed == prompt
    done = complete_word(gen, prompt, k=100_000, beam_width=100_000, max_tokens=depth)
    expected, normalizer, rest = brute_completions(gen, context, typed, depth)
    assert normalizer > 0.0 and expected
    got = {w.text: w.prob / done.normalizer for w in done.search.words}
    assert got.keys() == expected.keys()
    for text, prob in expected.items():
        assert got[text] == pytest.approx(prob / normalizer, abs=1e-9, rel=1e-9)
    assert done.normalizer == pytest.approx(normalizer, rel=1e-9)
    assert done.unexplored_mass == pytest.approx(rest / normalizer, abs=1e-9)
    # through the backend's own KV-cache and batched paths: equal up to float32 rounding
    native = complete_word(hf_gen, prompt, k=100_000, beam_width=100_000, max_tokens=depth)
    assert {w.text: w.prob / native.normalizer for w in native.search.words} == pytest.approx(got, rel=1e-5)
    assert math.fsum(got.values()) + done.unexplored_mass == pytest.approx(1.0, abs=1e-9)
    pred = done.prediction(5)
    assert pred.typed == typed and len(pred) == 5
    for cand in pred:
        assert cand.text.startswith(typed) and cand.remaining == cand.text[len(typed) :]
        assert gen.detokenize([*context, *cand.token_ids]) == gen.detokenize(context) + cand.text


def test_a_split_prefix_sums_over_its_segmentations(hf_gen: nextword.Generator) -> None:
    """ " penic" has no token of its own: each completion is reached through several token paths."""
    done = complete_word(hf_gen, "The old man bought some penic", k=5)
    assert all(len(w.token_ids) >= 2 for w in done.search.words)
    assert done.covering_paths > 1  # " pen" + "ic...", " p" + "en" + "ic...", " pe" + "nic...", ...
    pred = done.prediction(5)
    assert [c.prob for c in pred] == sorted((c.prob for c in pred), reverse=True)
    assert math.fsum(c.prob for c in pred) + pred.unexplored_mass <= 1.0 + 1e-9


@pytest.mark.parametrize(
    ("prompt", "typed"),
    [
        ("Il est allé à l'écol", " l'écol"),  # accents, an apostrophe inside the word
        ("我喜欢北", "我喜欢北"),  # CJK, split into bytes by GPT-2; nothing before it
        ("오늘은 안녕하", " 안녕하"),  # Hangul syllables
    ],
)
def test_unicode_prefixes(hf_gen: nextword.Generator, prompt: str, typed: str) -> None:
    pred = predict_or_complete(hf_gen, prompt, 3, complete="word")
    assert pred.typed == typed
    assert len(pred) == 3
    for cand in pred:
        assert cand.text.startswith(typed)
        assert 0.0 < cand.prob <= 1.0
    assert math.fsum(c.prob for c in pred) + pred.unexplored_mass <= 1.0 + 1e-9


def test_split_characters_need_token_bytes(hf_gen: nextword.Generator) -> None:
    """A generator without ``token_bytes`` cannot follow a character split across tokens: the
    mass of those tokens is reported as unexplored, never dropped."""

    def NoBytes(inner: nextword.Generator) -> Primitives:  # noqa: N802 - reads like the class it makes
        return Primitives(inner, token_bytes=False)

    complete_word(hf_gen, "오늘은 안녕하", 3)
    with pytest.raises(InvalidInput, match="token_bytes"):
        complete_word(NoBytes(hf_gen), "오늘은 안녕하", 3)  # type: ignore[arg-type]
    # "é" is a token of its own and also two byte tokens: the second spelling goes unexplored
    with_bytes = complete_word(hf_gen, "Il est allé à l'écol", 3)
    without = complete_word(NoBytes(hf_gen), "Il est allé à l'écol", 3)  # type: ignore[arg-type]
    # with bytes only the pieces below PATH_SHARE of the mass go unfollowed; without, a real spelling
    assert with_bytes.unresolved_mass <= 1e-4 * with_bytes.prefix_mass
    assert without.unresolved_mass > 100 * with_bytes.unresolved_mass
    assert without.prefix_mass < with_bytes.prefix_mass
    assert without.prefix_mass + without.unresolved_mass >= with_bytes.prefix_mass * (1 - 1e-6)
    ascii_a = complete_word(hf_gen, "I love ca", 3)
    ascii_b = complete_word(NoBytes(hf_gen), "I love ca", 3)  # type: ignore[arg-type]
    # ASCII only: the same words, with probabilities equal up to the batched/unbatched rounding
    assert [w.text for w in ascii_a.search.words[:3]] == [w.text for w in ascii_b.search.words[:3]]
    assert [w.prob for w in ascii_a.search.words[:3]] == pytest.approx([w.prob for w in ascii_b.search.words[:3]])


def test_the_switch(hf_gen: nextword.Generator) -> None:
    word = predict_or_complete(hf_gen, "I love ca", 3, complete="word")
    nxt = predict_or_complete(hf_gen, "I love ca", 3, complete="next")
    assert word.typed == " ca" and nxt.typed is None
    assert all(c.remaining is not None for c in word) and all(c.remaining is None for c in nxt)
    assert nxt == nextword.predict_words(hf_gen, "I love ca", 3)
    # a trailing space, completed: the next word, healed (it begins with the space)
    spaced = predict_or_complete(hf_gen, "I love ", 3, complete="word")
    assert spaced.typed == " " and all(c.text.startswith(" ") and c.remaining == c.text[1:] for c in spaced)
    # auto completes unless the word exactly as typed holds most of its completions' mass
    for prompt in ("I love ca", "I love cats.", "I love ", "I love cats because"):
        auto = predict_or_complete(hf_gen, prompt, 3)
        done = complete_word(hf_gen, prompt, 3)
        finished = done.prob_of(done.typed) > FINISHED_WORD
        assert auto == (predict_or_complete(hf_gen, prompt, 3, complete="next" if finished else "word")), prompt
        assert (read_typed_word(hf_gen, prompt, 3) is None) == finished
    with pytest.raises(InvalidInput, match="complete must be"):
        predict_or_complete(hf_gen, "I love ca", 3, complete="maybe")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="prompt is empty"):
        predict_or_complete(hf_gen, "", 3, complete="word")


def test_through_the_api_and_the_base_class(hf_gen: nextword.Generator, tiny_gpt2_dir: Path) -> None:
    api = nextword.predict_next("I love ca", 3, complete="word", model=str(tiny_gpt2_dir), options={"device": "cpu"})
    direct = hf_gen.predict_next("I love ca", 3, complete="word")  # type: ignore[call-arg]
    assert [(c.text, c.remaining) for c in api] == [(c.text, c.remaining) for c in direct]
    assert api.settings.backend == "hf"
    with pytest.raises(InvalidInput, match="does not apply to unit='token'"):
        nextword.predict_next("I love ca", unit="token", complete="word", model=str(tiny_gpt2_dir))


def test_third_party_backend(byte_gen: nextword.Generator) -> None:
    """The byte bigram plugin has no token_bytes: ASCII completions work through its texts."""
    pred = predict_or_complete(byte_gen, "The cat sat on the ma", 4, complete="word")
    assert pred.typed == " ma"
    assert all(c.text.startswith(" ma") for c in pred)
    assert math.fsum(c.prob for c in pred) + pred.unexplored_mass <= 1.0 + 1e-9


@pytest.mark.slow
def test_hf_and_llamacpp_agree_on_the_same_weights(
    hf_gen: nextword.Generator, tiny_gguf: Callable[[str], Path]
) -> None:
    llama = nextword.load("llamacpp", str(tiny_gguf("f32")))
    for prompt in ("I love ca", "The old man bought some penic", "오늘은 안녕하"):
        a = complete_word(hf_gen, prompt, 5).prediction(5)
        b = complete_word(llama, prompt, 5).prediction(5)
        assert a.typed == b.typed
        # llama.cpp's F32 logits differ from transformers' by about 5e-3: compare with that noise
        probs_a = {c.text: c.prob for c in a}
        probs_b = {c.text: c.prob for c in b}
        common = probs_a.keys() & probs_b.keys()
        assert len(common) >= 4, (probs_a, probs_b)
        for text in common:
            assert probs_a[text] == pytest.approx(probs_b[text], rel=3e-2)


# ---- a real model -------------------------------------------------------------------------------

# Chosen before running the model, from well-known sentences; the word cut after a few letters.
REAL_CASES = [
    ("The capital of France is Pa", " Paris"),
    ("It was the best of times, it was the wor", " worst"),
    ("To be, or not to be, that is the ques", " question"),
    ("Alexander Fleming discovered penic", " penicillin"),
    ("The Declaration of Independence was signed in 17", " 1776"),
]


@pytest.fixture(scope="module")
def gemma_llama(gemma_gguf: Path) -> nextword.Generator:
    from nextword.testing.pytest_fixtures import require_module

    require_module("llama_cpp", "install nextword[llamacpp]")
    return nextword.load("llamacpp", str(gemma_gguf))


@pytest.mark.slow
def test_gemma_completes_real_words(gemma_llama: nextword.Generator) -> None:
    top = {}
    for prompt, word in REAL_CASES:
        pred = predict_or_complete(gemma_llama, prompt, 3, complete="word")
        assert pred.typed is not None, prompt
        top[prompt] = (pred[0].text, word)
    hits = [p for p, (got, want) in top.items() if got == want]
    assert top[REAL_CASES[0][0]][0] == " Paris"
    assert gemma_llama.predict_next(REAL_CASES[0][0], k=3)[0].text == " Paris"  # auto reads it mid-word
    assert len(hits) >= len(REAL_CASES) - 1, top


# complete="auto" on prompts that end inside a word which is itself a token (the raw next-token
# distribution after it favours a new word), and on prompts that end with a finished word.
AUTO_MID_WORD = [
    ("Happy birth", " birthday"),
    ("He plays the gui", " guitar"),
    ("The capital of France is Pa", " Paris"),
    ("She drank a cup of cof", " coffee"),
]
AUTO_FINISHED = ["I love cats because", "The capital of France is", "Once upon a", "He opened the door and"]


@pytest.mark.slow
def test_gemma_auto_reads_half_typed_and_finished_words(gemma_llama: nextword.Generator) -> None:
    for prompt, word in AUTO_MID_WORD:
        pred = gemma_llama.predict_next(prompt, k=3)
        assert pred.typed is not None and pred[0].text == word, (prompt, [c.text for c in pred])
        assert pred[0].remaining == word[len(pred.typed) :]
    for prompt in AUTO_FINISHED:
        pred = gemma_llama.predict_next(prompt, k=3)
        assert pred.typed is None, (prompt, pred.typed, [c.text for c in pred])
        assert pred == gemma_llama.predict_next(prompt, k=3, complete="next")  # type: ignore[call-arg]
    explained = nextword.explain(gemma_llama, "Happy birth")
    assert explained.completion is not None and explained.completion[0].text == " birthday"


@pytest.mark.slow
def test_gemma_unicode_completions(gemma_llama: nextword.Generator) -> None:
    cases = [
        ("Je suis allé à l'écol", " l'école"),
        ("오늘 날씨가 정말 좋네요. 안녕하", " 안녕하세요"),
    ]
    for prompt, word in cases:
        pred = predict_or_complete(gemma_llama, prompt, 5, complete="word")
        assert word in [c.text for c in pred], (prompt, [c.text for c in pred])
    cjk = predict_or_complete(gemma_llama, "我们明天去北", 5, complete="word")
    assert cjk.typed is not None and cjk.typed.endswith("北")
    assert any("北京" in c.text for c in cjk), [c.text for c in cjk]
