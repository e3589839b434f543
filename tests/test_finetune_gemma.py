"""The real pretrained Gemma 3 270M (the PyPI GGUF, loaded through transformers): a short LoRA
run on a text none of us wrote (the GPL-3 licence text shipped with the system) lowers the
held-out perplexity; the result converts to Q8_0 GGUF with nextword's converter (Gemma 3
architecture) and runs on llamacpp within the converter's verify bounds; the tokenizer written
into the GGUF is the one of the GGUF it came from."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import nextword
from nextword.testing.pytest_fixtures import require_module, unavailable

pytestmark = pytest.mark.slow

GPL3 = Path("/usr/share/common-licenses/GPL-3")


@pytest.fixture(scope="module")
def tuned(gemma_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> nextword.FinetuneReport:
    require_module("peft", "install nextword[hf]")
    require_module("llama_cpp", "install nextword[llamacpp]")
    if not GPL3.is_file():
        unavailable(f"{GPL3} is missing (Debian's base-files ships it)")
    out = tmp_path_factory.mktemp("gemma-ft") / "gpl3"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # 3 steps of 4 x 128 tokens, learning rate 1e-3: DESIGN.md measured 135 -> 62 after 6 steps at 2e-4.
        return nextword.finetune(
            GPL3,
            base=str(gemma_gguf),
            out=out,
            max_steps=3,
            learning_rate=1e-3,
            block_size=128,
            batch_size=4,
            warmup_steps=0,
            seed=0,
            device="cpu",
            gguf=["q8_0"],
        )


def test_short_lora_run_lowers_held_out_perplexity(tuned: nextword.FinetuneReport) -> None:
    assert tuned.options.method == "lora" and tuned.steps == 3
    assert tuned.final_perplexity < 0.8 * tuned.base_perplexity, str(tuned)
    assert tuned.outcome.validation_tokens >= 128


def test_q8_0_export_runs_on_llamacpp_within_the_verify_bounds(tuned: nextword.FinetuneReport) -> None:
    export = tuned.exports[0]
    assert export.type == "q8_0" and export.path.is_file()
    # The converter's Q8_0 bounds (tests/test_convert.py): top-1 >= 85%, mean KL <= 1e-2.
    # Measured on this run: top-1 98.3%, mean KL 4.0e-3 over 58 positions (the engines' noise floor).
    assert export.verify["top1_agreement"] >= 0.85 and export.verify["mean_kl"] <= 1e-2, export.summary
    llama = nextword.load("llamacpp", str(export.path))
    text = llama.generate("This License applies to", max_new_tokens=8).text
    assert sum(w.strip(".,;:").isalpha() for w in text.split()) >= 3, text


def test_gguf_tokenizer_equals_the_original(tuned: nextword.FinetuneReport, gemma_gguf: Path) -> None:
    gguf = require_module("gguf", "install nextword[llamacpp]")

    def tokenizer_fields(path: Path) -> dict[str, object]:
        reader = gguf.GGUFReader(str(path))
        out: dict[str, object] = {}
        for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.scores"):
            field = reader.fields[key]
            if key.endswith("tokens"):
                out[key] = [bytes(field.parts[i]).decode() for i in field.data]
            else:
                out[key] = np.array([field.parts[i][0] for i in field.data])
        for key in ("bos_token_id", "eos_token_id", "unknown_token_id", "padding_token_id", "add_bos_token"):
            out[key] = reader.fields[f"tokenizer.ggml.{key}"].contents()
        return out

    ours, original = tokenizer_fields(tuned.exports[0].path), tokenizer_fields(gemma_gguf)
    assert ours["tokenizer.ggml.tokens"] == original["tokenizer.ggml.tokens"]
    assert np.array_equal(ours["tokenizer.ggml.token_type"], original["tokenizer.ggml.token_type"])
    for key in ("bos_token_id", "eos_token_id", "unknown_token_id", "padding_token_id", "add_bos_token"):
        assert ours[key] == original[key], key
    # Scores only rank merges: the order of the normal pieces must be the original's.
    types = np.asarray(original["tokenizer.ggml.token_type"])
    normal = types == 1
    ours_s, orig_s = np.asarray(ours["tokenizer.ggml.scores"]), np.asarray(original["tokenizer.ggml.scores"])
    assert np.array_equal(ours_s[~normal], orig_s[~normal])
    assert np.array_equal(np.argsort(-ours_s[normal], kind="stable"), np.argsort(-orig_s[normal], kind="stable"))
    # And llama.cpp tokenizes the licence text identically with both files.
    llama_cpp = require_module("llama_cpp")
    text = GPL3.read_text()[:4000].encode()
    ids = []
    for path in (tuned.exports[0].path, gemma_gguf):
        vocab = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
        ids.append(vocab.tokenize(text, add_bos=True))
        vocab.close()
    assert ids[0] == ids[1]
