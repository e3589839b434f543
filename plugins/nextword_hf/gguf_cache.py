"""The float32 model transformers makes of a ``.gguf`` file, kept on disk for the next load.

transformers reads a GGUF file three times per load (config, tokenizer, weights) with gguf-py's
reader, builds a fast tokenizer from the vocabulary and dequantizes every tensor: about 40 s for
Gemma 3 270M on a 2-core machine, for each load. The result is an ordinary float32 model and
tokenizer; saved once into nextword's cache (config, tokenizer, safetensors), the next load of the same
file reads that folder instead (seconds), with the same weights, bit for bit, and the same
tokenizer.

The folder's name holds a key made of the file's SHA-256, transformers' version and this
module's format, so a changed file or another transformers converts again. A folder is written
under a temporary name and renamed when complete: a load never reads a half-written folder. Two
loads of the same file at once (threads or processes) convert it once: the second waits on a lock
file beside the folder and then reads the folder (where no lock can be taken, both convert, the
second rename loses and its copy is deleted). A cache that cannot be written is skipped with a
warning: the model loaded from the file is returned either way.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from nextword.backend import cache_dir
from nextword.errors import InvalidConfig

__all__ = ["CACHE_NAME", "cached_folder", "default_cache_dir", "resolve", "save_converted"]

#: The folder under nextword's cache root (``$NEXTWORD_CACHE_DIR/hf-gguf``).
CACHE_NAME = "hf-gguf"

# Bump when what is saved or how the key is made changes.
_FORMAT = 1


def default_cache_dir() -> Path:
    """``$NEXTWORD_CACHE_DIR/hf-gguf``, else the user cache folder ``nextword/hf-gguf``."""
    return cache_dir(CACHE_NAME)


def resolve(option: str) -> Path | None:
    """The folder the hf option ``gguf_cache`` names: ``"default"`` :func:`default_cache_dir`,
    ``"off"`` None (no cache), anything else a folder path."""
    if not isinstance(option, str) or not option.strip():
        raise InvalidConfig(f"hf option 'gguf_cache' must be 'default', 'off' or a folder, got {option!r}")
    if option == "off":
        return None
    return default_cache_dir() if option == "default" else Path(option).expanduser()


def cached_folder(gguf: Path, root: Path) -> Path:
    """The folder under ``root`` that holds (or will hold) the conversion of the file ``gguf``."""
    import transformers

    with open(gguf, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    key = hashlib.sha256(f"nextword-hf-gguf-v{_FORMAT}\0{transformers.__version__}\0{digest}".encode()).hexdigest()
    return root / f"{gguf.stem}-{key[:20]}"


def save_converted(tokenizer: Any, model: Any, folder: Path) -> None:
    """Save ``tokenizer`` and ``model`` (float32, as loaded from the file) into ``folder``, all or
    nothing; a failure (a full disk, a read-only folder) is a warning, not an error."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    except OSError as exc:
        warnings.warn(f"nextword could not keep the converted model in {folder.parent}: {exc}", stacklevel=3)
        return
    try:
        _save_model(model, tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, folder)
    except OSError as exc:
        if not (folder / "config.json").is_file():  # not another process's folder that won the rename
            warnings.warn(f"nextword could not keep the converted model in {folder}: {exc}", stacklevel=3)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _save_model(model: Any, folder: Path) -> None:
    """What ``save_pretrained`` writes for a float32 model (it refuses a model loaded from a GGUF
    file, which transformers marks as quantized although its weights are dequantized): the config
    without that mark, the generation config, and the weights as safetensors (a tensor shared by
    two names, tied embeddings, once)."""
    from safetensors.torch import save_model

    config = model.config.to_dict()
    config.pop("quantization_config", None)
    model.config.__class__.from_dict(config).save_pretrained(folder)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(folder)
    save_model(model, str(folder / "model.safetensors"), metadata={"format": "pt"})
