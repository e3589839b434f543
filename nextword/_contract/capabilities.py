"""What a backend can do, declared by the backend itself.

The core reads the declaration to refuse, before any engine call, an option the backend cannot
honour, and the conformance suite reads it to choose which shared tests apply.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping

from nextword._types.decoding_config import DecodingConfig
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

    ``options`` maps each :class:`~nextword._types.decoding_config.DecodingConfig` field to its
    :class:`Support`; a field left out counts as unsupported. The booleans say whether
    batches, streaming, next-token prediction and scoring work.

    ``logits`` says whether :meth:`~nextword._contract.protocol.Generator.next_token_logits` returns the
    full next-token distribution. A backend that cannot (a remote server that returns only the
    most likely tokens) sets it to False and implements ``next_token_top_logprobs`` instead;
    ``max_logprobs`` is then the most log-probabilities per position it can return (None: the
    whole vocabulary). Prediction, word search, scoring and the conformance suite read these two
    fields to choose what they compute and check.
    """

    options: Mapping[str, Support]
    batch: bool = True
    stream: bool = True
    predict_next: bool = True
    score: bool = True
    logits: bool = True
    max_logprobs: int | None = None

    @classmethod
    def all(cls, support: Support, **overrides: Support) -> Capabilities:
        """Every decoding option with the same support, except those named in ``overrides``."""
        options = {name: support for name in DecodingConfig.field_names()}
        options.update(overrides)
        return cls(options=options)

    def check_logprobs(self, n: int, backend: str) -> None:
        """Raise :class:`UnsupportedOption` if ``n`` log-probabilities per position exceed
        :attr:`max_logprobs`."""
        if self.max_logprobs is not None and n > self.max_logprobs:
            raise UnsupportedOption(
                f"the {backend!r} backend returns at most {self.max_logprobs} log-probabilities per "
                f"position, {n} were asked for; ask for at most {self.max_logprobs}",
                option="logprobs",
                backend=backend,
            )

    def within(self, other: Capabilities) -> bool:
        """Whether everything this declaration supports, ``other`` supports too."""
        options = all(other.supports(name) for name in self.options if self.supports(name))
        features = all(
            getattr(other, flag) or not getattr(self, flag) for flag in ("batch", "stream", "predict_next", "score")
        )
        logits = other.logits or not self.logits
        limit = other.max_logprobs is None or (
            self.max_logprobs is not None and self.max_logprobs <= other.max_logprobs
        )
        return options and features and logits and limit

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
            "logits": self.logits,
            "max_logprobs": self.max_logprobs,
        }
