"""A real pretrained model (Gemma 3 270M, Q4_K_M GGUF from PyPI) through the hf backend."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import nextword

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gemma_hf(gemma_gguf: Path) -> nextword.Generator:
    return nextword.load("hf", str(gemma_gguf))


def test_greedy_text_is_deterministic_and_english(gemma_hf: nextword.Generator) -> None:
    prompt = "The capital of France is"
    first = gemma_hf.generate(prompt, max_new_tokens=20)
    second = gemma_hf.generate(prompt, max_new_tokens=20)
    assert first.token_ids == second.token_ids and first.text == second.text
    words = first.text.split()
    assert len(words) >= 10
    # Coherent English: mostly alphabetic words, and the model knows the answer.
    assert sum(w.strip(".,;:!?'\"").isalpha() for w in words) >= 0.8 * len(words)
    top = [c.text.strip() for c in gemma_hf.predict_next(prompt, k=5)]
    assert "Paris" in top


def test_natural_text_is_far_more_likely_than_shuffled(gemma_hf: nextword.Generator) -> None:
    sentence = "I love cats because they are soft, playful and always happy to see me when I come home."
    words = sentence.split()
    random.Random(0).shuffle(words)
    natural = gemma_hf.score(sentence)
    shuffled = gemma_hf.score(" ".join(words))
    assert natural.perplexity * 5 < shuffled.perplexity


def test_seed_example_on_the_real_model(gemma_hf: nextword.Generator) -> None:
    result = gemma_hf.generate("I love cats because", max_length=50, no_repeat_ngram_size=2)
    ids = list(result.prompt_token_ids) + list(result.token_ids)
    bigrams = list(zip(ids, ids[1:], strict=False))
    assert len(bigrams) == len(set(bigrams))
    assert result.prompt_tokens + result.completion_tokens == 50 or result.finish_reason == "eos"
    assert len(result.text.split()) > 5
