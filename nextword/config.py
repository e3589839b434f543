"""Former name of :mod:`nextword.decoding_config` (the decoding options), kept so that existing
imports keep working; config files are read by :mod:`nextword.settings`."""

from __future__ import annotations

from nextword.decoding_config import DecodingConfig

__all__ = ["DecodingConfig"]
