"""Checks that a model folder's weights are the ones its ``config.json`` describes.

transformers loads a checkpoint that lacks tensors, holds foreign ones or belongs to another
architecture: it initialises what is missing at random, prints a report and goes on (the model
then generates noise), and a config naming a large architecture beside small weights makes it
allocate that large model first. Here the size the config implies is compared with the
checkpoint's before anything is allocated, and the load report is turned into an error.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from nextword.errors import ModelLoadError

__all__ = ["SIZE_TOLERANCE", "check_implied_size", "check_load_report", "checkpoint_size", "implied_size"]

SIZE_TOLERANCE = 1.5
"""Largest ratio (either way) between the parameters a config implies and the checkpoint's."""

_SHOWN = 5  # tensor names listed in a message


def checkpoint_size(folder: Path) -> int | None:
    """Number of values stored in the folder's ``*.safetensors`` files, read from their headers
    (nothing is loaded); None when the folder has no safetensors file."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for file in files:
        try:
            with safe_open(str(file), framework="pt") as handle:
                for name in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                    total += math.prod(handle.get_slice(name).get_shape())
        except Exception as exc:  # safetensors raises its own error types for corrupt headers
            raise ModelLoadError(f"cannot read the weights file {str(file)!r}: {type(exc).__name__}: {exc}") from exc
    return total


def implied_size(config: Any) -> int:
    """Parameters of the causal LM that ``config`` describes, counted on the meta device (no memory
    is allocated); tied weights count once."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def check_implied_size(folder: Path, config: Any) -> None:
    """Raise :class:`ModelLoadError` when the model ``config`` describes is more than
    :data:`SIZE_TOLERANCE` times larger or smaller than the folder's safetensors weights."""
    stored = checkpoint_size(folder)
    if not stored:
        return
    try:
        implied = implied_size(config)
    except Exception as exc:
        raise ModelLoadError(
            f"the config.json in {str(folder)!r} (model_type {getattr(config, 'model_type', '?')!r}) does not "
            f"describe a causal language model transformers can build: {type(exc).__name__}: {exc}"
        ) from exc
    if implied > stored * SIZE_TOLERANCE or implied * SIZE_TOLERANCE < stored:
        raise ModelLoadError(
            f"the config.json in {str(folder)!r} describes a {getattr(config, 'model_type', '?')!r} model of "
            f"{_count(implied)} parameters but the weights files hold {_count(stored)} values: the config does not "
            "belong to these weights (refused before loading anything)"
        )


def check_load_report(report: dict[str, Any], location: str) -> None:
    """Raise :class:`ModelLoadError` naming the tensors when transformers' load report (from
    ``output_loading_info=True``) lists missing, unexpected or mis-shaped weights."""
    problems = []
    for key, what in (
        ("missing_keys", "missing from the checkpoint (they would be random)"),
        ("unexpected_keys", "in the checkpoint but not in the model"),
        ("mismatched_keys", "of the wrong shape"),
    ):
        names = sorted(str(k if isinstance(k, str) else k[0]) for k in report.get(key) or ())
        if names:
            shown = ", ".join(names[:_SHOWN]) + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")
            problems.append(f"{len(names)} weight(s) {what}: {shown}")
    if problems:
        raise ModelLoadError(
            f"the checkpoint in {location!r} does not match its config.json: "
            + "; ".join(problems)
            + ". Save the model again with save_pretrained(), or fix config.json"
        )


def _count(n: int) -> str:
    for unit, size in (("B", 10**9), ("M", 10**6), ("k", 10**3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)
