"""``BackendSpec``: how a plugin describes a backend to nextword."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from nextword.capabilities import Capabilities
from nextword.errors import InvalidConfig

__all__ = ["BackendSpec", "OptionSpec"]


@dataclasses.dataclass(frozen=True)
class OptionSpec:
    """One load option a backend accepts (``device``, ``dtype``, ``threads``, ...)."""

    type: type
    help: str
    default: Any = None
    choices: tuple[Any, ...] | None = None
    minimum: int | None = None
    secret: bool = False
    """A credential (an API key): never shown in settings, results or ``nextword config``."""

    def coerce(self, backend: str, name: str, value: Any) -> Any:
        """``value`` converted to the option's type (strings from env/CLI are parsed), or
        :class:`InvalidConfig` naming the option and what it accepts."""
        if value is None:
            return None
        try:
            if self.type is bool and isinstance(value, str):
                lowered = value.strip().lower()
                if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError(value)
                out: Any = lowered in ("1", "true", "yes", "on")
            elif self.type is int and isinstance(value, bool):
                raise ValueError(value)
            else:
                out = self.type(value)
        except (TypeError, ValueError):
            raise InvalidConfig(
                f"{backend} option {name!r} must be of type {self.type.__name__}, got {value!r}"
            ) from None
        if self.choices is not None and out not in self.choices:
            allowed = ", ".join(map(str, self.choices))
            raise InvalidConfig(f"{backend} option {name!r} must be one of {allowed}, got {value!r}")
        if self.minimum is not None and out < self.minimum:
            raise InvalidConfig(f"{backend} option {name!r} must be >= {self.minimum}, got {value!r}")
        return out


@dataclasses.dataclass(frozen=True, eq=False)
class BackendSpec:
    """A backend as a plugin registers it.

    ``load(model, **options)`` returns a :class:`~nextword.protocol.Generator`; it is only called
    when the backend is used, so heavy imports belong inside it. ``check()`` returns None when
    the backend can be used here, else the reason it cannot (for ``nextword backends``).
    """

    name: str
    load: Callable[..., Any]
    default_model: str
    description: str = ""
    options: Mapping[str, OptionSpec] = dataclasses.field(default_factory=dict)
    capabilities: Capabilities | None = None
    check: Callable[[], str | None] = lambda: None

    def validate_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The options coerced to their types; unknown names raise :class:`InvalidConfig`."""
        out: dict[str, Any] = {}
        for name, value in options.items():
            spec = self.options.get(name)
            if spec is None:
                known = ", ".join(sorted(self.options)) or "none"
                raise InvalidConfig(f"unknown option {name!r} for the {self.name!r} backend (its options: {known})")
            out[name] = spec.coerce(self.name, name, value)
        return out

    def shown_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` as they may be shown: secret ones (API keys) replaced by ``"<hidden>"``."""
        return {
            name: "<hidden>"
            if value is not None and (spec := self.options.get(name)) is not None and spec.secret
            else value
            for name, value in options.items()
        }
