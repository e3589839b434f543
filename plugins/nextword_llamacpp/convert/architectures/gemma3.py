"""Gemma 3 text models (Hugging Face ``model_type`` ``gemma3_text``) as llama.cpp's ``gemma3``.

What differs from a plain Llama-style layout:

* Gemma's RMSNorm multiplies by ``1 + weight``; llama.cpp multiplies by the stored weight, so
  every norm weight (the four per block, the per-head q/k norms and the final one) is written
  with 1 added.
* Each block has four norms (before and after attention, before and after the MLP) and RMS norms
  on the queries and keys.
* The output layer is the token embedding (no ``output.weight`` unless the checkpoint has an
  untied ``lm_head``); llama.cpp scales the embeddings by sqrt(hidden size) itself.
* Attention alternates sliding-window layers and global ones. llama.cpp's gemma3 graph fixes the
  pattern (every sixth layer global), the local RoPE base (10,000) and the attention scale
  (1/sqrt(head_dim)); a checkpoint that differs is refused rather than converted wrongly.
* The tokenizer is SentencePiece-style (see
  :mod:`~nextword_llamacpp.convert.sentencepiece_vocab`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from nextword.errors import ModelLoadError
from nextword_llamacpp.convert.checkpoint import open_weights
from nextword_llamacpp.convert.sentencepiece_vocab import read_sentencepiece_bpe
from nextword_llamacpp.convert.source_model import SourceModel, plan_tensors

__all__ = ["MODEL_TYPES", "read_model"]

#: The Hugging Face ``model_type`` values this module converts.
MODEL_TYPES = ("gemma3_text",)

_SWA_PERIOD = 6  # llama.cpp: every 6th layer uses global attention
_LOCAL_ROPE_BASE = 10_000.0


def read_model(src: Path, config: dict[str, Any]) -> SourceModel:
    """Read and validate the Gemma 3 folder ``src`` (``config.json`` parsed as ``config``)."""
    try:
        n_embd = int(config["hidden_size"])
        n_layer = int(config["num_hidden_layers"])
        n_head = int(config["num_attention_heads"])
        n_head_kv = int(config.get("num_key_value_heads", n_head))
        head_dim = int(config.get("head_dim", n_embd // n_head))
        n_ff = int(config["intermediate_size"])
        n_ctx = int(config.get("max_position_embeddings", 131072))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"{src / 'config.json'} lacks a valid Gemma 3 field: {exc}") from exc
    global_base = _check_options(config, n_layer, head_dim)

    readers = open_weights(src)
    keys = {k.removeprefix("model.").removeprefix("language_model."): k for k in readers}
    embed = keys.get("embed_tokens.weight")
    if embed is None:
        raise ModelLoadError("the checkpoint has no token embedding (model.embed_tokens.weight)")
    n_vocab = readers[keys["embed_tokens.weight"]].shape(embed)[0]
    q_dim, kv_dim = n_head * head_dim, n_head_kv * head_dim
    wanted: list[tuple[str, str, tuple[int, ...], bool]] = [
        ("token_embd.weight", "embed_tokens.weight", (n_vocab, n_embd), False)
    ]
    for i in range(n_layer):
        h, b = f"layers.{i}.", f"blk.{i}."
        wanted += [
            (b + "attn_norm.weight", h + "input_layernorm.weight", (n_embd,), False),
            (b + "attn_q.weight", h + "self_attn.q_proj.weight", (q_dim, n_embd), False),
            (b + "attn_k.weight", h + "self_attn.k_proj.weight", (kv_dim, n_embd), False),
            (b + "attn_v.weight", h + "self_attn.v_proj.weight", (kv_dim, n_embd), False),
            (b + "attn_q_norm.weight", h + "self_attn.q_norm.weight", (head_dim,), False),
            (b + "attn_k_norm.weight", h + "self_attn.k_norm.weight", (head_dim,), False),
            (b + "attn_output.weight", h + "self_attn.o_proj.weight", (n_embd, q_dim), False),
            (b + "post_attention_norm.weight", h + "post_attention_layernorm.weight", (n_embd,), False),
            (b + "ffn_norm.weight", h + "pre_feedforward_layernorm.weight", (n_embd,), False),
            (b + "ffn_gate.weight", h + "mlp.gate_proj.weight", (n_ff, n_embd), False),
            (b + "ffn_up.weight", h + "mlp.up_proj.weight", (n_ff, n_embd), False),
            (b + "ffn_down.weight", h + "mlp.down_proj.weight", (n_embd, n_ff), False),
            (b + "post_ffw_norm.weight", h + "post_feedforward_layernorm.weight", (n_embd,), False),
        ]
    wanted.append(("output_norm.weight", "norm.weight", (n_embd,), False))
    if "lm_head.weight" in keys and not config.get("tie_word_embeddings", True):
        wanted.append(("output.weight", "lm_head.weight", (n_vocab, n_embd), False))
    plans = [
        dataclasses.replace(p, offset=1.0) if p.name.endswith("norm.weight") else p
        for p in plan_tensors(readers, wanted, keys)
    ]
    hparams: dict[str, Any] = {
        "context_length": n_ctx,
        "embedding_length": n_embd,
        "block_count": n_layer,
        "feed_forward_length": n_ff,
        "head_count": n_head,
        "head_count_kv": n_head_kv,
        "layer_norm_rms_eps": float(config.get("rms_norm_eps", 1e-6)),
        "key_length": head_dim,
        "value_length": head_dim,
        "rope_freq_base": global_base,
        "sliding_window": int(config.get("sliding_window") or 4096),
    }
    return SourceModel(
        name=src.resolve().name,
        arch="gemma3",
        vocab=read_sentencepiece_bpe(src, n_vocab, space_runs_user_defined=True),
        tensors=plans,
        hparams=hparams,
    )


def _check_options(config: dict[str, Any], n_layer: int, head_dim: int) -> float:
    """Refuse what llama.cpp's gemma3 graph would compute differently; return the global RoPE base."""
    activation = config.get("hidden_activation") or config.get("hidden_act") or "gelu_pytorch_tanh"
    if activation != "gelu_pytorch_tanh":
        raise ModelLoadError(
            f"cannot convert a Gemma 3 with hidden_activation={activation!r} (llama.cpp uses tanh GELU)"
        )
    for name in ("attn_logit_softcapping", "final_logit_softcapping"):
        if config.get(name) is not None:
            raise ModelLoadError(
                f"cannot convert a Gemma 3 with {name}={config[name]!r}: llama.cpp's gemma3 graph has none"
            )
    scalar = config.get("query_pre_attn_scalar", head_dim)
    if scalar != head_dim:
        raise ModelLoadError(
            f"cannot convert a Gemma 3 with query_pre_attn_scalar={scalar} != head_dim={head_dim}: llama.cpp "
            "scales attention by 1/sqrt(head_dim)"
        )
    layer_types = config.get("layer_types")
    if layer_types is not None:
        expected = ["full_attention" if (i + 1) % _SWA_PERIOD == 0 else "sliding_attention" for i in range(n_layer)]
        if list(layer_types) != expected:
            raise ModelLoadError(
                "cannot convert a Gemma 3 whose layer_types differ from llama.cpp's fixed pattern "
                f"(every {_SWA_PERIOD}th layer global)"
            )
    rope = config.get("rope_parameters") or {}
    full = rope.get("full_attention", rope) if isinstance(rope, dict) else {}
    local = rope.get("sliding_attention", {}) if isinstance(rope, dict) else {}
    global_base = float(full.get("rope_theta", config.get("rope_theta", 1_000_000.0)))
    local_base = float(local.get("rope_theta", config.get("rope_local_base_freq", _LOCAL_ROPE_BASE)))
    if local_base != _LOCAL_ROPE_BASE:
        raise ModelLoadError(f"cannot convert a Gemma 3 with local RoPE base {local_base}: llama.cpp fixes it at 10000")
    for part in (full, local, config.get("rope_scaling") or {}):
        kind = part.get("rope_type", "default") if isinstance(part, dict) else "default"
        if kind != "default":
            raise ModelLoadError(
                f"cannot convert a Gemma 3 with RoPE scaling {kind!r} (only unscaled RoPE is supported)"
            )
    return global_base
