"""The conversion itself: a Hugging Face folder read by its architecture module, written as GGUF
(directly, or through an F32 intermediate that llama.cpp quantizes), atomically."""

from __future__ import annotations

import os
from pathlib import Path

from nextword.errors import InvalidConfig, ModelLoadError
from nextword_llamacpp.convert import architectures
from nextword_llamacpp.convert.atomic import atomic_output, scratch_file
from nextword_llamacpp.convert.checkpoint import read_json
from nextword_llamacpp.convert.gguf_types import LLAMA_QUANT_FTYPES, check_type
from nextword_llamacpp.convert.gguf_writer import write_gguf
from nextword_llamacpp.convert.quantize import import_llama_cpp, llama_quantize
from nextword_llamacpp.convert.source_model import SourceModel

__all__ = ["convert", "read_source"]


def convert(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    type: str = "f16",
    progress: bool = False,
) -> Path:
    """Convert the Hugging Face folder ``src`` into the GGUF file ``out`` of type ``type``.

    ``type`` is one of :data:`~nextword_llamacpp.convert.GGUF_TYPES` (case-insensitive). If
    ``out`` is an existing folder the file is written inside it as ``<src folder name>.<TYPE>.gguf``.
    The output appears only when it is complete: everything is written to a temporary file in the
    destination folder that replaces ``out`` at the very end, and every temporary file is removed
    on any failure, including ``KeyboardInterrupt``. An existing ``out`` is left untouched unless
    the conversion succeeds.

    Returns the path of the written file.

    Raises:
        InvalidConfig: ``type`` is not one of ``GGUF_TYPES``, or the output folder is missing.
        ModelLoadError: ``src`` is missing, lacks a config, weights or tokenizer, is of an
            architecture the converter does not know, has a shape or option llama.cpp's graph for
            it cannot run, or a K-quant was asked for and llama.cpp's quantizer is unavailable or fails.
    """
    kind = check_type(type)
    src_dir = Path(src)
    model = read_source(src_dir)
    out_path = _resolve_out(Path(out), src_dir, kind)
    llama_cpp = import_llama_cpp("quantize to " + kind) if kind in LLAMA_QUANT_FTYPES else None

    if out_path.is_dir():
        raise InvalidConfig(f"cannot write {str(out_path)!r}: a folder of that name exists")
    try:
        with atomic_output(out_path) as tmp_out:
            if llama_cpp is None:
                write_gguf(model, tmp_out, kind, progress=progress, desc=f"Writing {kind.upper()} GGUF")
            else:
                with scratch_file(out_path, ".f32") as tmp_f32:
                    write_gguf(model, tmp_f32, "f32", progress=progress, desc="Writing F32 intermediate")
                    llama_quantize(llama_cpp, tmp_f32, tmp_out, kind, progress=progress)
    except OSError as exc:
        raise ModelLoadError(f"could not write {str(out_path)!r}: {exc.strerror or exc}") from exc
    return out_path


def read_source(src: Path) -> SourceModel:
    """Read and validate the folder ``src`` through the architecture module of its ``model_type``."""
    if not src.exists():
        raise ModelLoadError(f"model folder not found: {src}")
    if not src.is_dir():
        raise ModelLoadError(f"not a folder: {src} (expected a Hugging Face model folder)")
    config_path = src / "config.json"
    if not config_path.is_file():
        raise ModelLoadError(f"{src} has no config.json; is it a Hugging Face model folder?")
    config = read_json(config_path)
    model_type = config.get("model_type")
    read_model = architectures.readers().get(model_type) if isinstance(model_type, str) else None
    if read_model is None:
        supported = ", ".join(architectures.supported_model_types())
        raise ModelLoadError(f"cannot convert model_type {model_type!r}: nextword's converter supports {supported}")
    return read_model(src, config)


def _resolve_out(out: Path, src: Path, kind: str) -> Path:
    """The file to write: ``out`` itself, or ``<src name>.<TYPE>.gguf`` inside ``out`` if a folder."""
    if out.is_dir():
        out = out / f"{src.resolve().name}.{kind.upper()}.gguf"
    if not out.parent.is_dir():
        raise InvalidConfig(f"output folder does not exist: {out.parent}")
    return out
