"""Writing a :class:`~nextword_llamacpp.convert.source_model.SourceModel` as a GGUF file with gguf-py,
in a type gguf-py quantizes itself (f32, f16, q8_0, q4_0). Tensors are streamed one at a time."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from nextword.errors import ModelLoadError
from nextword_llamacpp.convert.source_model import SourceModel, TensorPlan

__all__ = ["pick_qtype", "write_gguf"]


def write_gguf(model: SourceModel, path: Path, kind: str, *, progress: bool, desc: str) -> None:
    """Write ``model`` as a complete GGUF file of direct type ``kind`` to ``path``.

    Tensors are streamed: each is read, converted and written before the next is read, so memory
    holds one tensor at a time. ``progress`` shows a tqdm bar, labelled ``desc``, over the tensors.
    """
    gguf = _import_gguf()
    qtypes = [pick_qtype(gguf, plan, kind) for plan in model.tensors]
    writer = gguf.GGUFWriter(path, arch=model.arch)
    try:
        _add_metadata(gguf, writer, model, kind)
        for plan, qtype in zip(model.tensors, qtypes, strict=True):
            block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
            n_bytes = math.prod(plan.shape) // block_size * type_size
            if qtype in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
                dtype = np.dtype(np.float32 if qtype == gguf.GGMLQuantizationType.F32 else np.float16)
                writer.add_tensor_info(plan.name, plan.shape, dtype, n_bytes, raw_dtype=qtype)
            else:
                byte_shape = gguf.quant_shape_to_byte_shape(plan.shape, qtype)
                writer.add_tensor_info(plan.name, byte_shape, np.dtype(np.uint8), n_bytes, raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for plan, qtype in _iter_progress(
            zip(model.tensors, qtypes, strict=True), enabled=progress, total=len(qtypes), desc=desc
        ):
            data = plan.reader.load(plan.source)
            if plan.transpose:
                data = data.T
            if plan.offset:
                data = data.astype(np.float32) + np.float32(plan.offset)
            data = np.ascontiguousarray(data, dtype=np.float32)
            writer.write_tensor_data(gguf.quants.quantize(data, qtype))
    finally:
        writer.close()


def pick_qtype(gg: Any, plan: TensorPlan, kind: str) -> Any:
    """The GGML type (a ``gguf.GGMLQuantizationType``) tensor ``plan`` is stored in for output
    type ``kind`` (direct types only).

    Follows llama.cpp: 1-D tensors, norms and the position embedding stay F32; for q4_0 the output
    layer gets more bits (Q8_0; llama.cpp's own quantizer would pick Q6_K, which gguf-py cannot
    write); a tensor whose rows are not a multiple of the block size falls back to F16.
    """
    qt = gg.GGMLQuantizationType
    if (
        len(plan.shape) < 2
        or plan.name.endswith("_norm.weight")
        or plan.name == "position_embd.weight"
        or not plan.name.endswith(".weight")
        or kind == "f32"
    ):
        return qt.F32
    if kind == "f16":
        return qt.F16
    target = qt.Q8_0 if kind == "q8_0" or plan.name == "output.weight" else qt.Q4_0
    block_size = gg.GGML_QUANT_SIZES[target][0]
    return target if plan.shape[-1] % block_size == 0 else qt.F16


def _file_type(gguf: Any, kind: str) -> int:
    """The ``general.file_type`` (llama_ftype) value of output type ``kind``."""
    ft = gguf.LlamaFileType
    return int(
        {
            "f32": ft.ALL_F32,
            "f16": ft.MOSTLY_F16,
            "q8_0": ft.MOSTLY_Q8_0,
            "q4_0": ft.MOSTLY_Q4_0,
            "q4_k_m": ft.MOSTLY_Q4_K_M,
            "q5_k_m": ft.MOSTLY_Q5_K_M,
            "q6_k": ft.MOSTLY_Q6_K,
        }[kind]
    )


def _add_metadata(gguf: Any, writer: Any, model: SourceModel, kind: str) -> None:
    """Add the general, architecture and tokenizer key/values of ``model`` to ``writer``."""
    writer.add_name(model.name)
    writer.add_file_type(_file_type(gguf, kind))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for key, value in model.hparams.items():
        add = getattr(writer, f"add_{key}", None)
        if add is None:
            raise ModelLoadError(f"the installed gguf package cannot write {key!r}; upgrade gguf")
        add(value)

    vocab = model.vocab
    writer.add_tokenizer_model(vocab.model)
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.token_types)
    if vocab.scores is not None:
        writer.add_token_scores(vocab.scores)
    if vocab.merges:
        writer.add_token_merges(vocab.merges)
    if vocab.bos_id is not None:
        writer.add_bos_token_id(vocab.bos_id)
    if vocab.eos_id is not None:
        writer.add_eos_token_id(vocab.eos_id)
    if vocab.pad_id is not None:
        writer.add_pad_token_id(vocab.pad_id)
    if vocab.unk_id is not None:
        writer.add_unk_token_id(vocab.unk_id)
    writer.add_add_bos_token(vocab.add_bos)
    if vocab.add_eos is not None:
        writer.add_add_eos_token(vocab.add_eos)
    if vocab.add_space_prefix is not None:
        writer.add_add_space_prefix(vocab.add_space_prefix)


def _import_gguf() -> Any:
    """Import gguf-py or raise ModelLoadError saying how to install it."""
    try:
        import gguf
    except ImportError as exc:
        raise ModelLoadError("writing GGUF needs the gguf package; install nextword[llamacpp]") from exc
    return gguf


def _iter_progress(items: Iterable[Any], *, enabled: bool, total: int, desc: str) -> Iterator[Any]:
    """Yield ``items``, behind a tqdm bar over ``total`` tensors when ``enabled``."""
    if not enabled:
        yield from items
        return
    from tqdm.auto import tqdm

    with tqdm(items, total=total, desc=desc, unit="tensor") as bar:
        yield from bar
