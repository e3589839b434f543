"""Finding and loading a Hugging Face model: hub id, local folder, or ``.gguf`` file."""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nextword.backend import cache_lock, from_hub, locate_model, read_gguf_header
from nextword.errors import InvalidConfig, ModelLoadError
from nextword_hf.checkpoint import check_implied_size, check_load_report
from nextword_hf.gguf_read import one_parse


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: ``kind`` is "hub", "folder" or "gguf"."""

    kind: str
    location: str
    gguf_file: str | None = None

    @property
    def shown(self) -> str:
        """What error messages name: the file for a GGUF, else the folder or hub id."""
        return str(Path(self.location) / self.gguf_file) if self.gguf_file else self.location


def locate(model: str) -> ModelSource:
    """Classify ``model`` (through :func:`nextword._contract.model_location.locate_model`); raise
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


def load_pretrained(source: ModelSource, *, dtype: Any, device: str, gguf_cache: Path | None = None) -> tuple[Any, Any]:
    """Load (tokenizer, model) from ``source``; every failure becomes a :class:`ModelLoadError`.
    A hub id is taken from the local cache first, and downloaded only when the Hub answers.

    ``gguf_cache``: for a ``.gguf`` source loaded in float32, the folder where the converted model
    is kept (:mod:`nextword_hf.gguf_cache`): read from there when this file was converted before,
    else converted and saved there. None: always converted."""
    import torch

    kwargs: dict[str, Any] = {}
    if source.gguf_file:
        kwargs["gguf_file"] = source.gguf_file
    kept = gguf_cache if source.gguf_file and dtype == torch.float32 else None

    def load(local_files_only: bool) -> tuple[Any, Any]:
        try:
            if kept is not None:
                return _load_gguf_cached(source, kwargs, device, kept)
            return _from_pretrained(source, kwargs, dtype, device, local_files_only=local_files_only)
        except ModelLoadError:
            raise
        except (OSError, ValueError, KeyError, RuntimeError, ImportError) as exc:
            raise ModelLoadError(f"could not load {source.shown!r}: {type(exc).__name__}: {exc}") from exc

    if source.kind != "hub":
        return load(local_files_only=True)
    return from_hub(source.location, lambda: load(True), lambda: load(False), hint=_OFFLINE_HINT)


def _load_gguf_cached(source: ModelSource, kwargs: dict[str, Any], device: str, root: Path) -> tuple[Any, Any]:
    """The float32 model of a ``.gguf`` source from its folder under ``root``, converted and kept
    there when the folder is missing or cannot be read (see :mod:`nextword_hf.gguf_cache`)."""
    import torch

    from nextword_hf.gguf_cache import cached_folder, save_converted

    folder = cached_folder(Path(source.location) / str(source.gguf_file), root)
    kept = _read_kept(folder, device)
    if kept is not None:
        return kept
    # Two loads of one file at once (threads, processes) convert it once: the second waits and
    # then reads what the first kept.
    with cache_lock(folder.with_name(f".{folder.name}.lock")):
        kept = _read_kept(folder, device)
        if kept is not None:
            return kept
        shutil.rmtree(folder, ignore_errors=True)  # damaged, if there: converted again
        tokenizer, model = _from_pretrained(source, kwargs, torch.float32, device, local_files_only=True)
        save_converted(tokenizer, model, folder)
        return tokenizer, model


def _read_kept(folder: Path, device: str) -> tuple[Any, Any] | None:
    """(tokenizer, model) from a kept conversion, or None where ``folder`` is missing or unreadable."""
    import torch

    if not (folder / "config.json").is_file():
        return None
    try:
        return _from_pretrained(ModelSource("folder", str(folder)), {}, torch.float32, device, local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError, ModelLoadError):
        return None


def _from_pretrained(
    source: ModelSource, kwargs: dict[str, Any], dtype: Any, device: str, *, local_files_only: bool
) -> tuple[Any, Any]:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    model_kwargs = dict(kwargs)
    if source.kind == "folder":
        config = AutoConfig.from_pretrained(source.location, local_files_only=True)
        check_implied_size(Path(source.location), config)  # before anything is allocated
        model_kwargs["config"] = config
    elif source.gguf_file:
        model_kwargs.update(_gguf_config_overrides(Path(source.location) / source.gguf_file))
    # A .gguf file is parsed once for the config, tokenizer and weights (nextword_hf.gguf_read).
    with _quiet_transformers(), one_parse() if source.gguf_file else contextlib.nullcontext():
        tokenizer = AutoTokenizer.from_pretrained(source.location, local_files_only=local_files_only, **kwargs)
        loaded: Any = AutoModelForCausalLM.from_pretrained(
            source.location, local_files_only=local_files_only, dtype=dtype, output_loading_info=True, **model_kwargs
        )
    model, report = loaded
    check_load_report(report, source.shown)
    if not getattr(model.config, "is_decoder", True) and getattr(model.config, "is_encoder_decoder", False):
        raise InvalidConfig(f"{source.shown!r} is not a causal language model")
    return tokenizer, model.to(device).eval()


_QUIET = threading.Lock()
_quiet_state: list[Any] = []  # [loads in progress, saved verbosity, saved progress-bar flag]


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers' progress bars and load report off while loading: nextword reports problems
    itself (one error line in the CLI). Loads may overlap; the last one to finish restores the
    settings found by the first."""
    from transformers.utils import logging as hf_logging

    with _QUIET:
        if not _quiet_state:
            _quiet_state.extend([0, hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()])
            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()
        _quiet_state[0] += 1
    try:
        yield
    finally:
        with _QUIET:
            _quiet_state[0] -= 1
            if _quiet_state[0] == 0:
                _, verbosity, bars = _quiet_state
                _quiet_state.clear()
                hf_logging.set_verbosity(verbosity)
                if bars:
                    hf_logging.enable_progress_bar()


def _gguf_config_overrides(path: Path) -> dict[str, Any]:
    """Config values transformers' GGUF reader gets wrong: for GPT-2 it takes the position table
    size from a key its config does not use, so a table of other than 1024 rows fails to load;
    the size is read here from the table's record (the header only: gguf-py's reader would
    spend about 25 s on a 262k-token vocabulary)."""
    header = read_gguf_header(path)
    table = header.tensor("position_embd.weight")
    if header.metadata.get("general.architecture") == "gpt2" and table is not None and len(table.shape) == 2:
        return {"n_positions": int(table.shape[1])}
    return {}
