"""The hf backend beyond the shared suite: exact agreement with transformers, GPT-1, options, errors."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import nextword
from nextword import ContextLengthExceeded, InvalidConfig, ModelLoadError


@pytest.fixture(scope="module")
def reference(tiny_gpt2_dir: Path) -> tuple[object, object]:
    tok = AutoTokenizer.from_pretrained(tiny_gpt2_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir).eval()
    return tok, model


def test_seed_example_matches_transformers_generate(tiny_gpt2_dir: Path, reference: tuple[object, object]) -> None:
    """The example that started the project gives exactly transformers' token ids."""
    tok, model = reference
    prompt = "I love cats because"
    ids = tok(prompt, return_tensors="pt")["input_ids"]  # type: ignore[operator]
    with torch.inference_mode():
        out = model.generate(  # type: ignore[attr-defined]
            ids,
            attention_mask=torch.ones_like(ids),
            max_length=50,
            num_return_sequences=1,
            no_repeat_ngram_size=2,
            do_sample=False,
            pad_token_id=tok.eos_token_id,  # type: ignore[attr-defined]
        )
    expected = out[0, ids.shape[1] :].tolist()
    result = nextword.generate(
        prompt, model=str(tiny_gpt2_dir), max_length=50, num_return_sequences=1, no_repeat_ngram_size=2
    )
    assert list(result.token_ids) == expected
    assert result.prompt_tokens + result.completion_tokens == 50 or result.finish_reason == "eos"
    assert result.text == tok.decode(expected)  # type: ignore[attr-defined]
    assert result.settings.decoding.max_length == 50
    assert result.settings.backend == "hf"


def test_sampling_matches_transformers_with_the_same_seed(
    tiny_gpt2_dir: Path, reference: tuple[object, object]
) -> None:
    tok, model = reference
    prompt = "The weather today is"
    ids = tok(prompt, return_tensors="pt")["input_ids"]  # type: ignore[operator]
    torch.manual_seed(123)
    with torch.inference_mode():
        out = model.generate(  # type: ignore[attr-defined]
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=12,
            do_sample=True,
            top_k=20,
            top_p=0.9,
            temperature=0.8,
            pad_token_id=tok.eos_token_id,  # type: ignore[attr-defined]
        )
    result = nextword.generate(
        prompt, model=str(tiny_gpt2_dir), max_new_tokens=12, top_k=20, top_p=0.9, temperature=0.8, seed=123
    )
    assert list(result.token_ids) == out[0, ids.shape[1] :].tolist()


def test_batch_of_different_lengths_uses_left_padding(tiny_gpt2_dir: Path) -> None:
    prompts = ["Hi", "A much longer prompt than the first one, with commas", "Cats"]
    fast = {"batching": "fast"}  # the prompts as one left-padded batch (exact: one by one)
    batch = nextword.generate(prompts, model=str(tiny_gpt2_dir), options=fast, max_new_tokens=10)
    for prompt, result in zip(prompts, batch, strict=True):
        assert result.token_ids == nextword.generate(prompt, model=str(tiny_gpt2_dir), max_new_tokens=10).token_ids


def test_gpt1_generates(tiny_openai_gpt_dir: Path) -> None:
    gen = nextword.load("hf", str(tiny_openai_gpt_dir))
    assert gen.hf_model.config.model_type == "openai-gpt"  # type: ignore[attr-defined]
    result = gen.generate("the cat sat on the", max_new_tokens=8)
    assert len(result.token_ids) == 8 and result.finish_reason == "length"
    assert result.text.strip()
    again = gen.generate("the cat sat on the", max_new_tokens=8)
    assert again.token_ids == result.token_ids
    prediction = gen.predict_next("the cat sat on the", k=3, unit="token")
    assert prediction[0].token_id == result.token_ids[0]


def test_load_is_reused(tiny_gpt2_dir: Path) -> None:
    first = nextword.load("hf", str(tiny_gpt2_dir), device="cpu")
    assert nextword.load("hf", str(tiny_gpt2_dir), device="cpu") is first
    nextword.generate("Hello", model=str(tiny_gpt2_dir), max_new_tokens=1, options={"device": "cpu"})
    assert sum(1 for g in nextword.loaded() if g is first) == 1
    other = nextword.load("hf", str(tiny_gpt2_dir), device="cpu", dtype="bfloat16")
    assert other is not first


def test_dtype_and_threads_options(tiny_gpt2_dir: Path) -> None:
    gen = nextword.load("hf", str(tiny_gpt2_dir), dtype="bfloat16", threads=1)
    assert next(gen.hf_model.parameters()).dtype == torch.bfloat16  # type: ignore[attr-defined]
    assert gen.generate("Hello", max_new_tokens=3).completion_tokens == 3
    assert gen.settings.options["dtype"] == "bfloat16" and gen.settings.options["threads"] == 1
    assert torch.get_num_threads() == 1


def test_bad_backend_options(tiny_gpt2_dir: Path) -> None:
    with pytest.raises(InvalidConfig, match="dtype"):
        nextword.load("hf", str(tiny_gpt2_dir), dtype="float8")
    with pytest.raises(InvalidConfig, match="unknown option 'colour'"):
        nextword.load("hf", str(tiny_gpt2_dir), colour="red")
    with pytest.raises(InvalidConfig, match="threads"):
        nextword.load("hf", str(tiny_gpt2_dir), threads=0)


def test_missing_model_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such model file or folder"):
        nextword.load("hf", str(tmp_path / "nothing-here"))
    with pytest.raises(ModelLoadError, match="no config.json"):
        nextword.load("hf", str(tmp_path))
    bad = tmp_path / "weights.bin"
    bad.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="not a .gguf file"):
        nextword.load("hf", str(bad))


def test_broken_gguf_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 20)
    with pytest.raises(ModelLoadError):
        nextword.load("hf", str(bad))


def test_hub_model_that_cannot_be_downloaded_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(ModelLoadError, match="unreachable") as err:
        nextword.load("hf", "nextword-test/does-not-exist")
    assert "local folder" in str(err.value)
    assert time.monotonic() - start < 30


def test_default_model_is_gpt2_from_the_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="cannot fetch 'gpt2'"):
        nextword.generate("I love cats because")


def test_context_window_of_gpt2_is_n_positions(tiny_gpt2_dir: Path) -> None:
    gen = nextword.load("hf", str(tiny_gpt2_dir))
    assert gen.context_length == gen.hf_model.config.n_positions  # type: ignore[attr-defined]
    with pytest.raises(ContextLengthExceeded, match="context window"):
        gen.generate("word " * 400, max_new_tokens=1)


def test_cuda_requested_without_cuda(tiny_gpt2_dir: Path) -> None:
    if torch.cuda.is_available():
        gen = nextword.load("hf", str(tiny_gpt2_dir), device="cuda")
        assert gen.generate("Hi", max_new_tokens=2).completion_tokens == 2
    else:
        with pytest.raises(InvalidConfig, match="no CUDA device"):
            nextword.load("hf", str(tiny_gpt2_dir), device="cuda")


def test_closed_generator_and_invalid_text_raise_nextword_errors(tiny_gpt2_dir: Path) -> None:
    from nextword_hf.plugin import SPEC as HF

    gen = HF.load(str(tiny_gpt2_dir), device="cpu")
    with pytest.raises(nextword.InvalidInput, match="not valid Unicode"):
        gen.generate("a\ud800b", max_new_tokens=2)
    gen.close()
    with pytest.raises(nextword.NextwordError, match="was closed"):
        gen.generate("hello", max_new_tokens=2)


def test_no_repeat_ngram_batch_equals_one_by_one(tiny_gpt2_dir: Path) -> None:
    prompts = ["Hello", "A longer prompt than the first one, to be padded", "Cats"]
    batch = nextword.generate(
        prompts, model=str(tiny_gpt2_dir), options={"batching": "fast"}, max_new_tokens=12, no_repeat_ngram_size=1
    )
    for prompt, result in zip(prompts, batch, strict=True):
        single = nextword.generate(prompt, model=str(tiny_gpt2_dir), max_new_tokens=12, no_repeat_ngram_size=1)
        assert result.token_ids == single.token_ids


_FIRST_CALL = """
import sys
import numpy as np
import nextword
gen = nextword.load("hf", sys.argv[1], device="cpu", threads=2)
ids = gen.tokenize("The cat sat on the mat. It was happy, and so was I.")
first, second = gen.sequence_logits(ids), gen.sequence_logits(ids)
print(float(np.abs(first - second).max()))
"""


@pytest.mark.slow
def test_the_first_call_after_loading_equals_later_ones(tiny_gpt2_dir: Path) -> None:
    """Without the warm-up pass at load, the first forward pass in a fresh process differed from
    the same call repeated in 1 process of 2 to 5 (2 threads); each run here is a fresh process."""
    import subprocess
    import sys

    for _ in range(6):
        run = subprocess.run(
            [sys.executable, "-c", _FIRST_CALL, str(tiny_gpt2_dir)], capture_output=True, text=True, timeout=300
        )
        assert run.returncode == 0, run.stderr[-2000:]
        assert float(run.stdout.strip().splitlines()[-1]) == 0.0


def test_prompts_that_grow_by_a_word_read_only_their_new_blocks(hf_gen: nextword.Generator) -> None:
    """Word searches start from the state after their prompt (``open_branches``); the hf backend
    reads a prompt in the blocks of ``nextword.backend.prompt_blocks`` and keeps the states at
    their ends, so a prompt that extends a kept one is read from the last end they share: typing
    a text word by word reads a fraction of what reading every prompt does, and every prompt's
    logits are bit-identical to the prompt read on an empty cache."""
    gen: Any = hf_gen
    text = (
        "Once upon a time there was a small cat that loved to sleep in the warm sun all day, and every "
        "evening it walked along the river to watch the boats come home with their nets full of fish. "
        "The fishermen knew the cat well and always kept a little of the catch for it, so it never "
        "went hungry, and in the winter it slept by the fire in the inn"
    )
    words = text.split()
    prompts = [gen.tokenize(" ".join(words[:n])) for n in range(2, len(words) + 1)]

    def root(ids: list[int]) -> np.ndarray:
        branches = gen.open_branches(ids)
        try:
            return np.array(branches.logits([()])[0])
        finally:
            branches.close()

    fresh = []
    for ids in prompts:
        gen.reset_cache()
        fresh.append(root(ids))
    gen.reset_cache()
    before = gen.prompt_states.evaluated_tokens
    for ids, want in zip(prompts, fresh, strict=True):
        np.testing.assert_array_equal(root(ids), want)
    read = gen.prompt_states.evaluated_tokens - before
    total = sum(len(ids) for ids in prompts)
    assert 2 * read < total, (read, total)
