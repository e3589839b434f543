"""Tests of nextword's Hugging Face GPT-2 -> GGUF converter (``nextword_llamacpp.convert``).

Every model here is built in the test: a tiny random GPT-2 with its own byte-level BPE tokenizer
trained on a few sentences, so nothing is downloaded. Tests that need llama-cpp-python (or torch /
transformers to build the fixture) skip when it is missing, and fail instead when the environment
sets ``NEXTWORD_REQUIRE_ASSETS=1``.

Numbers measured on the main fixture (n_embd=64, 2 layers, 399-token vocabulary, init range 0.2,
seed 0), llama.cpp against transformers float32 with ``verify`` over the 168 positions of
``PROBES + CORPUS``:

======  ============  ===========  =========
type    max |Δlogit|  top-1 agree  mean KL
======  ============  ===========  =========
f32     0.008         99.4%        4e-7
f16     0.011         100%         2e-6
q8_0    0.31          94%          1e-3
q4_0    4.2           60%          0.11
q4_k_m  1.5           76%          0.03
q5_k_m  1.3           84%          0.02
q6_k    0.33          95%          2e-3
======  ============  ===========  =========

(The one f32 top-1 disagreement is a position whose two best logits are closer than the noise.)

Random weights drawn with a large init range are a worst case for quantization: every weight is
"signal", there are no outlier-free smooth rows as in trained models, and the logits are large, so
the quantized bounds below are loose on purpose; they guard against broken files (wrong layout,
wrong transpose, wrong types), not against ordinary quantization error.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nextword_llamacpp.convert.checkpoint as checkpoint_mod
import numpy as np
import pytest
from nextword_llamacpp.convert import GGUF_TYPES, VerifyReport, convert, verify

from nextword.errors import ContextLengthExceeded, InvalidConfig, InvalidInput, ModelLoadError
from nextword.testing.pytest_fixtures import require_module

CORPUS = [
    "I love cats because they are soft and warm.",
    "The quick brown fox jumps over the lazy dog.",
    "Cats and dogs are friends when they grow up together.",
    "Next word prediction guesses what comes after a prompt.",
    "In 1969, two astronauts walked on the Moon.",
    "def add(a, b):\n    return a + b\n",
]
PROBES = [
    "I love cats because",
    "The quick brown fox",
    "Dogs are friends",
    "In 2024, three robots",
    "return a + b",
    "Cats grow up soft when they are friends with the lazy dog.",
    "What comes after a prompt is a guess about the next word.",
    "The Moon, the dogs and the astronauts walked together in 1969.",
    "def jump(fox, dog):\n    return fox + dog\n",
]


def _n_vocab(src: Path) -> int:
    """The embedding rows of the model in ``src``."""
    return int(json.loads((src / "config.json").read_text())["vocab_size"])


def _leftovers(folder: Path) -> list[str]:
    """Names of temp files the converter could have left in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp"))


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------


def _build_gpt2(
    folder: Path,
    *,
    n_embd: int,
    n_layer: int,
    n_head: int,
    n_positions: int,
    extra_vocab: int = 0,
    seed: int = 0,
    init_range: float = 0.2,
) -> Path:
    """Save a random GPT-2 with a freshly trained byte-level BPE tokenizer into ``folder``.

    ``extra_vocab`` adds embedding rows no token maps to (as models padded to a round size have).
    The wide default ``init_range`` keeps a tiny model's greedy choices away from near-ties.
    """
    torch = require_module("torch")
    transformers = require_module("transformers")
    tokenizers = require_module("tokenizers")
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer)
    fast = transformers.GPT2TokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>"
    )
    fast.save_pretrained(folder)

    torch.manual_seed(seed)
    eot = fast.convert_tokens_to_ids("<|endoftext|>")
    config = transformers.GPT2Config(
        vocab_size=len(fast) + extra_vocab,
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        initializer_range=init_range,
        bos_token_id=eot,
        eos_token_id=eot,
    )
    transformers.GPT2LMHeadModel(config).eval().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, n_embd=64 random GPT-2 with its own 399-token vocabulary."""
    return _build_gpt2(tmp_path_factory.mktemp("tiny-gpt2"), n_embd=64, n_layer=2, n_head=4, n_positions=64)


@pytest.fixture(scope="module")
def odd_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-layer GPT-2 of width 40 (not a multiple of 32) with 5 padding rows past its vocabulary."""
    return _build_gpt2(
        tmp_path_factory.mktemp("odd-gpt2"), n_embd=40, n_layer=1, n_head=4, n_positions=32, extra_vocab=5
    )


@pytest.fixture(scope="module")
def converted(tiny_gpt2: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``converted(type)``: the tiny model converted to ``type`` (each type converted once)."""
    out_dir = tmp_path_factory.mktemp("gguf")
    cache: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in cache:
            if kind in ("q4_k_m", "q5_k_m", "q6_k"):
                require_module("llama_cpp")
            cache[kind] = convert(tiny_gpt2, out_dir / f"tiny.{kind}.gguf", type=kind)
        return cache[kind]

    return get


@pytest.fixture(scope="module")
def report_for(tiny_gpt2: Path, converted: Callable[[str], Path]) -> Callable[[str], VerifyReport]:
    """``report_for(type)``: ``verify`` of the tiny model's ``type`` file over PROBES + CORPUS (cached)."""
    cache: dict[str, VerifyReport] = {}

    def get(kind: str) -> VerifyReport:
        require_module("llama_cpp")
        if kind not in cache:
            cache[kind] = verify(tiny_gpt2, converted(kind), probes=PROBES + CORPUS)
        return cache[kind]

    return get


@pytest.fixture(scope="module")
def llama(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """``llama(path)``: a llama_cpp.Llama on ``path`` with all logits kept; closed after the module."""
    llama_cpp = require_module("llama_cpp")
    opened: list[Any] = []

    def load(path: Path, n_ctx: int = 64) -> Any:
        llm = llama_cpp.Llama(model_path=str(path), logits_all=True, n_ctx=n_ctx, verbose=False)
        opened.append(llm)
        return llm

    yield load
    for llm in opened:
        llm.close()


def _reader(path: Path) -> Any:
    """A gguf.GGUFReader on ``path``."""
    return require_module("gguf").GGUFReader(path)


def _field(reader: Any, key: str) -> Any:
    """The value of metadata ``key`` (lists for arrays)."""
    return reader.fields[key].contents()


def _tensor_types(path: Path) -> dict[str, str]:
    """GGUF tensor name -> GGML type name."""
    return {t.name: t.tensor_type.name for t in _reader(path).tensors}


def _logit_pairs(src: Path, gguf_path: Path, llama: Callable[..., Any]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(transformers logits, llama.cpp logits) per probe, same token ids, float64."""
    torch = require_module("torch")
    transformers = require_module("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(src)
    model = transformers.GPT2LMHeadModel.from_pretrained(src, dtype=torch.float32).eval()
    llm = llama(gguf_path)
    pairs = []
    for text in PROBES:
        ids = tok.encode(text)
        with torch.no_grad():
            hf = model(torch.tensor([ids])).logits[0].double().numpy()
        llm.reset()
        llm.eval(ids)
        pairs.append((hf, np.array(llm.scores[: len(ids)], dtype=np.float64)))
    return pairs


def _clear_top1_agreement(pairs: list[tuple[np.ndarray, np.ndarray]], margin: float) -> tuple[int, int]:
    """(agreeing, compared) top-1 choices over positions whose reference top-2 gap exceeds ``margin``."""
    agree = compared = 0
    for hf, gg in pairs:
        top2 = np.sort(hf, axis=-1)[:, -2:]
        clear = (top2[:, 1] - top2[:, 0]) > margin
        compared += int(clear.sum())
        agree += int((hf.argmax(-1) == gg.argmax(-1))[clear].sum())
    return agree, compared


# --------------------------------------------------------------------------------------------
# conversion and loading
# --------------------------------------------------------------------------------------------


def test_every_type_is_offered_documented_and_made_by_a_known_tool() -> None:
    """The type list drives the `quant` option, the `convert` command and the plugin's docs, and
    each type is written by gguf-py or made by a llama.cpp quantizer constant that exists."""
    import nextword_llamacpp.plugin as plugin
    from nextword_llamacpp.commands import convert_command
    from nextword_llamacpp.convert.gguf_types import DIRECT_TYPES, LLAMA_QUANT_FTYPES

    assert plugin.OPTIONS["quant"].choices == GGUF_TYPES
    type_param = next(p for p in convert_command.params if p.name == "type_")
    assert tuple(type_param.type.choices) == GGUF_TYPES  # type: ignore[attr-defined]
    assert set(DIRECT_TYPES) | set(LLAMA_QUANT_FTYPES) == set(GGUF_TYPES)
    assert not set(DIRECT_TYPES) & set(LLAMA_QUANT_FTYPES)
    llama_cpp = require_module("llama_cpp")
    assert all(isinstance(getattr(llama_cpp, name), int) for name in LLAMA_QUANT_FTYPES.values())
    assert all(f"``{kind}``" in (plugin.__doc__ or "") for kind in GGUF_TYPES)


@pytest.mark.parametrize("kind", GGUF_TYPES)
def test_each_type_converts_and_loads_in_llama_cpp(
    kind: str, tiny_gpt2: Path, converted: Callable[[str], Path], llama: Callable[..., Any]
) -> None:
    path = converted(kind)
    assert path.is_file() and path.name == f"tiny.{kind}.gguf"
    assert _leftovers(path.parent) == []
    probe = path.parent / "plain-file"
    probe.touch()
    assert path.stat().st_mode == probe.stat().st_mode  # ordinary permissions, not a temp file's 0600
    probe.unlink()
    gguf = require_module("gguf")
    reader = _reader(path)
    expected_ftype = {
        "f32": gguf.LlamaFileType.ALL_F32,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
        "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0,
        "q4_k_m": gguf.LlamaFileType.MOSTLY_Q4_K_M,
        "q5_k_m": gguf.LlamaFileType.MOSTLY_Q5_K_M,
        "q6_k": gguf.LlamaFileType.MOSTLY_Q6_K,
    }[kind]
    assert _field(reader, "general.file_type") == expected_ftype

    llm = llama(path)
    llm.reset()
    llm.eval(llm.tokenize(b"I love cats", add_bos=False))
    scores = np.asarray(llm.scores[: llm.n_tokens])
    assert scores.shape == (llm.n_tokens, _n_vocab(tiny_gpt2))
    assert np.isfinite(scores).all()


def test_metadata_keys(tiny_gpt2: Path, converted: Callable[[str], Path]) -> None:
    gguf = require_module("gguf")
    reader = _reader(converted("f16"))
    tok = json.loads((tiny_gpt2 / "tokenizer.json").read_text())
    assert _field(reader, "general.architecture") == "gpt2"
    assert _field(reader, "gpt2.context_length") == 64
    assert _field(reader, "gpt2.embedding_length") == 64
    assert _field(reader, "gpt2.feed_forward_length") == 256
    assert _field(reader, "gpt2.block_count") == 2
    assert _field(reader, "gpt2.attention.head_count") == 4
    assert _field(reader, "gpt2.attention.layer_norm_epsilon") == pytest.approx(1e-5)
    assert _field(reader, "tokenizer.ggml.model") == "gpt2"
    assert _field(reader, "tokenizer.ggml.pre") == "gpt-2"

    tokens = _field(reader, "tokenizer.ggml.tokens")
    vocab = tok["model"]["vocab"]
    assert len(tokens) == _n_vocab(tiny_gpt2) == len(vocab)
    assert all(tokens[i] == t for t, i in vocab.items())
    assert _field(reader, "tokenizer.ggml.merges") == [" ".join(m) for m in tok["model"]["merges"]]
    eot = vocab["<|endoftext|>"]
    assert _field(reader, "tokenizer.ggml.bos_token_id") == eot
    assert _field(reader, "tokenizer.ggml.eos_token_id") == eot
    assert _field(reader, "tokenizer.ggml.add_bos_token") is False
    types = _field(reader, "tokenizer.ggml.token_type")
    assert types[eot] == gguf.TokenType.CONTROL
    assert {t for i, t in enumerate(types) if i != eot} == {gguf.TokenType.NORMAL}

    names = {t.name for t in reader.tensors}
    per_block = ["attn_norm", "attn_qkv", "attn_output", "ffn_norm", "ffn_up", "ffn_down"]
    expected = {"token_embd.weight", "position_embd.weight", "output_norm.weight", "output_norm.bias", "output.weight"}
    expected |= {f"blk.{i}.{t}.{p}" for i in range(2) for t in per_block for p in ("weight", "bias")}
    assert names == expected  # output.weight written although tied; no attn.bias buffers


def test_f32_tensors_equal_the_hf_weights(tiny_gpt2: Path, converted: Callable[[str], Path]) -> None:
    """F32 data is the checkpoint's, with Conv1D weights transposed to (out, in)."""
    safetensors_numpy = require_module("safetensors.numpy")
    hf = {
        k.removeprefix("transformer."): v
        for k, v in safetensors_numpy.load_file(tiny_gpt2 / "model.safetensors").items()
    }
    data = {t.name: np.asarray(t.data) for t in _reader(converted("f32")).tensors}
    np.testing.assert_array_equal(data["token_embd.weight"], hf["wte.weight"])
    np.testing.assert_array_equal(data["output.weight"], hf["wte.weight"])
    np.testing.assert_array_equal(data["position_embd.weight"], hf["wpe.weight"])
    np.testing.assert_array_equal(data["blk.1.attn_qkv.weight"], hf["h.1.attn.c_attn.weight"].T)
    np.testing.assert_array_equal(data["blk.0.ffn_down.weight"], hf["h.0.mlp.c_proj.weight"].T)
    np.testing.assert_array_equal(data["blk.0.ffn_up.bias"], hf["h.0.mlp.c_fc.bias"])
    np.testing.assert_array_equal(data["output_norm.weight"], hf["ln_f.weight"])


def test_tensor_types_follow_llama_cpp(converted: Callable[[str], Path]) -> None:
    """1-D tensors and the position table stay F32; 2-D weights take the file's type."""
    f16 = _tensor_types(converted("f16"))
    assert f16["position_embd.weight"] == "F32" and f16["blk.0.attn_norm.weight"] == "F32"
    assert f16["blk.0.attn_qkv.bias"] == "F32" and f16["blk.0.attn_qkv.weight"] == "F16"
    q8 = _tensor_types(converted("q8_0"))
    assert {q8[n] for n in ("token_embd.weight", "output.weight", "blk.1.ffn_down.weight")} == {"Q8_0"}
    assert q8["position_embd.weight"] == "F32"
    q4 = _tensor_types(converted("q4_0"))
    assert q4["blk.0.ffn_up.weight"] == "Q4_0" and q4["token_embd.weight"] == "Q4_0"
    assert q4["output.weight"] == "Q8_0"  # more bits for the output layer, as llama.cpp does


@pytest.mark.parametrize(("kind", "k_type"), [("q4_k_m", "Q4_K"), ("q5_k_m", "Q5_K"), ("q6_k", "Q6_K")])
def test_k_quants_use_k_types_where_rows_allow(kind: str, k_type: str, converted: Callable[[str], Path]) -> None:
    """n_embd=64 rows cannot hold a 256-block, so llama.cpp falls back there; ffn_down rows (256) can."""
    types = _tensor_types(converted(kind))
    assert types["blk.0.ffn_down.weight"] in {k_type, "Q6_K"}  # the _m mixes give some ffn_down Q6_K
    assert types["blk.0.attn_qkv.weight"] in {"Q5_0", "Q5_1", "Q8_0"}
    assert types["position_embd.weight"] == "F32"


def test_odd_width_falls_back_and_pads_the_vocabulary(
    odd_gpt2: Path, tmp_path: Path, llama: Callable[..., Any]
) -> None:
    """Rows of 40 cannot be Q8_0/K-quant blocks: those tensors fall back to F16, the rest quantize."""
    gguf = require_module("gguf")
    q8 = convert(odd_gpt2, tmp_path, type="q8_0")
    assert q8.name == f"{odd_gpt2.name}.Q8_0.gguf"  # a folder as ``out`` names the file
    types = _tensor_types(q8)
    assert types["token_embd.weight"] == "F16" and types["blk.0.attn_qkv.weight"] == "F16"
    assert types["blk.0.ffn_down.weight"] == "Q8_0"  # rows of n_ff = 160 = 5 blocks

    reader = _reader(q8)
    tokens = _field(reader, "tokenizer.ggml.tokens")
    token_types = _field(reader, "tokenizer.ggml.token_type")
    n_tokenizer = _n_vocab(odd_gpt2) - 5
    assert len(tokens) == n_tokenizer + 5
    assert tokens[-5:] == [f"[PAD{i}]" for i in range(n_tokenizer, n_tokenizer + 5)]
    assert set(token_types[-5:]) == {gguf.TokenType.UNUSED}

    for path in (q8, convert(odd_gpt2, tmp_path / "odd.q4_k_m.gguf", type="q4_k_m")):
        llm = llama(path, n_ctx=32)
        llm.reset()
        llm.eval(llm.tokenize(b"Cats and dogs", add_bos=False))
        assert np.isfinite(np.asarray(llm.scores[: llm.n_tokens])).all()
    assert _leftovers(tmp_path) == []


def test_pytorch_bin_checkpoint_converts_like_safetensors(
    tiny_gpt2: Path, converted: Callable[[str], Path], tmp_path: Path
) -> None:
    torch = require_module("torch")
    transformers = require_module("transformers")
    src = tmp_path / "bin-model"
    shutil.copytree(tiny_gpt2, src)
    (src / "model.safetensors").unlink()
    model = transformers.GPT2LMHeadModel.from_pretrained(tiny_gpt2)
    torch.save(model.state_dict(), src / "pytorch_model.bin")
    out = convert(src, tmp_path / "bin.gguf", type="f32")
    ref = {t.name: np.asarray(t.data) for t in _reader(converted("f32")).tensors}
    got = {t.name: np.asarray(t.data) for t in _reader(out).tensors}
    assert ref.keys() == got.keys()
    for name in ref:
        np.testing.assert_array_equal(got[name], ref[name], err_msg=name)


def test_type_is_case_insensitive(tiny_gpt2: Path, tmp_path: Path) -> None:
    out = convert(tiny_gpt2, tmp_path / "x.gguf", type="Q8_0")
    gguf = require_module("gguf")
    assert _field(_reader(out), "general.file_type") == gguf.LlamaFileType.MOSTLY_Q8_0
    assert _tensor_types(out)["blk.0.ffn_up.weight"] == "Q8_0"


def test_progress_shows_a_bar(tiny_gpt2: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    convert(tiny_gpt2, tmp_path / "p.gguf", type="f16", progress=True)
    err = capsys.readouterr().err
    assert "Writing F16 GGUF" in err and "29/29" in err


# --------------------------------------------------------------------------------------------
# numerical agreement with transformers
# --------------------------------------------------------------------------------------------


def test_tokenization_matches_transformers(
    tiny_gpt2: Path, converted: Callable[[str], Path], llama: Callable[..., Any]
) -> None:
    transformers = require_module("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(tiny_gpt2)
    llm = llama(converted("f16"))
    texts = [*PROBES, "Café  naïve\n\ttabs", "x=1;  y = 22 ...!?", " leading space", "ünïcödé 🚀"]
    for text in texts:
        assert llm.tokenize(text.encode(), add_bos=False, special=False) == tok.encode(text), text
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    assert llm.tokenize(b"<|endoftext|>", add_bos=False, special=True) == [eot]
    assert llm.token_eos() == eot


def test_f32_matches_transformers(tiny_gpt2: Path, converted: Callable[[str], Path], llama: Callable[..., Any]) -> None:
    """F32 differs from transformers only by llama.cpp's F16 KV cache and GELU table (~5e-3)."""
    pairs = _logit_pairs(tiny_gpt2, converted("f32"), llama)
    assert max(float(np.abs(hf - gg).max()) for hf, gg in pairs) < 1e-2
    agree, compared = _clear_top1_agreement(pairs, margin=0.05)  # 10x the numeric noise
    assert compared >= 30 and agree == compared


def test_f16_is_close(tiny_gpt2: Path, converted: Callable[[str], Path], llama: Callable[..., Any]) -> None:
    """F16 weights add rounding of ~5e-4 relative per weight: logits move ~1e-2."""
    pairs = _logit_pairs(tiny_gpt2, converted("f16"), llama)
    assert max(float(np.abs(hf - gg).max()) for hf, gg in pairs) < 5e-2
    agree, compared = _clear_top1_agreement(pairs, margin=0.1)
    assert compared >= 30 and agree == compared


@pytest.mark.parametrize(
    ("kind", "min_top1", "max_kl"),
    [
        # Q8_0: 8-bit blocks of 32, ~0.4% relative error per weight: KL ~1e-3 measured.
        ("q8_0", 0.85, 1e-2),
        # Q4_K_M (with Q5_0/Q8_0 fallbacks at width 64): ~4-5 bits per weight on random weights with
        # a wide init, the worst case for 4-bit grids: KL ~0.04, top-1 ~77% measured.
        ("q4_k_m", 0.6, 0.15),
    ],
)
def test_quantized_fidelity(
    kind: str, min_top1: float, max_kl: float, report_for: Callable[[str], VerifyReport]
) -> None:
    report = report_for(kind)
    assert report.n_tokens >= 100
    assert report.top1_agreement >= min_top1, str(report)
    assert report.mean_kl <= max_kl, str(report)


def test_verify_orders_types_by_precision(report_for: Callable[[str], VerifyReport]) -> None:
    kinds = ("f32", "f16", "q8_0", "q4_k_m")
    kls = [report_for(k).mean_kl for k in kinds]
    assert kls == sorted(kls), {k: str(report_for(k)) for k in kinds}
    f32 = report_for("f32")
    assert f32.max_abs_logit_diff < 1e-2 and f32.max_abs_logprob_diff < 1e-2 and f32.mean_kl < 1e-5


def test_verify_report_is_frozen_and_readable() -> None:
    report = VerifyReport(
        n_tokens=10, max_abs_logprob_diff=0.5, max_abs_logit_diff=0.25, top1_agreement=0.9, mean_kl=0.01
    )
    text = str(report)
    assert "10 tokens" in text and "90.0%" in text and "KL" in text
    with pytest.raises(AttributeError):
        report.n_tokens = 3  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# errors leave nothing behind
# --------------------------------------------------------------------------------------------


def _copy_model(tiny_gpt2: Path, dest: Path) -> Path:
    shutil.copytree(tiny_gpt2, dest)
    return dest


def test_non_gpt2_is_refused(tiny_gpt2: Path, tmp_path: Path) -> None:
    src = _copy_model(tiny_gpt2, tmp_path / "llama-model")
    config = json.loads((src / "config.json").read_text())
    config["model_type"] = "llama"
    (src / "config.json").write_text(json.dumps(config))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(
        ModelLoadError, match="cannot convert model_type 'llama': nextword's converter supports gemma3_text, gpt2"
    ):
        convert(src, out_dir / "m.gguf")
    assert list(out_dir.iterdir()) == []


def test_unsupported_gpt2_option_is_refused(tiny_gpt2: Path, tmp_path: Path) -> None:
    src = _copy_model(tiny_gpt2, tmp_path / "m")
    config = json.loads((src / "config.json").read_text())
    config["scale_attn_by_inverse_layer_idx"] = True
    (src / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="scale_attn_by_inverse_layer_idx"):
        convert(src, tmp_path / "m.gguf")
    assert not (tmp_path / "m.gguf").exists() and _leftovers(tmp_path) == []


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="model folder not found"):
        convert(tmp_path / "nope", tmp_path / "m.gguf")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("remove", "message"),
    [
        ("model.safetensors", "has no weights"),
        ("config.json", "has no config.json"),
        ("tokenizer.json", "has no tokenizer"),
    ],
)
def test_missing_files(remove: str, message: str, tiny_gpt2: Path, tmp_path: Path) -> None:
    src = _copy_model(tiny_gpt2, tmp_path / "m")
    (src / remove).unlink()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(ModelLoadError, match=message):
        convert(src, out_dir / "m.gguf", type="q4_k_m")
    assert list(out_dir.iterdir()) == []


def test_unknown_type_lists_the_valid_ones(tiny_gpt2: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig) as info:
        convert(tiny_gpt2, tmp_path / "m.gguf", type="q3_k_s")
    assert "'q3_k_s'" in str(info.value)
    assert all(t in str(info.value) for t in GGUF_TYPES)
    assert list(tmp_path.iterdir()) == []


def test_missing_output_folder(tiny_gpt2: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig, match="output folder does not exist"):
        convert(tiny_gpt2, tmp_path / "no" / "m.gguf")


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_interrupted_conversion_leaves_nothing(
    error: type[BaseException], tiny_gpt2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An interruption half-way through the tensors removes the temp file and keeps an older output."""
    out = tmp_path / "m.gguf"
    out.write_bytes(b"previous good file")
    real_load = checkpoint_mod.SafetensorsReader.load
    calls = {"n": 0}

    def flaky_load(self: Any, key: str) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 10:
            assert _leftovers(tmp_path), "the conversion should be writing a temp file by now"
            raise error("interrupted")
        return real_load(self, key)

    monkeypatch.setattr(checkpoint_mod.SafetensorsReader, "load", flaky_load)
    with pytest.raises(error):
        convert(tiny_gpt2, out, type="q8_0")
    assert out.read_bytes() == b"previous good file"
    assert _leftovers(tmp_path) == []


def test_failed_llama_quantize_leaves_nothing(tiny_gpt2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both the F32 intermediate and the partly written quantized file are removed.

    llama.cpp's quantizer runs in a child process; this child checks it was handed a written F32
    file, writes half an output file and fails as the quantizer would."""
    require_module("llama_cpp")
    from nextword_llamacpp.convert import quantize

    failing_child = (
        "import pathlib, sys\n"
        "assert pathlib.Path(sys.argv[1]).stat().st_size > 0\n"
        "pathlib.Path(sys.argv[2]).write_bytes(b'half a file')\n"
        "print('status 1')\n"
        "sys.exit(1)\n"
    )
    monkeypatch.setattr(quantize, "_CHILD", failing_child)
    with pytest.raises(ModelLoadError, match="could not quantize"):
        convert(tiny_gpt2, tmp_path / "m.gguf", type="q6_k")
    assert list(tmp_path.iterdir()) == []


def test_k_quant_without_llama_cpp_is_a_clear_error(
    tiny_gpt2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes ``import llama_cpp`` fail
    with pytest.raises(ModelLoadError, match="llama-cpp-python is needed to quantize to q4_k_m"):
        convert(tiny_gpt2, tmp_path / "m.gguf", type="q4_k_m")
    assert list(tmp_path.iterdir()) == []


def test_verify_rejects_bad_probes(tiny_gpt2: Path, converted: Callable[[str], Path]) -> None:
    require_module("llama_cpp")
    with pytest.raises(ContextLengthExceeded) as info:
        verify(tiny_gpt2, converted("f16"), probes=["cats and dogs " * 40])
    assert info.value.limit == 64
    with pytest.raises(InvalidInput):
        verify(tiny_gpt2, converted("f16"), probes=[""])


def test_vocab_json_and_merges_txt_tokenizer(tiny_gpt2: Path, converted: Callable[[str], Path], tmp_path: Path) -> None:
    """A slow-tokenizer folder (vocab.json + merges.txt, no tokenizer.json) gives the same vocabulary."""
    tokenizers = require_module("tokenizers")
    src = _copy_model(tiny_gpt2, tmp_path / "slow")
    tokenizers.Tokenizer.from_file(str(src / "tokenizer.json")).model.save(str(src))
    (src / "tokenizer.json").unlink()
    assert (src / "vocab.json").is_file() and (src / "merges.txt").is_file()
    out = convert(src, tmp_path / "slow.gguf", type="f16")
    ref, got = _reader(converted("f16")), _reader(out)
    for key in (
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.token_type",
        "tokenizer.ggml.merges",
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id",
    ):
        assert _field(got, key) == _field(ref, key), key
