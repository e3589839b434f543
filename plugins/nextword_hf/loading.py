"""Finding and loading a Hugging Face model: hub id, local folder, or ``.gguf`` file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nextword.errors import InvalidConfig, ModelLoadError
from nextword.model_location import from_hub, locate_model


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: ``kind`` is "hub", "folder" or "gguf"."""

    kind: str
    location: str
    gguf_file: str | None = None


def locate(model: str) -> ModelSource:
    """Classify ``model`` (through :func:`nextword.model_location.locate_model`); raise
    :class:`ModelLoadError` for a path that does not exist, a file that is not ``.gguf`` or a
    folder without ``config.json``."""
    where = locate_model(model)
    if where.kind == "hub" or where.path is None:
        return ModelSource("hub", model)
    if where.kind == "file":
        if where.path.suffix != ".gguf":
            raise ModelLoadError(
                f"{model!r} is a file but not a .gguf file; the hf backend loads a model folder "
                "(config.json + weights), a .gguf file, or a Hugging Face Hub id"
            )
        return ModelSource("gguf", str(where.path.parent), where.path.name)
    if not (where.path / "config.json").is_file():
        raise ModelLoadError(
            f"the folder {model!r} has no config.json; save a model there with "
            "model.save_pretrained() and tokenizer.save_pretrained(), or point at a .gguf file"
        )
    return ModelSource("folder", str(where.path))


_OFFLINE_HINT = (
    "point `model` at a local folder saved with save_pretrained() or at a .gguf file, e.g. "
    "`--model ./my-gpt2`, or set NEXTWORD_MODEL"
)


def load_pretrained(source: ModelSource, *, dtype: Any, device: str) -> tuple[Any, Any]:
    """Load (tokenizer, model) from ``source``; every failure becomes a :class:`ModelLoadError`.
    A hub id is taken from the local cache first, and downloaded only when the Hub answers."""
    kwargs: dict[str, Any] = {}
    if source.gguf_file:
        kwargs["gguf_file"] = source.gguf_file

    def load(local_files_only: bool) -> tuple[Any, Any]:
        try:
            return _from_pretrained(source, kwargs, dtype, device, local_files_only=local_files_only)
        except ModelLoadError:
            raise
        except (OSError, ValueError, KeyError, RuntimeError, ImportError) as exc:
            raise ModelLoadError(f"could not load {source.location!r}: {type(exc).__name__}: {exc}") from exc

    if source.kind != "hub":
        return load(local_files_only=True)
    return from_hub(source.location, lambda: load(True), lambda: load(False), hint=_OFFLINE_HINT)


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
