"""What a backend can do, declared by the backend itself.

The core reads the declaration to refuse, before any engine call, an option the backend cannot
honour, and the conformance suite reads it to choose which shared tests apply.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping

from nextword.decoding_config import DecodingConfig
from nextword.errors import UnsupportedOption

__all__ = ["Capabilities", "Support"]


class Support(enum.StrEnum):
    """How a backend honours a decoding option."""

    NATIVE = "native"
    """The engine itself implements it."""
    EMULATED = "emulated"
    """nextword's shared decoding helpers implement it on top of the engine."""
    UNSUPPORTED = "unsupported"
    """Not available: asking for it raises :class:`~nextword.errors.UnsupportedOption`."""


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """A backend's declaration of what it supports.

    ``options`` maps each :class:`~nextword.decoding_config.DecodingConfig` field to its
    :class:`Support`; a field left out counts as unsupported. The booleans say whether
    batches, streaming, next-token prediction and scoring work.
    """

    options: Mapping[str, Support]
    batch: bool = True
    stream: bool = True
    predict_next: bool = True
    score: bool = True

    @classmethod
    def all(cls, support: Support, **overrides: Support) -> Capabilities:
        """Every decoding option with the same support, except those named in ``overrides``."""
        options = {name: support for name in DecodingConfig.field_names()}
        options.update(overrides)
        return cls(options=options)

    def support(self, option: str) -> Support:
        """How ``option`` is honoured."""
        return Support(self.options.get(option, Support.UNSUPPORTED))

    def supports(self, option: str) -> bool:
        """Whether ``option`` can be used at all."""
        return self.support(option) is not Support.UNSUPPORTED

    def check(self, config: DecodingConfig, backend: str) -> None:
        """Raise :class:`UnsupportedOption` for the first option ``config`` uses that is unsupported."""
        for name in config.non_default_options():
            if not self.supports(name):
                raise UnsupportedOption(
                    f"the {backend!r} backend does not support the decoding option {name!r} "
                    f"(value {getattr(config, name)!r}); remove it or choose another backend",
                    option=name,
                    backend=backend,
                )

    def require(self, feature: str, backend: str) -> None:
        """Raise :class:`UnsupportedOption` if a feature flag (batch, stream, ...) is off."""
        if not getattr(self, feature):
            raise UnsupportedOption(
                f"the {backend!r} backend does not support {feature}", option=feature, backend=backend
            )

    def to_dict(self) -> dict[str, object]:
        """A JSON-friendly dict."""
        return {
            "options": {k: Support(v).value for k, v in self.options.items()},
            "batch": self.batch,
            "stream": self.stream,
            "predict_next": self.predict_next,
            "score": self.score,
        }
