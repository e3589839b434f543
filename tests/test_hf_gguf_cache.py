"""The hf backend keeps the float32 model transformers converts a .gguf file to, and reads it back
on the next load of the same file: the same weights bit for bit and the same tokenizer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import nextword
from nextword.errors import InvalidConfig

TEXTS = ["Hello there, how are you?", "naïve café — “quotes”\n\ttabs", "동해 물과 백두산이", "  spaces  "]


def _load(gguf: Path, cache: str | Path) -> nextword.Generator:
    from nextword_hf.plugin import SPEC

    return SPEC.load(str(gguf), device="cpu", gguf_cache=str(cache))  # no nextword-level generator cache


def _same_model(a: nextword.Generator, b: nextword.Generator) -> None:
    """The same weights bit for bit, the same tokenizer; logits within float rounding (torch's CPU
    kernels give the last bits by where a weight's memory starts: two loads of the same file
    differ so, cached or not) and the same greedy tokens."""
    weights_a, weights_b = a.hf_model.state_dict(), b.hf_model.state_dict()  # type: ignore[attr-defined]
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[name], weights_b[name]) for name in weights_a)
    for text in TEXTS:
        assert a.tokenize(text) == b.tokenize(text)
        assert a.detokenize(a.tokenize(text)) == b.detokenize(b.tokenize(text))
    ids = a.tokenize("The capital of France is")
    np.testing.assert_allclose(np.asarray(a.next_token_logits(ids)), np.asarray(b.next_token_logits(ids)), atol=1e-4)
    assert a.eos_token_ids == b.eos_token_ids and a.context_length == b.context_length
    prompt = "I love cats because"
    assert a.generate(prompt, max_new_tokens=8).token_ids == b.generate(prompt, max_new_tokens=8).token_ids


def _snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def _kept(cache: Path) -> list[Path]:
    return sorted(p for p in cache.iterdir() if not p.name.startswith("."))


@pytest.fixture(scope="module")
def gguf(tiny_gguf: Callable[[str], Path]) -> Path:
    return tiny_gguf("q8_0")


@pytest.fixture(scope="module")
def reference(gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> nextword.Generator:
    """The file converted with a cache folder that cannot be made (a file stands in its way): the
    model loads, with a warning, and nothing is written anywhere else."""
    root = tmp_path_factory.mktemp("cache-root")
    blocker = tmp_path_factory.mktemp("blocked") / "a-file"
    blocker.write_text("not a folder")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NEXTWORD_CACHE_DIR", str(root))
        with pytest.warns(UserWarning, match="could not keep the converted model"):
            gen = _load(gguf, blocker / "cache")
    assert list(root.iterdir()) == [] and blocker.read_text() == "not a folder"
    return gen


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hf-gguf")


def test_a_gguf_is_converted_once_and_read_back_the_same(
    gguf: Path, cache: Path, reference: nextword.Generator
) -> None:
    first = _load(gguf, cache)
    (kept,) = _kept(cache)
    assert kept.name.startswith(gguf.stem + "-")
    assert (kept / "model.safetensors").is_file() and (kept / "config.json").is_file()
    before = _snapshot(cache)
    again = _load(gguf, cache)
    assert _snapshot(cache) == before  # read, not written again
    _same_model(first, again)
    _same_model(again, reference)


def test_another_file_gets_its_own_folder(tiny_gguf: Callable[[str], Path], gguf: Path, tmp_path: Path) -> None:
    from nextword_hf.gguf_cache import cached_folder

    same = tmp_path / "same.gguf"
    same.write_bytes(gguf.read_bytes())
    assert cached_folder(gguf, tmp_path).name == cached_folder(same, tmp_path).name.replace("same", gguf.stem)
    with same.open("r+b") as fh:  # one byte of a weight changed
        fh.seek(-1, 2)
        last = fh.read(1)
        fh.seek(-1, 2)
        fh.write(bytes([last[0] ^ 1]))
    folders = {cached_folder(p, tmp_path).name.split("-", 1)[1] for p in (gguf, same, tiny_gguf("f16"))}
    assert len(folders) == 3


def test_a_damaged_folder_is_converted_again(gguf: Path, cache: Path, reference: nextword.Generator) -> None:
    _load(gguf, cache).close()
    for kept in _kept(cache):
        (kept / "model.safetensors").write_bytes(b"not a safetensors file")
    repaired = _load(gguf, cache)
    _same_model(reference, repaired)
    (kept,) = [p for p in _kept(cache) if p.name.startswith(gguf.stem + "-")]
    assert (kept / "model.safetensors").stat().st_size > 1000


def test_the_option_is_checked(gguf: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from nextword_hf.gguf_cache import resolve

    monkeypatch.setenv("NEXTWORD_CACHE_DIR", str(tmp_path))
    assert resolve("default") == tmp_path / "hf-gguf"
    assert resolve("off") is None  # the loader then converts and writes nothing
    assert resolve("~/kept") == Path.home() / "kept"
    with pytest.raises(InvalidConfig, match="gguf_cache"):
        nextword.load("hf", str(gguf), device="cpu", gguf_cache=" ")
