"""Finding (or making) the GGUF file that a ``model`` string names: a ``.gguf`` path as is; a
Hugging Face GPT-2 folder (or hub id) converted once into a cache keyed by the folder's content."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import nextword_llamacpp.convert as convert_mod
from nextword import InvalidConfig, ModelLoadError
from nextword.backend import CACHE_DIR_ENV, cache_lock, from_hub, locate_model
from nextword.backend import cache_dir as backend_cache_dir
from nextword_llamacpp.gguf_check import GGUFInfo, inspect_gguf

__all__ = ["CACHE_DIR_ENV", "cached_gguf_path", "default_cache_dir", "hub_snapshot", "locate_gguf", "source_digest"]


# Files of a Hugging Face folder that the converter reads: they make up the cache key.
_SOURCE_FILES = frozenset(
    {
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.json",
        "merges.txt",
        "special_tokens_map.json",
        "added_tokens.json",
    }
)
_HUB_PATTERNS = [*sorted(_SOURCE_FILES), "*.safetensors", "model.safetensors.index.json"]
# Bump when the cache layout or key changes.
_CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    """Where converted GGUF files are kept: ``$NEXTWORD_CACHE_DIR/gguf`` if the variable is set,
    else the user cache folder ``nextword/gguf``."""
    return backend_cache_dir("gguf")


def _is_source_file(name: str) -> bool:
    return (
        name in _SOURCE_FILES
        or name.endswith((".safetensors", ".index.json"))
        or (name.startswith("pytorch_model") and name.endswith(".bin"))
    )


def source_digest(folder: Path) -> str:
    """SHA-256 over the bytes (and names) of the files of ``folder`` that the converter reads:
    config, weights and tokenizer. Any changed byte changes it."""
    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        if p.is_file() and _is_source_file(p.name):
            with p.open("rb") as fh:
                digest = hashlib.file_digest(fh, "sha256").digest()
            h.update(p.name.encode() + b"\0" + digest)
    return h.hexdigest()


def _converter_digest() -> str:
    """SHA-256 of the converter's own source (every module of its package), so a changed
    converter never reuses old files."""
    h = hashlib.sha256()
    try:
        root = Path(convert_mod.__file__ or "").parent
        for path in sorted(root.rglob("*.py")):
            h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    except (OSError, TypeError, ValueError):
        return "unknown"
    return h.hexdigest()


def cached_gguf_path(folder: Path, quant: str, cache_dir: Path, name: str | None = None) -> Path:
    """The cache file for ``folder`` converted to ``quant``: its name holds a key made of the
    folder's content digest, the type, and the converter's digest."""
    key_src = f"nextword-gguf-v{_CACHE_FORMAT}\0{quant}\0{_converter_digest()}\0{source_digest(folder)}"
    key = hashlib.sha256(key_src.encode()).hexdigest()[:20]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name or folder.name).strip("._") or "model"
    return cache_dir / f"{stem}-{key}.{quant.upper()}.gguf"


def _convert_cached(folder: Path, quant: str, cache_dir: Path, name: str | None = None) -> GGUFInfo:
    """``folder`` converted to ``quant`` in ``cache_dir``: reused when a valid file with the same
    key is there, converted (once) otherwise."""
    out = cached_gguf_path(folder, quant, cache_dir, name)
    kept = _read_kept(out)
    if kept is not None:
        return kept
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelLoadError(f"cannot create the GGUF cache folder {str(cache_dir)!r}: {exc}") from exc
    # Two loads of one folder at once (threads, processes) convert it once: the second waits.
    with cache_lock(out.with_name(f".{out.name}.lock")):
        kept = _read_kept(out)
        if kept is not None:
            return kept
        out.unlink(missing_ok=True)  # a damaged cache entry: made again
        return inspect_gguf(convert_mod.convert(folder, out, type=quant))


def _read_kept(out: Path) -> GGUFInfo | None:
    """The cached file's info, or None where it is missing or damaged."""
    if not out.is_file():
        return None
    try:
        return inspect_gguf(out)
    except ModelLoadError:
        return None


#: What :func:`hub_snapshot` suggests instead of a hub id, by default (loading a model).
_LOAD_HINT = (
    "pass a local .gguf file or a Hugging Face GPT-2 folder (saved with save_pretrained()) as the model, "
    "e.g. `--model ./gpt2.Q8_0.gguf`"
)


def hub_snapshot(model_id: str, *, hint: str = _LOAD_HINT) -> Path:
    """The local folder of hub model ``model_id`` (config, tokenizer, safetensors weights),
    from the local Hugging Face cache or downloaded. ``hint`` ends the error messages: what to
    pass instead when the hub cannot serve."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ModelLoadError(
            f"{model_id!r} is not a file or folder here, and fetching it from the Hugging Face Hub needs "
            f"huggingface_hub (pip install huggingface_hub); or {hint}"
        ) from None

    def download(local_files_only: bool) -> Path:
        return Path(snapshot_download(model_id, allow_patterns=_HUB_PATTERNS, local_files_only=local_files_only))

    def remote() -> Path:
        try:
            return download(False)
        except Exception as exc:  # huggingface_hub raises many types
            raise ModelLoadError(f"could not download {model_id!r} from the Hugging Face Hub: {exc}") from exc

    return from_hub(model_id, lambda: download(True), remote, hint=hint)


def locate_gguf(model: str, *, quant: str = "q8_0", cache_dir: str | os.PathLike[str] | None = None) -> GGUFInfo:
    """The GGUF file that ``model`` names, checked with :func:`inspect_gguf` (its result).

    ``model`` is a GGUF file; or a Hugging Face GPT-2 folder (``config.json`` + weights +
    tokenizer), converted once to ``quant`` into ``cache_dir`` (default :func:`default_cache_dir`)
    and reused while the folder's content and the converter stay the same; or a Hugging Face Hub
    id, fetched (when the hub is reachable) and converted the same way.

    Raises:
        ModelLoadError: nothing usable is found, the hub is unreachable, conversion fails, or the
            file is not a sound GGUF file.
        InvalidConfig: ``quant`` is not a type the converter writes.
    """
    if quant not in convert_mod.GGUF_TYPES:
        allowed = ", ".join(convert_mod.GGUF_TYPES)
        raise InvalidConfig(f"llamacpp option 'quant' must be one of {allowed}, got {quant!r}")
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    where = locate_model(model)
    if where.kind == "file" and where.path is not None:
        return inspect_gguf(Path(model).expanduser())
    if where.kind == "folder" and where.path is not None:
        if not (where.path / "config.json").is_file():
            ggufs = sorted(p.name for p in where.path.glob("*.gguf"))
            hint = f"; it holds {', '.join(ggufs[:3])}: pass one of those files" if ggufs else ""
            raise ModelLoadError(f"the folder {model!r} is not a Hugging Face model folder (no config.json){hint}")
        return _convert_cached(where.path, quant, cache)
    return _convert_cached(hub_snapshot(model), quant, cache, name=model.replace("/", "--"))
