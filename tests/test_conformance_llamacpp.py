"""The llamacpp backend: the conformance suite on GGUF files made from the tiny GPT-2 fixture by
nextword's own converter (F32 and Q8_0), plus what is particular to this backend: refusing broken
files without crashing, the context window, the folder -> GGUF cache, and its options.

About ``logit_tolerance`` (how far two logits may differ and still count as a tie): llama.cpp
evaluates a batch of tokens (a prompt, a scored text) and a single token (a generation step) with
different matrix kernels, so the same position gets slightly different logits depending on the
path. Measured on this machine over 200 positions (tiny fixture, logits of magnitude ~9):

* F32 file: up to 3.8e-3 between the batched and the one-token path;
* Q8_0 file: 0 (activations are quantized to Q8 per row on both paths, so the dot products match);
  but on the 124M GPT-2 shape the same Q8_0 comparison gives up to 3e-2, in raw llama-cpp-python
  too (larger matrices take other kernels), so bit-equality is a property of this CPU's kernel
  choice for tiny shapes, not something to rely on.

Both suites use 1e-2: 2.5x the largest difference measured on the fixture, and small against its
greedy decisions (over 96 greedy steps the top-2 logit gap has median 0.35 and is above 0.1 in 78%
of them), so a wrong choice is still caught while path noise at a near-tie is not a failure.
"""

from __future__ import annotations

import importlib
import importlib.util
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nextword
from nextword import ContextLengthExceeded, InvalidConfig, InvalidInput, ModelLoadError, NextwordError, Support
from nextword._types.decoding_config import DecodingConfig
from nextword.testing import GeneratorConformance
from nextword.testing.pytest_fixtures import require_module

require_module("llama_cpp")
require_module("gguf")

import nextword_llamacpp.convert as convert_mod  # noqa: E402
import nextword_llamacpp.plugin as plugin_mod  # noqa: E402
from nextword_llamacpp.generator import LlamaCppGenerator  # noqa: E402
from nextword_llamacpp.gguf_check import inspect_gguf  # noqa: E402
from nextword_llamacpp.locate import default_cache_dir  # noqa: E402
from nextword_llamacpp.plugin import SPEC as LLAMACPP  # noqa: E402

TOLERANCE = 1e-2


@pytest.fixture(scope="session")
def f32_gguf(tiny_gguf: Callable[[str], Path]) -> Path:
    return tiny_gguf("f32")


@pytest.fixture(scope="session")
def q8_gguf(tiny_gguf: Callable[[str], Path]) -> Path:
    return tiny_gguf("q8_0")


# ---- the conformance suite ------------------------------------------------------------------


class TestLlamaCppF32Conformance(GeneratorConformance):
    logit_tolerance = TOLERANCE

    @pytest.fixture
    def generator(self, f32_gguf: Path) -> nextword.Generator:
        return nextword.load("llamacpp", str(f32_gguf))


class TestLlamaCppQ8Conformance(GeneratorConformance):
    logit_tolerance = TOLERANCE

    @pytest.fixture
    def generator(self, q8_gguf: Path) -> nextword.Generator:
        return nextword.load("llamacpp", str(q8_gguf))


# ---- registration and capabilities ------------------------------------------------------------


def test_backend_is_listed_and_usable() -> None:
    info = {b.name: b for b in nextword.backends()}["llamacpp"]
    assert info.usable, info.reason
    assert info.default_model == "gpt2"


def test_check_reports_a_missing_llama_cpp_with_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        plugin_mod.importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real(name, *a)
    )
    reason = plugin_mod._check()
    assert reason is not None and "llama-cpp-python" in reason
    assert "CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" pip install 'nextword[llamacpp]'" in reason


def test_unimportable_engine_is_a_load_error_with_the_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nextword_llamacpp.generator", None)  # import now raises ImportError
    with pytest.raises(ModelLoadError, match="GGML_NATIVE=OFF"):
        plugin_mod._load("model.gguf")


def test_capabilities_as_declared(f32_gguf: Path) -> None:
    gen = nextword.load("llamacpp", str(f32_gguf))
    caps = gen.capabilities
    assert caps == plugin_mod.CAPABILITIES
    # Every option runs through nextword's shared loop: emulated, none native, none missing.
    for option in DecodingConfig.field_names():
        assert caps.support(option) is Support.EMULATED, option
    assert caps.batch and caps.stream and caps.predict_next and caps.score


# ---- files llama.cpp must never see ---------------------------------------------------------------


def _expect_load_error(path: Path, *words: str) -> ModelLoadError:
    with pytest.raises(ModelLoadError) as info:
        LLAMACPP.load(str(path))
    message = str(info.value)
    for word in words:
        assert word in message, message
    # The public API gives the same error.
    with pytest.raises(ModelLoadError):
        nextword.load("llamacpp", str(path))
    return info.value


@pytest.mark.parametrize("keep", [3, 100, 2_000, 200_000, 0.5, -1])
def test_truncated_gguf_is_refused(f32_gguf: Path, tmp_path: Path, keep: float) -> None:
    data = f32_gguf.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else (len(data) + keep if keep < 0 else keep)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[:n])
    _expect_load_error(cut, "truncated or corrupt" if n >= 4 else "not a GGUF file")


def test_random_bytes_named_gguf_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "random.gguf"
    path.write_bytes(np.random.default_rng(0).bytes(1 << 16))
    _expect_load_error(path, "not a GGUF file")


def test_text_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.gguf"
    path.write_text("These are my notes, not a model.\n" * 20)
    _expect_load_error(path, "not a GGUF file")
    other = tmp_path / "model.bin"
    other.write_text("hello")
    _expect_load_error(other, "not a GGUF file")


def test_empty_file_and_bad_version_are_refused(f32_gguf: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    _expect_load_error(empty, "empty")
    data = bytearray(f32_gguf.read_bytes()[:4096])
    data[4:8] = (99).to_bytes(4, "little")
    bad = tmp_path / "v99.gguf"
    bad.write_bytes(bytes(data))
    _expect_load_error(bad, "version 99")


def _small_gguf(path: Path, arch: str) -> Path:
    """A well-formed GGUF file with one small tensor (not a model llama.cpp can run)."""
    gguf = require_module("gguf")
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_context_length(16)
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_corrupt_tensor_offset_is_refused(tmp_path: Path) -> None:
    """A tensor whose data would lie past the end of the file (a corrupt offset, length intact)."""
    gguf = require_module("gguf")
    path = _small_gguf(tmp_path / "small.gguf", "gpt2")
    inspect_gguf(path)
    reader = gguf.GGUFReader(path)
    offset_field = reader.tensors[0].field.parts[-1]  # the last item of a tensor's info record
    at = int(offset_field.ctypes.data - reader.data.ctypes.data)
    del reader, offset_field
    data = bytearray(path.read_bytes())
    data[at : at + 8] = (1 << 20).to_bytes(8, "little")
    bad = tmp_path / "offset.gguf"
    bad.write_bytes(bytes(data))
    _expect_load_error(bad, "truncated or corrupt", "token_embd.weight")


def test_vocabulary_only_gguf_is_refused(llama_vocab: Any) -> None:
    _expect_load_error(llama_vocab.gguf, "no tensors")


def test_llama_cpp_refusing_a_sound_file_is_a_load_error(tmp_path: Path) -> None:
    """A well-formed GGUF that llama.cpp cannot run (unknown architecture): its NULL model becomes
    ModelLoadError carrying llama.cpp's reason."""
    path = _small_gguf(tmp_path / "bogus.gguf", "bogusarch")
    inspect_gguf(path)  # sound as a file
    error = _expect_load_error(path, "llama.cpp could not load")
    assert "bogusarch" in str(error)


def test_missing_paths_are_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such model"):
        LLAMACPP.load(str(tmp_path / "nope.gguf"))
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "x.gguf").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="x.gguf"):
        LLAMACPP.load(str(tmp_path / "folder"))


def test_hub_id_offline_is_a_clear_load_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))
    with pytest.raises(ModelLoadError, match="unreachable") as info:
        LLAMACPP.load("gpt2", cache_dir=str(tmp_path / "cache"))
    assert ".gguf" in str(info.value)


# ---- the context window -------------------------------------------------------------------------


def test_context_window_defaults_to_the_training_context(f32_gguf: Path) -> None:
    gen = nextword.load("llamacpp", str(f32_gguf))
    assert gen.context_length == 256  # the fixture's n_positions
    with pytest.raises(InvalidConfig, match="256"):
        LLAMACPP.load(str(f32_gguf), n_ctx=512)


def test_prompt_past_n_ctx_raises_and_nothing_aborts(f32_gguf: Path) -> None:
    gen = nextword.load("llamacpp", str(f32_gguf), n_ctx=32)
    assert isinstance(gen, LlamaCppGenerator)
    assert gen.context_length == 32
    long_prompt = " cat" * 40
    # generate / predict_next / score past the window are the conformance suite's; here n_ctx sets it.
    with pytest.raises(ContextLengthExceeded):
        gen.generate(long_prompt, max_new_tokens=1)
    with pytest.raises(ContextLengthExceeded):
        gen.next_token_logits(list(range(33)))
    with pytest.raises(ContextLengthExceeded):
        gen.generate("I love cats because", max_new_tokens=30)
    # Exactly full is fine, and the generator keeps working.
    n = len(gen.tokenize("I love cats because"))
    full = gen.generate("I love cats because", max_new_tokens=32 - n)
    assert full.completion_tokens == 32 - n or full.finish_reason == "eos"
    session = gen.open_session(list(range(31)))
    session.feed(5)
    with pytest.raises(ContextLengthExceeded):
        session.feed(6)
    # The refused token changed nothing: the session still holds the 32 tokens it had.
    np.testing.assert_allclose(session.logits(), gen.next_token_logits([*range(31), 5]), atol=TOLERANCE)


def test_bad_token_ids_raise(f32_gguf: Path) -> None:
    gen = nextword.load("llamacpp", str(f32_gguf))
    assert isinstance(gen, LlamaCppGenerator)
    with pytest.raises(InvalidInput):
        gen.next_token_logits([])
    with pytest.raises(InvalidInput):
        gen.next_token_logits([1, 50257])
    with pytest.raises(InvalidInput):
        gen.next_token_logits([-1])
    with pytest.raises(InvalidInput):
        gen.open_session([1]).feed(10**6)


# ---- the KV cache -------------------------------------------------------------------------------


def test_interleaved_sessions_and_prefix_reuse_give_fresh_results(f32_gguf: Path) -> None:
    gen = LLAMACPP.load(str(f32_gguf), kv_type="f32")
    try:
        a_ids = gen.tokenize("I love cats because")
        b_ids = gen.tokenize("The weather today is")
        a, b = gen.open_session(a_ids), gen.open_session(b_ids)
        for _ in range(6):
            for session, ids in ((a, a_ids), (b, b_ids)):
                logits = session.logits()
                gen.reset_cache()
                fresh = gen.next_token_logits(ids)
                np.testing.assert_allclose(logits, fresh, atol=TOLERANCE)
                token = int(np.argmax(logits))
                session.feed(token)
                ids.append(token)
        # A shorter prefix of what is cached, and an unrelated sequence, are right too.
        gen.next_token_logits(a_ids)
        short = gen.next_token_logits(a_ids[:3])
        gen.reset_cache()
        np.testing.assert_allclose(short, gen.next_token_logits(a_ids[:3]), atol=TOLERANCE)
        # The caller owns the arrays it gets.
        first = gen.next_token_logits(a_ids)
        kept = first.copy()
        gen.next_token_logits(b_ids)
        np.testing.assert_array_equal(first, kept)
    finally:
        gen.close()


STORY = (
    "Once upon a time there was a small cat that loved to sleep in the warm sun all day, and every "
    "evening it walked along the river to watch the boats come home with their nets full of fish. "
    "The fishermen knew the cat well and always kept a little of the catch for it, so it never "
    "went hungry, and in the winter it slept by the fire in the inn where the old captain told "
    "stories of the sea to anyone who would listen"
)


def test_a_prompt_that_grows_by_a_word_costs_one_short_decode(q8_gguf: Path) -> None:
    """A prompt is evaluated in blocks on a fixed grid (128 tokens, then 32, then the rest): a
    prompt that extends a cached one is evaluated from the last block end both share, on the
    cells of the cached one, one decode per remaining block, and its logits are bit-identical to
    the longer prompt evaluated on an empty cache (the grid is a function of the prompt alone).
    Typing a text word by word then decodes a fraction of what reading every prompt does."""
    from nextword.backend import prompt_blocks

    assert prompt_blocks(200) == (128, 160, 192, 200) and prompt_blocks(150) == (128, 150)
    assert prompt_blocks(31) == (31,) and prompt_blocks(64) == (32, 64) and prompt_blocks(70) == (32, 64, 70)
    gen: Any = LLAMACPP.load(str(q8_gguf))
    try:
        words = f"{STORY}. {STORY}".split()  # told twice: about 180 tokens of the 256 the model holds
        prompts = [gen.tokenize(" ".join(words[:n])) for n in range(3, len(words) + 1)]
        assert len(prompts[-1]) > 140  # past the first 128-token block
        fresh = []
        for ids in prompts:
            gen.reset_cache()
            fresh.append(gen.next_token_logits(ids))
        gen.reset_cache()
        gen.next_token_logits(prompts[0])
        decoded = 0
        for ids, want, before in zip(prompts[1:], fresh[1:], prompts[:-1], strict=True):
            with gen.pool.decode_log() as log:
                got = gen.next_token_logits(ids)
            np.testing.assert_array_equal(got, want)
            mine = prompt_blocks(len(ids))
            shared = max((end for end in prompt_blocks(len(before)) if end in mine), default=0)
            assert [[pos for _, pos, _ in entries] for entries in log] == [
                list(range(start, end)) for start, end in zip((0, *mine), mine, strict=False) if end > shared
            ], (len(before), len(ids), log)
            decoded += sum(len(entries) for entries in log)
        # Reading every prompt afresh decodes all their tokens (15,653 here); the grid decodes 2,789:
        # the tail after
        # the last 32-token block end, and a whole block where a prompt crosses a 128-token end.
        total = sum(len(ids) for ids in prompts[1:])
        assert 3 * decoded < total, (decoded, total)
    finally:
        gen.close()


def test_steps_after_a_prompt_read_from_another_prompts_blocks_cost_one_token(q8_gguf: Path) -> None:
    """A generation whose sequence was taken by a prompt extending its own (up to a 32-token
    block end here) resumes from that block end once, and then that slot is its own again: every
    later step decodes one token (the steps were replayed at every step, which made a long stream
    crawl once short requests extending its prompt had shared its sequence)."""
    gen: Any = LLAMACPP.load(str(q8_gguf), parallel=1)
    try:
        prompt = gen.tokenize(STORY)[:32]
        session = gen.open_session(prompt)
        logits = session.logits()
        for _ in range(4):
            session.feed(int(np.argmax(logits)))
            logits = session.logits()
        gen.open_session([*prompt, *gen.tokenize(" cats")[-2:]]).logits()  # takes the only slot
        session.feed(int(np.argmax(logits)))
        with gen.pool.decode_log() as log:
            logits = session.logits()
        # replayed from the shared block end: the four steps one at a time, then the new one
        assert [[pos for _, pos, _ in entries] for entries in log] == [[32], [33], [34], [35], [36]], log
        for step in range(6):
            session.feed(int(np.argmax(logits)))
            with gen.pool.decode_log() as log:
                logits = session.logits()
            assert [[pos for _, pos, _ in entries] for entries in log] == [[37 + step]], log
    finally:
        gen.close()


def test_score_needs_no_all_logits_context(f32_gguf: Path) -> None:
    """Scoring a text longer than one scoring chunk equals the chain of one-token predictions."""
    # n_batch bounds the rows read per scoring chunk: 7 gives several chunks, not aligned with the text.
    gen = LLAMACPP.load(str(f32_gguf), n_batch=7)
    try:
        text = "Once upon a time there was a small cat that loved to sleep in the warm sun all day long."
        ids = gen.tokenize(text)
        assert len(ids) > 20
        scores = gen.token_logprobs(ids)
        gen.reset_cache()
        for i in range(1, len(ids)):
            logits = gen.next_token_logits(ids[:i]).astype(np.float64)
            expected = logits[ids[i]] - logits.max() - np.log(np.exp(logits - logits.max()).sum())
            assert scores[i - 1] == pytest.approx(expected, abs=10 * TOLERANCE)
    finally:
        gen.close()


def test_closed_generator_raises_instead_of_crashing(f32_gguf: Path) -> None:
    gen = LLAMACPP.load(str(f32_gguf))
    session = gen.open_session(gen.tokenize("Hello"))
    gen.close()
    gen.close()  # twice is fine
    with pytest.raises(NextwordError, match="closed"):
        gen.generate("Hello", max_new_tokens=2)
    with pytest.raises(NextwordError, match="closed"):
        session.logits()


def test_failed_decode_is_an_engine_error_and_the_generator_recovers(
    f32_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llama_cpp

    gen = LLAMACPP.load(str(f32_gguf))
    try:
        expected = gen.generate("Hello there", max_new_tokens=4).token_ids
        gen.reset_cache()
        real_decode = llama_cpp.llama_decode
        monkeypatch.setattr(llama_cpp, "llama_decode", lambda ctx, batch: 1)
        with pytest.raises(nextword.EngineError, match="llama_decode returned 1"):
            gen.generate("Hello there", max_new_tokens=4)
        monkeypatch.setattr(llama_cpp, "llama_decode", real_decode)
        assert gen.generate("Hello there", max_new_tokens=4).token_ids == expected
    finally:
        gen.close()


# ---- agreement with transformers on the same weights ----------------------------------------------


def test_f32_greedy_matches_the_hf_backend(f32_gguf: Path, tiny_gpt2_dir: Path) -> None:
    """The F32 file runs the same network as transformers: same tokens, same greedy choices
    wherever transformers' own top-2 margin is clear of llama.cpp's numeric noise."""
    hf = nextword.load("hf", str(tiny_gpt2_dir), device="cpu")
    gen = nextword.load("llamacpp", str(f32_gguf), kv_type="f32")
    texts = ["I love cats because", "Caf\u00e9 cr\u00e8me \u4e2d\u6587 ok \U0001f600", "  two  spaces\n\ttab"]
    for text in texts:
        assert gen.tokenize(text) == hf.tokenize(text)
    checked = 0
    for prompt in texts[:1] + ["The weather today is", "Once upon a time"]:
        ours = gen.generate(prompt, max_new_tokens=16).token_ids
        ids = hf.tokenize(prompt)
        for token in ours:
            ref = np.sort(np.asarray(hf.next_token_logits(ids), dtype=np.float64))
            if ref[-1] - ref[-2] < 0.05:
                break  # a near-tie: the rest may legitimately diverge
            assert token == int(np.argmax(hf.next_token_logits(ids)))
            ids.append(token)
            checked += 1
    assert checked >= 16


# ---- the folder -> GGUF cache -------------------------------------------------------------------


@pytest.fixture
def counted_convert(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Path, str]]:
    """Every call of the converter, recorded (the real converter still runs)."""
    calls: list[tuple[Path, str]] = []
    real = convert_mod.convert

    def spy(src: Any, out: Any, *, type: str = "f16", progress: bool = False) -> Path:
        calls.append((Path(src), type))
        return real(src, out, type=type, progress=progress)

    monkeypatch.setattr(convert_mod, "convert", spy)
    return calls


def test_folder_is_converted_once_and_reused(
    tiny_gpt2_dir: Path, tmp_path: Path, counted_convert: list[tuple[Path, str]]
) -> None:
    folder = tmp_path / "my-gpt2"
    shutil.copytree(tiny_gpt2_dir, folder)
    cache = tmp_path / "cache"
    first = LLAMACPP.load(str(folder), cache_dir=str(cache))
    text = first.generate("I love cats because", max_new_tokens=8).text
    path = first.gguf_path
    first.close()
    assert len(counted_convert) == 1 and counted_convert[0][1] == "q8_0"  # the default quant
    assert path.parent == cache and path.name.endswith(".Q8_0.gguf") and path.name.startswith("my-gpt2-")

    again = LLAMACPP.load(str(folder), cache_dir=str(cache))
    assert len(counted_convert) == 1, "the second load converted again"
    assert again.gguf_path == path
    assert again.generate("I love cats because", max_new_tokens=8).text == text
    again.close()

    other_type = LLAMACPP.load(str(folder), cache_dir=str(cache), quant="f32")
    assert len(counted_convert) == 2 and other_type.gguf_path != path
    other_type.close()

    # One changed weight byte: a new key, a new conversion.
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x01
    weights.write_bytes(bytes(data))
    changed = LLAMACPP.load(str(folder), cache_dir=str(cache))
    assert len(counted_convert) == 3
    assert changed.gguf_path != path and changed.gguf_path.parent == cache
    changed.close()


def test_damaged_cache_entry_is_converted_again(
    tiny_gpt2_dir: Path, tmp_path: Path, counted_convert: list[tuple[Path, str]]
) -> None:
    cache = tmp_path / "cache"
    gen = LLAMACPP.load(str(tiny_gpt2_dir), cache_dir=str(cache), quant="f16")
    path = gen.gguf_path
    gen.close()
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    gen = LLAMACPP.load(str(tiny_gpt2_dir), cache_dir=str(cache), quant="f16")
    assert len(counted_convert) == 2 and gen.gguf_path == path
    inspect_gguf(path)
    gen.close()


def test_default_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NEXTWORD_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path / "gguf"
    monkeypatch.delenv("NEXTWORD_CACHE_DIR")
    assert default_cache_dir().parts[-2:] == ("nextword", "gguf")


# ---- options ------------------------------------------------------------------------------------


def test_flash_attention_is_off_by_default_and_on_on_request_with_the_same_predictions(f32_gguf: Path) -> None:
    on, off = LLAMACPP.load(str(f32_gguf), flash_attn=True), LLAMACPP.load(str(f32_gguf))
    try:
        assert on.settings.options["flash_attn"] is True and off.settings.options["flash_attn"] is False
        for prompt in ("I love cats because", "Once upon a time there was"):
            a, b = on.predict_next(prompt, k=5, unit="token"), off.predict_next(prompt, k=5, unit="token")
            assert [c.token_id for c in a] == [c.token_id for c in b]
            assert [c.prob for c in a] == pytest.approx([c.prob for c in b], abs=1e-3)
    finally:
        on.close()
        off.close()


def test_quantized_kv_cache_needs_flash_attention(f32_gguf: Path) -> None:
    gen = LLAMACPP.load(str(f32_gguf), kv_type="q8_0")
    try:
        assert gen.settings.options["flash_attn"] is True
        reference = nextword.load("llamacpp", str(f32_gguf), kv_type="f32")
        ours = gen.predict_next("I love cats because", k=1, unit="token")[0]
        theirs = reference.predict_next("I love cats because", k=1, unit="token")[0]
        assert ours.token_id == theirs.token_id
        assert gen.generate("I love cats because", max_new_tokens=4).completion_tokens == 4
    finally:
        gen.close()
    with pytest.raises(InvalidConfig, match="flash"):
        LLAMACPP.load(str(f32_gguf), kv_type="q8_0", flash_attn=False)


def test_invalid_options_are_config_errors(f32_gguf: Path) -> None:
    with pytest.raises(InvalidConfig):
        nextword.load("llamacpp", str(f32_gguf), kv_type="q3_k")
    with pytest.raises(InvalidConfig):
        nextword.load("llamacpp", str(f32_gguf), quant="q2")
    with pytest.raises(InvalidConfig):
        nextword.load("llamacpp", str(f32_gguf), n_ctx=0)
    with pytest.raises(InvalidConfig):
        nextword.load("llamacpp", str(f32_gguf), context=64)


def test_gpu_layers_work_or_are_refused_on_a_cpu_build(f32_gguf: Path) -> None:
    llama_cpp = require_module("llama_cpp")
    if llama_cpp.llama_supports_gpu_offload():
        gen = LLAMACPP.load(str(f32_gguf), n_gpu_layers=-1)
        assert gen.generate("Hello", max_new_tokens=3).completion_tokens == 3
        gen.close()
    else:
        with pytest.raises(InvalidConfig, match="GPU"):
            LLAMACPP.load(str(f32_gguf), n_gpu_layers=-1)


# ---- a real pretrained model ----------------------------------------------------------------------


@pytest.mark.slow
def test_real_gemma_model(gemma_gguf: Path) -> None:
    """Gemma 3 270M (Q4_K_M, SentencePiece, BOS added, two end tokens) runs as a real model should."""
    gen = nextword.load("llamacpp", str(gemma_gguf))
    assert isinstance(gen, LlamaCppGenerator)
    assert gen.context_length == 4096  # trained on 32768, capped by default
    ids = gen.tokenize("The capital of France is")
    assert ids[0] == gen.llama.token_bos()  # the model asks for a BOS token
    assert gen.eos_token_ids >= {gen.llama.token_eos()}
    top = [c.text.strip() for c in gen.predict_next("The capital of France is", k=5)]
    assert "Paris" in top
    first = gen.generate("The capital of France is", max_new_tokens=20)
    assert first.token_ids == gen.generate("The capital of France is", max_new_tokens=20).token_ids
    assert sum(w.strip(".,;:!?'\"").isalpha() for w in first.text.split()) >= 8
    natural = gen.score("I love cats because they are soft, playful and always happy to see me.")
    words = "I love cats because they are soft, playful and always happy to see me.".split()
    shuffled = gen.score(" ".join(words[::-1]))
    assert natural.perplexity * 5 < shuffled.perplexity
    chunks = list(gen.stream("Écris une phrase en français :", max_new_tokens=24))
    assert "\ufffd" not in "".join(chunks)


def test_word_search_does_not_depend_on_earlier_calls(f32_gguf: Path) -> None:
    """The word search reuses the prompt's KV state between extensions; the numbers must still be
    those of a generator that has done nothing else before."""
    from nextword._words.search import clear_cache, search_words

    gen = nextword.load("llamacpp", str(f32_gguf))
    prompt = "The weather today is"
    first = search_words(gen, prompt, 5)
    gen.generate("The weather today is cold and", max_new_tokens=5)
    gen.predict_next("Something else entirely", k=3, unit="token")
    clear_cache()
    again = search_words(gen, prompt, 5)
    assert [(w.text, w.prob) for w in again.words] == [(w.text, w.prob) for w in first.words]
    assert again.unexplored_mass == first.unexplored_mass


def test_a_layer_count_llama_cpp_would_abort_on_is_refused(tmp_path: Path) -> None:
    from nextword_llamacpp.gguf_check import inspect_gguf

    gguf = require_module("gguf")
    for n_layers in (0, 600):
        path = tmp_path / f"layers{n_layers}.gguf"
        writer = gguf.GGUFWriter(str(path), "gpt2")
        writer.add_block_count(n_layers)
        writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        with pytest.raises(ModelLoadError, match="block_count"):
            inspect_gguf(path)


def test_converter_output_onto_a_folder_is_refused(tiny_gpt2_dir: Path, tmp_path: Path) -> None:
    # OUT is a folder, and the file name the converter picks inside it is taken by a folder.
    target = tmp_path / f"{tiny_gpt2_dir.resolve().name}.F32.gguf"
    target.mkdir()
    with pytest.raises(InvalidConfig, match="a folder of that name exists"):
        convert_mod.convert(tiny_gpt2_dir, tmp_path, type="f32")
    assert list(tmp_path.iterdir()) == [target]


def test_a_sentencepiece_vocabulary_without_byte_tokens_is_refused(tmp_path: Path) -> None:
    """llama.cpp's SentencePiece tokenizer aborts the process on text it must spell in bytes."""
    from nextword_llamacpp.gguf_check import inspect_gguf

    gguf = require_module("gguf")
    path = tmp_path / "spm.gguf"
    writer = gguf.GGUFWriter(str(path), "gpt2")
    writer.add_block_count(1)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(["<unk>", "<s>", "</s>", "\u2581a", "b"])
    writer.add_tensor("token_embd.weight", np.zeros((5, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ModelLoadError, match="lacks byte tokens"):
        inspect_gguf(path)
