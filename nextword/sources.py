"""Former name of :mod:`nextword.model_location` (where a model comes from), kept so that existing
imports keep working. Not to be confused with ``Settings.sources`` (where a setting came from)."""

from __future__ import annotations

from nextword.model_location import hub_reachable, looks_like_path

__all__ = ["hub_reachable", "looks_like_path"]
