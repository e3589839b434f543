"""What an architecture module reads from a checkpoint and the GGUF writer writes: the model's
hyper-parameters, its vocabulary and the plan of its tensors. Engine-free data only."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nextword.errors import ModelLoadError
from nextword_llamacpp.convert.checkpoint import TensorReader

__all__ = ["SourceModel", "TensorPlan", "Vocab", "plan_tensors"]


@dataclass(frozen=True)
class Vocab:
    """A tokenizer laid out for GGUF.

    ``model`` and ``pre`` are llama.cpp's ``tokenizer.ggml.model`` and ``tokenizer.ggml.pre``
    (``"gpt2"`` and ``"gpt-2"`` for GPT-2's byte-level BPE); ``merges`` are BPE merges as
    ``"a b"`` (empty for a tokenizer without merges) and ``scores`` the per-token scores of a
    SentencePiece-style vocabulary (None when the format has none). ``unk_id``, ``add_eos`` and
    ``add_space_prefix`` are written only when set.
    """

    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    bos_id: int | None
    eos_id: int | None
    pad_id: int | None
    add_bos: bool
    model: str = "gpt2"
    pre: str = "gpt-2"
    scores: list[float] | None = None
    unk_id: int | None = None
    add_eos: bool | None = None
    add_space_prefix: bool | None = None


@dataclass(frozen=True)
class TensorPlan:
    """One output tensor: where it comes from and how it is written."""

    name: str
    source: str
    reader: TensorReader
    shape: tuple[int, ...]  # numpy shape as written (rows last-major, after any transpose)
    transpose: bool
    offset: float = 0.0  # added to every value when written (Gemma stores its norm weights as 1 + w)


@dataclass(frozen=True)
class SourceModel:
    """Everything read from the source folder that the GGUF writer needs.

    ``arch`` is the GGUF ``general.architecture``; ``hparams`` maps the names of
    ``gguf.GGUFWriter.add_<name>`` methods (``context_length``, ``block_count``, ...) to the values
    the architecture writes, in order; ``tensors`` lists the tensors in file order.
    """

    name: str
    arch: str
    vocab: Vocab
    tensors: list[TensorPlan]
    hparams: dict[str, Any] = field(default_factory=dict)


def plan_tensors(
    readers: dict[str, TensorReader], wanted: list[tuple[str, str, tuple[int, ...], bool]], key_of: dict[str, str]
) -> list[TensorPlan]:
    """The plan of the ``wanted`` tensors, checked against the checkpoint.

    ``wanted`` lists ``(gguf name, source name, source shape, transpose)`` in file order;
    ``key_of`` maps a source name to the key it has in the checkpoint (prefixes differ between
    checkpoints), ``readers`` each key to the reader of its file. Raises ModelLoadError naming
    the tensors that are missing, or the first whose shape differs from the one expected.
    """
    missing = [src for _, src, _, _ in wanted if src not in key_of]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ModelLoadError(f"the checkpoint lacks tensors the config calls for: {shown}")
    plans: list[TensorPlan] = []
    for gguf_name, src_name, src_shape, transpose in wanted:
        key = key_of[src_name]
        reader = readers[key]
        shape = reader.shape(key)
        if shape != src_shape:
            raise ModelLoadError(f"tensor {key} has shape {shape}, but the config implies {src_shape}")
        out_shape = tuple(reversed(shape)) if transpose else shape
        plans.append(TensorPlan(gguf_name, key, reader, out_shape, transpose))
    return plans
