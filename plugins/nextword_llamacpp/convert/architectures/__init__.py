"""The architectures the converter knows, one module each.

An architecture module declares ``MODEL_TYPES`` (the Hugging Face ``config.json`` ``model_type``
values it converts) and ``read_model(src, config) -> SourceModel``. Modules in this package are
found by name: adding an architecture is adding one module here.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from nextword_llamacpp.convert.source_model import SourceModel

__all__ = ["ModelReader", "readers", "supported_model_types"]

#: ``read_model(src, config)`` of an architecture module.
ModelReader = Callable[[Path, dict[str, Any]], SourceModel]


@cache
def readers() -> dict[str, ModelReader]:
    """Each supported ``model_type`` mapped to the ``read_model`` of the module that converts it."""
    found: dict[str, ModelReader] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for model_type in module.MODEL_TYPES:
            found[model_type] = module.read_model
    return found


def supported_model_types() -> tuple[str, ...]:
    """The ``model_type`` values the converter accepts, sorted."""
    return tuple(sorted(readers()))
