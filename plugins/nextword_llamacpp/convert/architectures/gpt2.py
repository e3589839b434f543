"""GPT-2 (Hugging Face ``model_type`` ``gpt2``) as llama.cpp's ``gpt2`` architecture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nextword.errors import ModelLoadError
from nextword_llamacpp.convert.bpe_vocab import read_byte_level_bpe
from nextword_llamacpp.convert.checkpoint import TensorReader, open_weights
from nextword_llamacpp.convert.source_model import SourceModel, TensorPlan, plan_tensors

__all__ = ["MODEL_TYPES", "read_model"]

#: The Hugging Face ``model_type`` values this module converts.
MODEL_TYPES = ("gpt2",)

# HF GPT-2 activations that llama.cpp's gpt2 graph (tanh-approximated GELU) reproduces.
_GELU_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast", "gelu")


def read_model(src: Path, config: dict[str, Any]) -> SourceModel:
    """Read and validate the GPT-2 folder ``src`` (its ``config.json`` already parsed as ``config``):
    hyper-parameters, weights (headers only) and tokenizer."""
    _check_options(config)
    try:
        n_embd = int(config["n_embd"])
        n_layer = int(config["n_layer"])
        n_head = int(config["n_head"])
        n_positions = int(config["n_positions"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"{src / 'config.json'} lacks a valid GPT-2 field: {exc}") from exc
    n_ff = int(config.get("n_inner") or 4 * n_embd)
    if n_head <= 0 or n_embd % n_head:
        raise ModelLoadError(f"n_embd={n_embd} is not divisible by n_head={n_head}")

    tensors = _plan(open_weights(src), n_layer, n_embd, n_ff, n_positions)
    n_vocab = tensors[0].shape[0]  # token_embd rows
    return SourceModel(
        name=src.resolve().name,
        arch="gpt2",
        vocab=read_byte_level_bpe(src, config, n_vocab),
        tensors=tensors,
        hparams={
            # The position table has n_positions rows; llama.cpp checks it against the context length.
            "context_length": n_positions,
            "embedding_length": n_embd,
            "feed_forward_length": n_ff,
            "block_count": n_layer,
            "head_count": n_head,
            "layer_norm_eps": float(config.get("layer_norm_epsilon", 1e-5)),
        },
    )


def _check_options(config: dict[str, Any]) -> None:
    """Reject GPT-2 variants whose arithmetic llama.cpp's gpt2 graph does not reproduce."""
    activation = config.get("activation_function", "gelu_new")
    if activation not in _GELU_ACTIVATIONS:
        raise ModelLoadError(
            f"cannot convert a GPT-2 with activation_function={activation!r}: llama.cpp's gpt2 "
            f"graph uses GELU ({', '.join(_GELU_ACTIVATIONS)})"
        )
    if config.get("scale_attn_by_inverse_layer_idx"):
        raise ModelLoadError(
            "cannot convert a GPT-2 with scale_attn_by_inverse_layer_idx=true: llama.cpp's gpt2 "
            "graph does not scale attention by layer"
        )
    if config.get("scale_attn_weights", True) is False:
        raise ModelLoadError(
            "cannot convert a GPT-2 with scale_attn_weights=false: llama.cpp's gpt2 graph always "
            "scales attention by 1/sqrt(head_dim)"
        )
    if config.get("add_cross_attention"):
        raise ModelLoadError("cannot convert a GPT-2 with cross-attention layers")


def _plan(readers: dict[str, TensorReader], n_layer: int, n_embd: int, n_ff: int, n_positions: int) -> list[TensorPlan]:
    """The GGUF tensors to write, mapped from HF names and checked against the config.

    HF GPT-2 stores its linear layers as ``Conv1D`` with weights shaped (in, out); llama.cpp wants
    (out, in) in numpy order, so those are transposed. The causal-mask buffers ``attn.bias`` and
    ``attn.masked_bias`` are not weights and are skipped. ``output.weight`` is always written, from
    ``lm_head.weight`` when the checkpoint has one and from the tied token embedding otherwise.
    """
    keys = {k.removeprefix("transformer."): k for k in readers}
    wte = keys.get("wte.weight")
    if wte is None:
        raise ModelLoadError("the checkpoint has no token embedding (wte.weight)")
    n_vocab = readers[wte].shape(wte)[0]

    # (gguf name, HF name, HF shape, transpose)
    wanted: list[tuple[str, str, tuple[int, ...], bool]] = [
        ("token_embd.weight", "wte.weight", (n_vocab, n_embd), False),
        ("position_embd.weight", "wpe.weight", (n_positions, n_embd), False),
    ]
    for i in range(n_layer):
        h, b = f"h.{i}.", f"blk.{i}."
        wanted += [
            (b + "attn_norm.weight", h + "ln_1.weight", (n_embd,), False),
            (b + "attn_norm.bias", h + "ln_1.bias", (n_embd,), False),
            (b + "attn_qkv.weight", h + "attn.c_attn.weight", (n_embd, 3 * n_embd), True),
            (b + "attn_qkv.bias", h + "attn.c_attn.bias", (3 * n_embd,), False),
            (b + "attn_output.weight", h + "attn.c_proj.weight", (n_embd, n_embd), True),
            (b + "attn_output.bias", h + "attn.c_proj.bias", (n_embd,), False),
            (b + "ffn_norm.weight", h + "ln_2.weight", (n_embd,), False),
            (b + "ffn_norm.bias", h + "ln_2.bias", (n_embd,), False),
            (b + "ffn_up.weight", h + "mlp.c_fc.weight", (n_embd, n_ff), True),
            (b + "ffn_up.bias", h + "mlp.c_fc.bias", (n_ff,), False),
            (b + "ffn_down.weight", h + "mlp.c_proj.weight", (n_ff, n_embd), True),
            (b + "ffn_down.bias", h + "mlp.c_proj.bias", (n_embd,), False),
        ]
    head = "lm_head.weight" if "lm_head.weight" in keys else "wte.weight"
    wanted += [
        ("output_norm.weight", "ln_f.weight", (n_embd,), False),
        ("output_norm.bias", "ln_f.bias", (n_embd,), False),
        ("output.weight", head, (n_vocab, n_embd), False),
    ]
    return plan_tensors(readers, wanted, keys)
