"""Testing kit for nextword backends: the shared conformance suite and fixture builders.

A backend author subclasses :class:`~nextword.testing.conformance.GeneratorConformance` and
provides a ``generator`` fixture; see the plugin author's guide. The suite is imported on first
access, so loading nextword's pytest plugin into an unrelated test run imports none of it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nextword.testing.conformance import GeneratorConformance

__all__ = ["GeneratorConformance"]


def __getattr__(name: str) -> Any:
    if name == "GeneratorConformance":
        value = importlib.import_module("nextword.testing.conformance").GeneratorConformance
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
