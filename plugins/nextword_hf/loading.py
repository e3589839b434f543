"""Finding and loading a Hugging Face model: hub id, local folder, or ``.gguf`` file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nextword.errors import InvalidConfig, ModelLoadError
from nextword.sources import hub_reachable, looks_like_path


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: ``kind`` is "hub", "folder" or "gguf"."""

    kind: str
    location: str
    gguf_file: str | None = None


def locate(model: str) -> ModelSource:
    """Classify ``model``; raise :class:`ModelLoadError` for a path that does not exist."""
    path = Path(model).expanduser()
    if path.is_file():
        if path.suffix != ".gguf":
            raise ModelLoadError(
                f"{model!r} is a file but not a .gguf file; the hf backend loads a model folder "
                "(config.json + weights), a .gguf file, or a Hugging Face Hub id"
            )
        return ModelSource("gguf", str(path.resolve().parent), path.name)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"the folder {model!r} has no config.json; save a model there with "
                "model.save_pretrained() and tokenizer.save_pretrained(), or point at a .gguf file"
            )
        return ModelSource("folder", str(path.resolve()))
    if looks_like_path(model):
        raise ModelLoadError(f"no such model file or folder: {model!r}")
    return ModelSource("hub", model)


def load_pretrained(source: ModelSource, *, dtype: Any, device: str) -> tuple[Any, Any]:
    """Load (tokenizer, model) from ``source``; every failure becomes a :class:`ModelLoadError`."""
    kwargs: dict[str, Any] = {}
    if source.gguf_file:
        kwargs["gguf_file"] = source.gguf_file
    if source.kind == "hub":
        try:
            return _from_pretrained(source, kwargs, dtype, device, local_files_only=True)
        except OSError:
            pass  # not in the local cache: download it
        if not hub_reachable():
            raise ModelLoadError(
                f"cannot download {source.location!r}: the Hugging Face Hub is unreachable (offline, or "
                "HF_HUB_OFFLINE is set) and the model is not in the local cache. Point `model` at a local "
                "folder saved with save_pretrained() or at a .gguf file, e.g. `--model ./my-gpt2`, "
                "or set NEXTWORD_MODEL"
            )
    try:
        return _from_pretrained(source, kwargs, dtype, device, local_files_only=source.kind != "hub")
    except ModelLoadError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, ImportError) as exc:
        raise ModelLoadError(f"could not load {source.location!r}: {type(exc).__name__}: {exc}") from exc


def _from_pretrained(
    source: ModelSource, kwargs: dict[str, Any], dtype: Any, device: str, *, local_files_only: bool
) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.location, local_files_only=local_files_only, **kwargs)
    model: Any = AutoModelForCausalLM.from_pretrained(
        source.location, local_files_only=local_files_only, dtype=dtype, **kwargs
    )
    if not getattr(model.config, "is_decoder", True) and getattr(model.config, "is_encoder_decoder", False):
        raise InvalidConfig(f"{source.location!r} is not a causal language model")
    return tokenizer, model.to(device).eval()
