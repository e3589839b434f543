"""The checkpoint an interrupted run leaves for ``--resume``: everything that decides the rest
of the run (weights being trained, the best ones so far, optimizer, schedule, random state)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nextword.errors import InvalidConfig

__all__ = ["load_checkpoint", "save_checkpoint"]

_FILE = "state.pt"


def save_checkpoint(folder: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``folder/state.pt`` atomically (a temp file moved into place)."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / _FILE
    tmp = folder / (_FILE + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(folder: Path, fingerprint: dict[str, Any]) -> dict[str, Any]:
    """The saved state; :class:`~nextword.InvalidConfig` when it is missing or was made by a run
    with another base model, data or hyper-parameters than ``fingerprint`` describes."""
    import torch

    path = folder / _FILE
    if not path.is_file():
        raise InvalidConfig(f"nothing to resume: {str(path)!r} does not exist")
    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a damaged file
        raise InvalidConfig(f"the checkpoint {str(path)!r} cannot be read: {exc}") from exc
    saved = state.get("fingerprint", {})
    for key, value in fingerprint.items():
        if saved.get(key) != value:
            raise InvalidConfig(
                f"the checkpoint in {str(folder)!r} was made with another {key} ({saved.get(key)!r}, now {value!r}); "
                "resume with the same data and options, or pass --overwrite to start over"
            )
    return state
