"""The same weights give the same text on both backends.

The tiny GPT-2 fixture (real vocabulary) is converted by nextword's own converter and run on
llama.cpp; transformers in float32 is the reference. And on the real pretrained Gemma 3 270M
(Q4_K_M), transformers (dequantized) and llama.cpp read the very same file.

Bounds and why:

* F32: token ids identical to transformers for 64+ greedy tokens (the converter is exact and the
  engines differ only by float32 rounding, about 4e-3 on these logits).
* F16: the same top-1 as transformers at every step of transformers' greedy path where its own
  top-2 margin exceeds 0.03 (twice the largest F16 logit error measured here, 0.015); at least
  85% of steps must be that clear, so the check cannot pass by skipping. (Measured: over 256
  steps F16 disagreed once, where transformers' top-2 logits were 0.0037 apart.)
* Q8_0: top-1 agreement >= 0.85 and mean KL <= 0.01 nats. Q4_K_M: top-1 >= 0.6, KL <= 0.15.
  Measured on this fixture by the converter's verify(): Q8_0 94% / 1e-3, Q4_K_M 76% / 0.03.
  A tiny random model with a wide init is the worst case for quantization (no structure,
  large weights); the bounds catch a broken file (a wrong layout, transpose or type gives
  chance-level agreement, under 5%) rather than grade ordinary quantization error.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import nextword
from nextword.testing.compare import compare_generators, compare_scores
from tests.assets import LlamaVocabFiles, read_tokenizer_vectors

pytestmark = pytest.mark.slow

PROMPTS = ("I love cats because", "The weather today is", "Once upon a time", "In 1905, Albert Einstein")


@pytest.fixture(scope="module")
def hf(tiny_gpt2_dir: Path) -> nextword.Generator:
    return nextword.load("hf", str(tiny_gpt2_dir), device="cpu", dtype="float32")


def _llama(path: Path) -> nextword.Generator:
    return nextword.load("llamacpp", str(path))


def test_f32_greedy_ids_are_identical(hf: nextword.Generator, tiny_gguf: Callable[[str], Path]) -> None:
    llama = _llama(tiny_gguf("f32"))
    seed_hf = hf.generate(PROMPTS[0], max_length=50, no_repeat_ngram_size=2)
    seed_ll = llama.generate(PROMPTS[0], max_length=50, no_repeat_ngram_size=2)
    assert seed_ll.token_ids == seed_hf.token_ids and seed_ll.text == seed_hf.text
    for prompt in PROMPTS:
        a = hf.generate(prompt, max_new_tokens=64, min_new_tokens=64)
        b = llama.generate(prompt, max_new_tokens=64, min_new_tokens=64)
        assert len(a.token_ids) == 64
        assert b.token_ids == a.token_ids, f"F32 diverged from transformers on {prompt!r}"
    report = compare_generators(hf, llama, PROMPTS, max_new_tokens=16)
    assert report.divergences == () and report.near_ties == 0, report.explain()
    assert report.max_topk_logprob_diff < 0.02 and compare_scores(hf, llama, PROMPTS) < 0.02


def test_f16_top1_follows_the_greedy_path(hf: nextword.Generator, tiny_gguf: Callable[[str], Path]) -> None:
    report = compare_generators(hf, _llama(tiny_gguf("f16")), PROMPTS, max_new_tokens=64, tie_margin=0.03)
    assert report.divergences == (), report.explain()
    assert report.clear_fraction >= 0.85, f"only {report.clear_steps}/{report.steps} steps had a clear winner"


@pytest.mark.parametrize(("kind", "min_top1", "max_kl"), [("q8_0", 0.85, 0.01), ("q4_k_m", 0.6, 0.15)])
def test_quantized_agreement_is_bounded(
    hf: nextword.Generator, tiny_gguf: Callable[[str], Path], kind: str, min_top1: float, max_kl: float
) -> None:
    report = compare_generators(hf, _llama(tiny_gguf(kind)), PROMPTS, max_new_tokens=32)
    print(f"{kind}: {report.explain()}")
    assert report.top1_agreement >= min_top1
    assert report.mean_kl <= max_kl


def test_the_comparison_explains_a_divergence(hf: nextword.Generator) -> None:
    """A generator whose logits differ on purpose: the helper names the step and both top-2 gaps."""

    class Shifted:
        def __init__(self, inner: nextword.Generator, at: int) -> None:
            self.inner, self.at = inner, at

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

        def next_token_logits(self, ids: list[int]) -> np.ndarray:
            logits = np.array(self.inner.next_token_logits(ids), dtype=np.float64)
            if len(ids) == self.at:
                logits[int(np.argsort(logits)[-2])] = logits.max() + 5.0  # promote the runner-up clearly
            return logits

    prompt = PROMPTS[0]
    start = len(hf.tokenize(prompt))
    report = compare_generators(hf, Shifted(hf, start + 3), [prompt], max_new_tokens=8)  # type: ignore[arg-type]
    assert report.steps == 9 and report.agreed == 8 and len(report.divergences) == 1
    d = report.divergences[0]
    assert d.step == 3 and d.other_gap == pytest.approx(5.0) and d.reference_gap > 0
    assert "step 3" in report.explain()
    loose = compare_generators(hf, Shifted(hf, start + 3), [prompt], max_new_tokens=8, tie_margin=1e9)  # type: ignore[arg-type]
    assert loose.divergences == () and loose.near_ties == 1


def test_converted_tokenizer_reproduces_the_llama_cpp_vectors(
    tiny_gguf: Callable[[str], Path], llama_vocab: LlamaVocabFiles
) -> None:
    llama = _llama(tiny_gguf("q8_0"))
    cases = read_tokenizer_vectors(llama_vocab)
    assert len(cases) == 46
    for text, expected in cases:
        if not text:
            continue  # nextword refuses an empty prompt; llama.cpp's vector is [] for it
        assert llama.tokenize(text) == expected, text
        assert llama.detokenize(expected) == text


def test_word_predictions_agree(hf: nextword.Generator, tiny_gguf: Callable[[str], Path]) -> None:
    """Word-level prediction runs in the core on each backend's logits: same words, same numbers."""
    llama = _llama(tiny_gguf("f32"))
    for prompt in PROMPTS:
        a = hf.predict_next(prompt, k=5)
        b = llama.predict_next(prompt, k=5)
        assert a.unit == b.unit == "word"
        assert [c.text for c in a] == [c.text for c in b]
        for x, y in zip(a, b, strict=True):
            assert x.prob == pytest.approx(y.prob, rel=0.02)
        assert a.unexplored_mass == pytest.approx(b.unexplored_mass, abs=0.01)


# ---- the real pretrained model ---------------------------------------------------------------------

REAL_PROMPTS = (
    "The capital of France is",
    "I love cats because",
    "Water boils at a temperature of",
    "The first step in making bread is",
    "My favourite book is",
    "One, two, three, four,",
    "The days of the week are Monday, Tuesday,",
    "The opposite of hot is",
)


def test_real_model_same_greedy_text_on_both_backends(gemma_gguf: Path) -> None:
    """Same file, two engines: the greedy texts agree.

    The engines do not compute the same numbers: transformers multiplies dequantized float32
    weights, llama.cpp multiplies Q4_K blocks with activations quantized to 8 bits. Measured here
    over 120 greedy steps, the gap between transformers' top two logits differs between the
    engines by 0.09 (median), 0.30 (95th percentile), 0.43 (max). So over 12 tokens at least half of
    the prompts must give the very same tokens, and a divergence is allowed only at a step where
    transformers' own top-2 gap is below 0.5 (the measured maximum, rounded up): a near-tie that
    either engine may break either way."""
    hf = nextword.load("hf", str(gemma_gguf))
    llama = nextword.load("llamacpp", str(gemma_gguf))
    identical = 0
    for prompt in REAL_PROMPTS:
        a = hf.generate(prompt, max_new_tokens=12)
        b = llama.generate(prompt, max_new_tokens=12)
        assert a.prompt_token_ids == b.prompt_token_ids
        if a.token_ids == b.token_ids:
            assert a.text == b.text
            identical += 1
            continue
        i = next(k for k, (x, y) in enumerate(zip(a.token_ids, b.token_ids, strict=False)) if x != y)
        ref = np.sort(np.asarray(hf.next_token_logits(list(a.prompt_token_ids) + list(a.token_ids[:i]))))
        assert ref[-1] - ref[-2] < 0.5, f"{prompt!r}: engines disagree at step {i} with a clear winner"
    assert identical >= 4


def test_cli_predict_and_explain_on_both_backends(
    tiny_gpt2_dir: Path, tiny_gguf: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """`nextword predict` and `nextword explain` from the command line, hf and llamacpp, same weights."""
    import json

    from nextword.cli import main

    def run(*args: str) -> dict[str, object]:
        assert main(list(args)) == 0
        return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]

    engines = [("hf", str(tiny_gpt2_dir)), ("llamacpp", str(tiny_gguf("f32")))]
    words = [run("predict", "I love cats because", "-b", b, "-m", m, "-k", "5", "--json") for b, m in engines]
    assert [c["text"] for c in words[0]["candidates"]] == [c["text"] for c in words[1]["candidates"]]  # type: ignore[index]
    explained = [run("explain", "The cat sat on the mat", "-b", b, "-m", m, "--json") for b, m in engines]
    a, b = (e["tokens"] for e in explained)  # type: ignore[index]
    assert [t["text"] for t in a] == [t["text"] for t in b]  # type: ignore[union-attr, index]
    for x, y in zip(a[1:], b[1:], strict=True):  # type: ignore[index]
        assert x["prob"] == pytest.approx(y["prob"], rel=0.02)
        # Deep in the tail thousands of tokens have nearly equal logits, so a rank there moves
        # with float rounding; near the top it must not.
        assert x["rank"] == y["rank"] or min(x["rank"], y["rank"]) > 100
        assert abs(x["rank"] - y["rank"]) <= 0.01 * x["rank"]
