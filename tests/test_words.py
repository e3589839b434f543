"""Next-word prediction (nextword._words.search): exact word probabilities, mass accounting, bounds."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

import nextword
from nextword import BaseGenerator, ContextLengthExceeded, InvalidInput
from nextword._decoding.processors import log_softmax
from nextword._words.search import clear_cache, predict_words, search_words, starts_new_word, word_start_mask
from nextword.testing.compare import Primitives

PROMPTS = ("I love cats because", "The weather today is")


@pytest.fixture(params=["hf", "bytelm"])
def gen(request: pytest.FixtureRequest) -> nextword.Generator:
    return request.getfixturevalue("hf_gen" if request.param == "hf" else "byte_gen")


# ---- a SentencePiece-style toy model: "▁" marks a word start; a lone token loses its space ------

SP_VOCAB = ["<eos>", "x", "\u2581the", "\u2581cat", "\u2581ca", "t", "s", ",", "\u2581a"]


class ToySentencePiece(BaseGenerator):
    """A bigram model over SP_VOCAB whose detokenizer drops the leading space of a whole text
    (as SentencePiece decoders do), so a lone ``"▁cat"`` reads ``"cat"``."""

    backend_name = "toy-sp"

    def __init__(self, seed: int = 0, context: int = 64) -> None:
        super().__init__(f"toy-sp-{seed}")
        rng = np.random.default_rng(seed)
        self.table = rng.normal(0.0, 1.5, size=(len(SP_VOCAB), len(SP_VOCAB)))
        self.calls = 0
        self._context = context

    @property
    def context_length(self) -> int:
        return self._context

    @property
    def eos_token_ids(self) -> frozenset[int]:
        return frozenset({0})

    def tokenize(self, text: str) -> list[int]:
        text = "\u2581" + text.replace(" ", "\u2581")  # SentencePiece's dummy prefix
        ids: list[int] = []
        while text:
            matches = [i for i, p in enumerate(SP_VOCAB) if i and text.startswith(p)]
            if not matches:  # a lone "▁" this toy vocabulary cannot spell: dropped
                text = text[1:]
                continue
            best = max(matches, key=lambda i: len(SP_VOCAB[i]))
            ids.append(best)
            text = text[len(SP_VOCAB[best]) :]
        return ids

    def detokenize(self, token_ids: Sequence[int]) -> str:
        text = "".join(SP_VOCAB[t] for t in token_ids).replace("\u2581", " ")
        return text[1:] if text.startswith(" ") else text

    def next_token_logits(self, token_ids: Sequence[int]) -> npt.NDArray[np.floating]:
        self.calls += 1
        return self.table[token_ids[-1]].copy()


# ---- brute force, independent of the search ---------------------------------------------------


def brute_mask(generator: Any, vocab: int, *, sentencepiece: bool = False) -> npt.NDArray[np.bool_]:
    """Word starts computed directly: each token's text (after "x" for SentencePiece), then the rule."""
    out = np.zeros(vocab, dtype=bool)
    for t in range(vocab):
        piece = generator.detokenize([1, t])[1:] if sentencepiece else generator.detokenize([t])
        out[t] = starts_new_word(piece)
    for t in getattr(generator, "eos_token_ids", ()):
        out[t] = True
    return out


def brute_prob(generator: Any, prompt_ids: list[int], path: Sequence[int], mask: npt.NDArray[np.bool_]) -> float:
    """P(path) * P(a word start follows), from next_token_logits alone."""
    logprob = 0.0
    for i, token in enumerate(path):
        logprob += float(log_softmax(generator.next_token_logits(prompt_ids + list(path[:i])))[token])
    after = np.exp(log_softmax(generator.next_token_logits(prompt_ids + list(path))))
    return math.exp(logprob) * float(after[mask].sum())


# ---- the rule -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("piece", "starts"),
    [
        (" cat", True),
        ("cat", False),
        ("\u2581cat", True),
        ("\n", True),
        (",", True),
        ("...", True),
        ("$", True),
        ("'t", False),
        ("\u2019s", False),
        ("'", False),
        ("'s", False),
        ("5", False),
        ("\u00e9t\u00e9", False),
        ("\ufffd", False),
        ("", True),
    ],
)
def test_starts_new_word(piece: str, starts: bool) -> None:
    assert starts_new_word(piece) is starts


# ---- exactness --------------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", PROMPTS)
def test_word_probabilities_equal_the_brute_force_product(gen: nextword.Generator, prompt: str) -> None:
    search = search_words(gen, prompt, 5, beam_width=6)
    prompt_ids = gen.tokenize(prompt)
    vocab = len(gen.next_token_logits(prompt_ids))
    mask = brute_mask(gen, vocab)
    assert np.array_equal(mask, word_start_mask(gen, vocab))
    assert search.words, "the search found no word"
    for word in search.words:
        total = 0.0
        for path, prob in word.paths:
            expected = brute_prob(gen, prompt_ids, path, mask)
            # The search reads logits through KV-cache sessions, the brute force recomputes the whole
            # sequence: float32 rounding differs between the two (about 1e-8 relative on hf).
            assert prob == pytest.approx(expected, rel=1e-6, abs=1e-300)
            total += expected
            # every token after the first continues the word
            assert not any(mask[t] for t in path[1:])
        assert word.prob == pytest.approx(total, rel=1e-6)
        assert word.logprob == pytest.approx(math.log(word.prob), rel=1e-9)
    probs = [w.prob for w in search.words]
    assert probs == sorted(probs, reverse=True)
    assert search.examined_mass + search.unexplored_mass == pytest.approx(1.0, abs=1e-9)
    assert 0.0 <= search.unexplored_mass <= 1.0


@pytest.mark.parametrize("prompt", PROMPTS)
def test_predict_words_is_the_top_of_the_search(gen: nextword.Generator, prompt: str) -> None:
    clear_cache()
    pred = predict_words(gen, prompt, 4)
    search = search_words(gen, prompt, 4)
    assert pred.unit == "word" and pred.prompt == prompt and len(pred) == 4
    assert [c.text for c in pred] == [w.text for w in search.words[:4]]
    assert [c.token_ids for c in pred] == [w.token_ids for w in search.words[:4]]
    assert [c.prob for c in pred] == sorted((c.prob for c in pred), reverse=True)
    assert all(0.0 < c.prob <= 1.0 and c.logprob == pytest.approx(math.log(c.prob)) for c in pred)
    assert pred.unexplored_mass == search.unexplored_mass
    not_returned = math.fsum(w.prob for w in search.words[4:])
    assert math.fsum(c.prob for c in pred) + not_returned + pred.unexplored_mass == pytest.approx(1.0, abs=1e-9)
    # a word's text is what its tokens add to the prompt
    for cand in pred:
        assert gen.detokenize(gen.tokenize(prompt) + list(cand.token_ids)) == prompt + cand.text


def test_the_top_k_is_proven_and_does_not_change_with_a_wider_beam(gen: nextword.Generator) -> None:
    narrow = search_words(gen, PROMPTS[0], 3)
    wide = search_words(gen, PROMPTS[0], 3, beam_width=4 * narrow.beam_width)
    assert [(w.text, w.prob) for w in narrow.words[:3]] == [(w.text, w.prob) for w in wide.words[:3]]
    # every unexamined word is less likely than the third: the search stopped on proof, not on a bound
    assert wide.model_calls < 1 + wide.beam_width * wide.max_tokens


def test_smaller_bounds_leave_more_mass_unexplored(gen: nextword.Generator) -> None:
    for prompt in PROMPTS:
        by_beam = [search_words(gen, prompt, 5, beam_width=b) for b in (1, 2, 4, 16)]
        unexplored = [s.unexplored_mass for s in by_beam]
        assert unexplored == sorted(unexplored, reverse=True) and unexplored[0] > unexplored[-1]
        calls = [s.model_calls for s in by_beam]
        assert calls[0] <= calls[-1]
        for s in by_beam:
            assert s.examined_mass + s.unexplored_mass == pytest.approx(1.0, abs=1e-9)
        by_floor = [search_words(gen, prompt, 5, min_prob=p) for p in (0.0, 1e-3, 3e-3, 0.5)]
        floors = [s.unexplored_mass for s in by_floor]
        assert floors == sorted(floors) and floors[-1] == pytest.approx(1.0)
        by_depth = [search_words(gen, prompt, 5, max_tokens=d) for d in (1, 2, 16)]
        assert all(len(w.token_ids) <= 1 for w in by_depth[0].words)
        depths = [s.unexplored_mass for s in by_depth]
        assert depths == sorted(depths, reverse=True)


# ---- SentencePiece-style decoding, merging, exhaustive search ----------------------------------------


def exhaustive_words(gen: ToySentencePiece, prompt_ids: list[int], depth: int) -> tuple[dict[str, float], float]:
    """Every word of at most ``depth`` tokens and its probability, by enumerating all paths; and
    the mass of the longer words (continuations of depth-``depth`` paths)."""
    mask = brute_mask(gen, len(SP_VOCAB), sentencepiece=True)
    words: dict[str, float] = {}
    rest = 0.0

    def visit(path: tuple[int, ...], prob: float) -> None:
        nonlocal rest
        text = gen.detokenize([1, *path])[1:]  # after "x", so a leading space survives
        if path == (0,):  # end of text as the first token: nothing follows
            words[text] = words.get(text, 0.0) + prob
            return
        p = np.exp(log_softmax(gen.next_token_logits(prompt_ids + list(path))))
        words[text] = words.get(text, 0.0) + prob * float(p[mask].sum())
        if len(path) == depth:
            rest += prob * float(p[~mask].sum())
            return
        for t in np.flatnonzero(~mask):
            visit((*path, int(t)), prob * float(p[t]))

    first = np.exp(log_softmax(gen.next_token_logits(prompt_ids)))
    for t in range(len(SP_VOCAB)):
        visit((t,), float(first[t]))
    return words, rest


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exhaustive_search_on_a_sentencepiece_style_model(seed: int) -> None:
    gen = ToySentencePiece(seed)
    prompt = "the cat"
    prompt_ids = gen.tokenize(prompt)
    assert gen.detokenize([3]) == "cat"  # a lone "▁cat" loses its space...
    mask = word_start_mask(gen, len(SP_VOCAB))
    assert mask[3] and mask[2] and not mask[5] and mask[0]  # ...but still starts a word
    expected, rest = exhaustive_words(gen, prompt_ids, depth=4)
    search = search_words(gen, prompt, k=1000, beam_width=1000, max_tokens=4)
    found = {w.text: w.prob for w in search.words}
    assert found.keys() == expected.keys()
    for text, prob in expected.items():
        assert found[text] == pytest.approx(prob, rel=1e-9)
    assert search.unexplored_mass == pytest.approx(rest, rel=1e-9, abs=1e-15)
    # " cat" is spelled "▁cat" or "▁ca" + "t": one word, both paths
    assert len({w.text: w for w in search.words}[" cat"].paths) == 2


def test_with_the_default_sessions_the_result_is_the_same() -> None:
    """The primitives alone (the base's recomputing sessions and one-by-one branches) give the
    same search as the generator's own engine features."""
    gen = ToySentencePiece(5)
    a = search_words(gen, "a cat", 4)
    b = search_words(Primitives(gen), "a cat", 4)
    assert [(w.text, w.paths) for w in a.words] == [(w.text, w.paths) for w in b.words]
    assert a.unexplored_mass == b.unexplored_mass and a.model_calls == b.model_calls


def test_results_are_cached_per_generator_and_parameters() -> None:
    clear_cache()
    gen, other = ToySentencePiece(3), ToySentencePiece(3)
    first = predict_words(gen, "the", 3)
    calls = gen.calls
    assert predict_words(gen, "the", 3) == first and gen.calls == calls
    predict_words(gen, "the", 3, beam_width=2)
    predict_words(gen, "the", 2)
    assert gen.calls > calls
    calls = gen.calls
    assert predict_words(other, "the", 3) == first  # same model, its own cache entry
    assert gen.calls == calls and other.calls > 0
    clear_cache()
    predict_words(gen, "the", 3)
    assert gen.calls > calls


# ---- errors and edges -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"k": 0}, "k must be a positive integer"),
        ({"k": True}, "k must be a positive integer"),
        ({"k": 5000}, "k must be at most 100 for a word prediction (for more candidates use unit='token'), got 5000"),
        ({"beam_width": 0}, "beam_width must be a positive integer"),
        ({"beam_width": 10**6}, "beam_width must be at most 256"),
        ({"min_prob": 1.0}, "min_prob must be a number in [0, 1)"),
        ({"min_prob": -0.1}, "min_prob must be a number in [0, 1)"),
        ({"max_tokens": 0}, "max_tokens must be a positive integer"),
        ({"max_tokens": 65}, "max_tokens must be at most 64"),
        ({"prompt": ""}, "prompt is empty"),
        ({"prompt": ["a"]}, "prompt must be a string"),
    ],
)
def test_invalid_arguments_raise_invalid_input(kwargs: dict[str, Any], needle: str) -> None:
    args: dict[str, Any] = {"prompt": "the", **kwargs}
    with pytest.raises(InvalidInput, match=re.escape(needle)):
        predict_words(ToySentencePiece(), **args)


def test_a_prompt_that_fills_the_context_window_raises() -> None:
    gen = ToySentencePiece(context=4)
    with pytest.raises(ContextLengthExceeded, match="no room is left"):
        predict_words(gen, "the the the the", 2)
    with pytest.raises(ContextLengthExceeded, match="context window holds 4"):
        predict_words(gen, "the the the the the", 2)
    words = search_words(gen, "the the the", 50, beam_width=50)  # room for one token per word
    assert words.words and all(len(w.token_ids) == 1 for w in words.words)
    assert words.examined_mass + words.unexplored_mass == pytest.approx(1.0)


def test_end_of_text_is_a_word_of_its_own() -> None:
    gen = ToySentencePiece(0)
    gen.table[:, 0] += 4.0  # make end of text likely
    search = search_words(gen, "the", 20, beam_width=20)
    eos = [w for w in search.words if w.token_ids == (0,)]
    assert len(eos) == 1 and eos[0].text == "<eos>"
    first = np.exp(log_softmax(gen.next_token_logits(gen.tokenize("the"))))
    assert eos[0].prob == pytest.approx(first[0])


def test_model_calls_stay_small(hf_gen: nextword.Generator) -> None:
    """The cost of a word prediction, in next-token distributions: the prompt's, plus one per
    word prefix extended, which the beam bounds."""
    for k in (1, 5, 10):
        search = search_words(hf_gen, PROMPTS[0], k)
        assert search.model_calls <= 1 + search.beam_width * search.max_tokens
        assert search.model_calls >= 1 + min(k, len(search.words))


def test_every_word_start_token_combination_is_consistent(byte_gen: nextword.Generator) -> None:
    """Bytes: a word is its first byte then bytes that do not start a word (letters, digits,
    the pieces of a multi-byte character)."""
    mask = word_start_mask(byte_gen, 257)
    assert mask[ord(" ")] and mask[ord(",")] and mask[256] and not mask[ord("a")] and not mask[0xA9]
    search = search_words(byte_gen, "Caf", 8)
    for word in search.words:
        for a, b in itertools.pairwise(word.token_ids):
            assert not mask[b], (a, b)


def test_the_api_exposes_the_search_bounds(hf_gen: nextword.Generator, tiny_gpt2_dir: Path) -> None:
    """beam_width and min_prob reach the word search: the API answers what the search answers
    with the same bounds, and the bounds change the answer."""
    found = {}
    for name, bounds in (("narrow", {"beam_width": 3}), ("wide", {"beam_width": 32}), ("floor", {"min_prob": 0.5})):
        via_api = nextword.predict_next(
            PROMPTS[0], k=3, model=str(tiny_gpt2_dir), options={"device": "cpu"}, complete="next", **bounds
        )
        direct = predict_words(hf_gen, PROMPTS[0], 3, **bounds)  # type: ignore[arg-type]
        assert [(c.text, c.prob) for c in via_api] == [(c.text, c.prob) for c in direct], name
        assert via_api.unexplored_mass == direct.unexplored_mass, name
        found[name] = via_api.unexplored_mass
    assert found["narrow"] >= found["wide"] and found["floor"] > found["wide"]
    with pytest.raises(nextword.InvalidInput, match="do not apply"):
        nextword.predict_next(PROMPTS[0], unit="token", beam_width=3, model=str(tiny_gpt2_dir))
