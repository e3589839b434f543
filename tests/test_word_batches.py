"""The word search's batched evaluation (nextword._decoding.branches): same words and
probabilities as the one-by-one search, fewer engine calls; the ``allowed`` restriction."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

import nextword
from nextword import InvalidInput
from nextword._decoding.branches import Branches, SessionBranches
from nextword._words.search import search_words
from nextword.backend import BaseGenerator
from nextword.testing.compare import OneByOne
from nextword.testing.pytest_fixtures import require_module
from tests.test_words import PROMPTS, SP_VOCAB, ToySentencePiece


class ToyBatches(ToySentencePiece):
    """The SentencePiece-style toy with a batched hook that records each call's paths."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.batches: list[list[tuple[int, ...]]] = []

    def open_branches(self, prompt_ids: Sequence[int]) -> Branches:
        outer = self

        class Rows:
            def logits(self, paths: Sequence[Sequence[int]]) -> npt.NDArray[np.floating]:
                outer.batches.append([tuple(p) for p in paths])
                return np.stack([outer.table[([*prompt_ids, *p])[-1]] for p in paths])

            def close(self) -> None:
                pass

        return Rows()


def same_search(a: Any, b: Any, tol: float) -> None:
    assert [w.text for w in a.words] == [w.text for w in b.words]
    for wa, wb in zip(a.words, b.words, strict=True):
        assert wa.prob == pytest.approx(wb.prob, abs=tol)
        assert [p for p, _ in wa.paths] == [p for p, _ in wb.paths]
    assert a.unexplored_mass == pytest.approx(b.unexplored_mass, abs=tol)


@pytest.mark.parametrize("k", [3, 5, 10])
def test_batched_search_equals_the_one_by_one_search_on_hf(hf_gen: nextword.Generator, k: int) -> None:
    assert type(hf_gen).open_branches is not BaseGenerator.open_branches  # its own, batched
    for prompt in PROMPTS:
        batched = search_words(hf_gen, prompt, k)
        single = search_words(OneByOne(hf_gen), prompt, k)
        same_search(batched, single, 1e-6)
        assert single.model_batches == single.model_calls
        assert batched.model_batches < batched.model_calls  # several rows per engine call


def test_hf_rows_equal_session_logits(hf_gen: nextword.Generator) -> None:
    prompt = hf_gen.tokenize("The weather today is")
    paths: list[tuple[int, ...]] = [(), (262,), (262, 3797), (11,), (290, 314, 588)]
    branches = hf_gen.open_branches(prompt)
    try:
        rows = branches.logits(paths)
        assert rows.shape == (len(paths), len(hf_gen.next_token_logits(prompt)))
        for path, row in zip(paths, rows, strict=True):
            session = hf_gen.open_session(prompt)  # type: ignore[attr-defined]
            for t in path:
                session.feed(t)
            np.testing.assert_allclose(row, session.logits(), rtol=0, atol=1e-4)
        again = branches.logits(paths[::-1])  # the prompt's state is kept between calls
        np.testing.assert_array_equal(again[::-1][0], rows[0])
    finally:
        branches.close()
        branches.close()


def test_hf_branches_check_their_input(hf_gen: nextword.Generator) -> None:
    with pytest.raises(InvalidInput, match="outside the vocabulary"):
        hf_gen.open_branches([10**7])
    branches = hf_gen.open_branches(hf_gen.tokenize("Hello"))
    with pytest.raises(InvalidInput, match="outside the vocabulary"):
        branches.logits([(1,), (-1,)])
    with pytest.raises(nextword.ContextLengthExceeded):
        branches.logits([tuple([11] * hf_gen.context_length)])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_third_party_hook_is_used_and_changes_nothing(seed: int) -> None:
    batched_gen = ToyBatches(seed)
    batched = search_words(batched_gen, "the cat", 4, beam_width=8)
    single = search_words(ToySentencePiece(seed), "the cat", 4, beam_width=8)
    same_search(batched, single, 0.0)
    assert batched.model_batches == len(batched_gen.batches)
    assert sum(len(b) for b in batched_gen.batches) == batched.model_calls
    assert batched_gen.batches[0] == [()]  # the prompt first, alone
    # a batch asks only for paths the search has not evaluated yet
    flat = [p for b in batched_gen.batches for p in b]
    assert len(flat) == len(set(flat))


def test_session_branches_equal_next_token_logits() -> None:
    gen = ToySentencePiece(4)
    prompt = gen.tokenize("the cat")
    paths = [(), (5,), (5, 6), (2,), (5, 6, 7)]
    rows = SessionBranches(gen, prompt).logits(paths)
    for path, row in zip(paths, rows, strict=True):
        np.testing.assert_array_equal(row, gen.next_token_logits(prompt + list(path)))
    assert SessionBranches(gen, prompt).logits([]).shape[0] == 0


def test_allowed_restricts_the_words_and_accounts_for_the_mass() -> None:
    gen = ToySentencePiece(1)
    ca, t = SP_VOCAB.index("\u2581ca"), SP_VOCAB.index("t")

    def only_ca_then_t(path: tuple[int, ...]) -> npt.NDArray[np.bool_] | None:
        mask = np.zeros(len(SP_VOCAB), dtype=bool)
        if not path:
            mask[ca] = True  # the word must begin with "▁ca"
        elif path == (ca,):
            mask[t] = True  # ... and go on with "t" (it may not end after "▁ca")
        else:
            return None
        return mask

    search = search_words(gen, "the", 5, beam_width=8, max_tokens=4, allowed=only_ca_then_t)
    assert search.words and all(w.token_ids[:2] == (ca, t) for w in search.words)
    assert all(w.text.startswith(" cat") for w in search.words)
    total = search.examined_mass + search.unexplored_mass + search.excluded_mass
    assert total == pytest.approx(1.0, abs=1e-12)
    free = search_words(gen, "the", 1000, beam_width=1000, max_tokens=4)
    by_text = {w.text: w.prob for w in free.words}
    # the unrestricted search finds the same spellings with the same probabilities
    for word in search.words:
        assert word.prob == pytest.approx(math.fsum(p for path, p in word.paths), rel=1e-12)
        assert by_text[word.text] >= word.prob * (1 - 1e-12)


def test_allowed_must_give_a_vocabulary_mask() -> None:
    gen = ToySentencePiece(1)
    with pytest.raises(InvalidInput, match="shape"):
        search_words(gen, "the", 3, allowed=lambda path: np.ones(3, dtype=bool))


# ---- llamacpp (its own open_branches: several sequences per llama_decode) -------------------------


@pytest.fixture(scope="module")
def llama_gens(tiny_gguf: Any, gemma_gguf: Any) -> Any:
    require_module("llama_cpp", "install nextword[llamacpp]")
    from nextword_llamacpp.plugin import SPEC as LLAMACPP

    gens = {
        "tiny-q8_0": LLAMACPP.load(str(tiny_gguf("q8_0"))),
        "gemma": LLAMACPP.load(str(gemma_gguf)),
    }
    yield gens
    for gen in gens.values():
        gen.close()


@pytest.mark.slow
@pytest.mark.parametrize("which", ["tiny-q8_0", "gemma"])
def test_batched_search_equals_the_one_by_one_search_on_llamacpp(llama_gens: Any, which: str) -> None:
    gen = llama_gens[which]
    assert type(gen).open_branches is not BaseGenerator.open_branches  # its own, batched
    prompts = PROMPTS if which != "gemma" else ("The capital of France is", "I love cats because")
    for prompt in prompts:
        for k in (5, 10):
            gen.reset_cache()
            batched = search_words(gen, prompt, k)
            gen.reset_cache()
            single = search_words(OneByOne(gen), prompt, k)
            same_search(batched, single, 1e-6)
            assert batched.model_batches < batched.model_calls
