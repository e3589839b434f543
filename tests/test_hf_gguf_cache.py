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
from nextword.testing.pytest_fixtures import require_module

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


def test_cache_lock_lets_one_holder_in_at_a_time(tmp_path: Path) -> None:
    """``nextword.backend.cache_lock``, which makes two loads of one file convert it once: a second
    holder, in another thread or another process, waits until the first lets go."""
    import subprocess
    import sys
    import threading
    import time

    from nextword.backend import cache_lock

    lock = tmp_path / "sub" / ".x.lock"  # the folder is made
    order: list[str] = []
    entered = threading.Event()

    def second() -> None:
        entered.wait(10)
        with cache_lock(lock):
            order.append("second in")

    thread = threading.Thread(target=second)
    thread.start()
    with cache_lock(lock):
        entered.set()
        time.sleep(0.3)  # the other thread is blocked in cache_lock meanwhile
        order.append("first out")
    thread.join(10)
    assert order == ["first out", "second in"]

    probe = (
        "import sys, time\nfrom pathlib import Path\nfrom nextword.backend import cache_lock\n"
        "t = time.monotonic()\nwith cache_lock(Path(sys.argv[1])):\n    print(time.monotonic() - t)\n"
    )
    with cache_lock(lock):
        child = subprocess.Popen([sys.executable, "-c", probe, str(lock)], stdout=subprocess.PIPE, text=True)
        time.sleep(1.5)
        assert child.poll() is None  # still waiting for the lock
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 0 and float(out) >= 0.5


def test_cache_lock_without_a_writable_folder_runs_the_block(tmp_path: Path) -> None:
    from nextword.backend import cache_lock

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with cache_lock(blocker / "x.lock"):
        ran = True
    assert ran and blocker.read_text() == "not a folder"


def test_a_training_base_is_an_ordinary_trainable_model_converted_or_kept(gguf: Path, tmp_path: Path) -> None:
    """Fine-tuning reads a .gguf base through the same cache. Converted, transformers' GGUF
    quantizer is detached entirely: its own Trainer accepts the model (it refused it while
    ``is_quantized`` stayed set; found on Gemma 3 270M's Q4_K_M file, the same for any
    architecture: a Q8_0 file of nextword's converter here). Read back from the cache, it is the
    same model: the same weights and tokenizer."""
    require_module("peft", "install nextword[hf]")
    from nextword_hf.training.model import load_base
    from transformers.trainer_utils import validate_quantization_for_training

    tok_a, converted = load_base(str(gguf), "cpu", gguf_cache=tmp_path)
    tok_b, kept = load_base(str(gguf), "cpu", gguf_cache=tmp_path)
    assert len(_kept(tmp_path)) == 1
    for model in (converted, kept):
        assert getattr(model, "hf_quantizer", None) is None
        assert not getattr(model, "is_quantized", False)
        assert not hasattr(model.config, "quantization_config")
        validate_quantization_for_training(model)  # raised AttributeError before
        assert all(p.is_floating_point() for p in model.parameters())
    a, b = converted.state_dict(), kept.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)
    assert all(tok_a(text)["input_ids"] == tok_b(text)["input_ids"] for text in TEXTS)


def test_one_parse_of_the_file_loads_what_transformers_loads_alone(gguf: Path, reference: nextword.Generator) -> None:
    """nextword's loads parse a .gguf file once for config, tokenizer and weights
    (``nextword_hf.gguf_read``); transformers alone parses it three times: the same model."""
    import gguf as gguf_py
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ours = reference.hf_model  # type: ignore[attr-defined]
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # n_positions: transformers takes the table size from a key GPT-2's config does not use; nextword
    # reads it from the table (test_reliability_inputs), the same for one parse or three.
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32, n_positions=ours.config.n_positions
    )
    # gguf-py's own class is back after nextword's load (the reference fixture's) and this one.
    assert gguf_py.GGUFReader is gguf_py.gguf_reader.GGUFReader
    theirs_config, ours_config = model.config.to_dict(), ours.config.to_dict()
    for key in ("transformers_version", "dtype", "torch_dtype", "_name_or_path"):
        theirs_config.pop(key, None), ours_config.pop(key, None)
    assert theirs_config == ours_config
    a, b = model.state_dict(), ours.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)
    for text in TEXTS:
        assert tokenizer(text)["input_ids"] == reference.tokenizer(text)["input_ids"]  # type: ignore[attr-defined]
