"""``nextword.finetune`` on GPT-1 (``openai-gpt``, the tutorial's story) with the tiny GPT-1
fixture (its own small BPE vocabulary, random weights): full and LoRA training learn a strong
pattern and the folder runs on hf; GGUF export, which nextword's converter cannot write for
GPT-1, is refused before training starts. Also: ``--device cuda`` on a machine without a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import nextword
from nextword._tuning import FinetuneReport, FinetuneWarning
from nextword.testing.pytest_fixtures import require_module

PATTERN = "the cat sat on the mat and the dog sat on the log. "
CORPUS = [f"Note {i}. " + PATTERN * 6 for i in range(12)]
SMALL: dict[str, Any] = {"block_size": 32, "batch_size": 4, "seed": 1, "device": "cpu", "max_steps": 30}
PROMPT = "the cat sat on the"
ATTN, EMBED = "transformer.h.0.attn.c_attn.weight", "transformer.tokens_embed.weight"


def _words(text: str) -> list[str]:
    return text.replace(".", " ").split()


# Word pairs of the pattern, the pair across its repetitions ("log the") included.
PATTERN_PAIRS = set(zip(_words(PATTERN * 2), _words(PATTERN * 2)[1:], strict=False))


def _finetune(base: Path, out: Path, method: str, learning_rate: float) -> FinetuneReport:
    require_module("peft", "install nextword[hf]")
    # GPT-1 has no end-of-text token: the run says how documents were joined.
    with pytest.warns(FinetuneWarning, match="no end-of-text token"):
        return nextword.finetune(CORPUS, base=str(base), out=out, method=method, learning_rate=learning_rate, **SMALL)


def _greedy(folder: Path) -> tuple[nextword.Generator, nextword.Generation]:
    generator = nextword.load("hf", str(folder), device="cpu")
    return generator, generator.generate(PROMPT, max_new_tokens=12)


@pytest.mark.slow
def test_full_finetune_of_gpt1_learns_the_pattern(tiny_openai_gpt_dir: Path, tmp_path: Path) -> None:
    report = _finetune(tiny_openai_gpt_dir, tmp_path / "full", "full", 1e-2)
    # Measured: 554 -> 2.3.
    assert report.final_perplexity * 50 < report.base_perplexity, str(report)
    config = json.loads((report.out / "config.json").read_text())
    assert config["model_type"] == "openai-gpt"
    # Trained without a KV cache, saved with the base model's setting.
    assert config.get("use_cache") == json.loads((tiny_openai_gpt_dir / "config.json").read_text()).get("use_cache")
    _, result = _greedy(report.out)
    words = _words(PROMPT + " " + result.text)
    assert len(words) > len(_words(PROMPT)) + 5, result.text
    pairs = set(zip(words, words[1:], strict=False))
    assert pairs <= PATTERN_PAIRS, (result.text, pairs - PATTERN_PAIRS)


@pytest.mark.slow
def test_lora_finetune_of_gpt1_adapts_every_conv1d_layer(tiny_openai_gpt_dir: Path, tmp_path: Path) -> None:
    safetensors = require_module("safetensors.torch", "install nextword[hf]")
    report = _finetune(tiny_openai_gpt_dir, tmp_path / "lora", "lora", 1e-2)
    # Measured: 554 -> 27 (LoRA on a random model learns much less than full training).
    assert report.final_perplexity * 8 < report.base_perplexity, str(report)
    # LoRA (r=8) sits on the four Conv1D layers of every block: attn.c_attn (n -> 3n), attn.c_proj
    # (n -> n), mlp.c_fc (n -> 4n), mlp.c_proj (4n -> n); r * (in + out) parameters each.
    config = json.loads((tiny_openai_gpt_dir / "config.json").read_text())
    n = config["n_embd"]
    assert report.outcome.trainable_parameters == 8 * (4 * n + 2 * n + 5 * n + 5 * n) * config["n_layer"]
    # Merged into the ordinary weights: same keys as the base, the adapted ones changed.
    base = dict(safetensors.load_file(str(tiny_openai_gpt_dir / "model.safetensors")))
    tuned = dict(safetensors.load_file(str(report.out / "model.safetensors")))
    assert tuned.keys() == base.keys()
    assert not bool((tuned[ATTN] == base[ATTN]).all())
    assert bool((tuned[EMBED] == base[EMBED]).all())
    # Greedy output uses only tokens of the training text.
    generator, result = _greedy(report.out)
    seen = {t for doc in CORPUS for t in generator.tokenize(doc)}
    assert result.token_ids and set(result.token_ids) <= seen, result.text


def _cli(*args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXTWORD_")} | extra_env
    return subprocess.run(
        [sys.executable, "-m", "nextword", "finetune", *args], capture_output=True, text=True, env=env, timeout=300
    )


def _one_error_line(result: subprocess.CompletedProcess[str], message: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error:") and message in lines[0], result.stderr


@pytest.mark.slow
def test_gguf_export_of_gpt1_is_refused_before_training(tiny_openai_gpt_dir: Path, tmp_path: Path) -> None:
    require_module("llama_cpp", "install nextword[llamacpp]")
    steps: list[dict[str, Any]] = []
    with pytest.raises(nextword.UnsupportedOption, match="does not write model_type 'openai-gpt'"):
        nextword.finetune(
            CORPUS, base=str(tiny_openai_gpt_dir), out=tmp_path / "o", gguf=["q8_0"], on_step=steps.append, **SMALL
        )
    assert steps == []
    notes = tmp_path / "notes.txt"
    notes.write_text("\n\n".join(CORPUS))
    result = _cli(str(notes), "--base", str(tiny_openai_gpt_dir), "--out", str(tmp_path / "o"), "--gguf", "q8_0")
    _one_error_line(result, "cannot export")
    assert "model_type 'openai-gpt'" in result.stderr and "without --gguf" in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


@pytest.mark.slow
def test_device_cuda_without_a_gpu_is_one_error_line(tiny_gpt2_dir: Path, tmp_path: Path) -> None:
    require_module("torch", "install nextword[hf]")
    notes = tmp_path / "notes.txt"
    notes.write_text("\n\n".join(CORPUS))
    # No GPU for the child process, also on a machine that has one (gpu_check.sh trains on it).
    result = _cli(
        str(notes),
        "--base",
        str(tiny_gpt2_dir),
        "--out",
        str(tmp_path / "o"),
        "--device",
        "cuda",
        CUDA_VISIBLE_DEVICES="",
    )
    _one_error_line(result, "device 'cuda' was asked for but torch sees no CUDA GPU")
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]
