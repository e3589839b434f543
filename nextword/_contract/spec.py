"""``BackendSpec``: how a plugin describes a backend to nextword."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from nextword._contract.capabilities import Capabilities, Support
from nextword.errors import InvalidConfig, ModelLoadError

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

    The spec is the backend's one declaration of its name and capabilities: the generators it
    loads report them (a :class:`~nextword._contract.base.BaseGenerator` takes them from ``spec=``), and
    nextword checks that they do when it loads a model (:meth:`check_generator`).

    ``load(model, **options)`` returns a :class:`~nextword._contract.protocol.Generator`; it is only called
    when the backend is used, so heavy imports belong inside it. ``default_model`` is the model
    used when no setting names one (a backend without a natural default may name a small
    built-in model, or a placeholder whose load raises a ModelLoadError saying what to pass).
    ``check()`` returns None when the backend can be used here, else the reason it cannot; it
    runs for ``nextword backends`` and before every load, so it must be cheap (look modules up
    with ``importlib.util.find_spec``; never import the engine). ``capabilities`` defaults to
    every decoding option emulated by the shared helpers (right for a plain ``BaseGenerator``).
    """

    name: str
    load: Callable[..., Any]
    default_model: str
    description: str = ""
    options: Mapping[str, OptionSpec] = dataclasses.field(default_factory=dict)
    capabilities: Capabilities = dataclasses.field(default_factory=lambda: Capabilities.all(Support.EMULATED))
    check: Callable[[], str | None] = lambda: None
    probed: bool = False
    """The generator learns its capabilities when it loads (a remote server's): they may be fewer
    than the spec's (the most the backend can offer), never more."""

    def __post_init__(self) -> None:
        if self.capabilities is None:  # an explicit None means the default
            object.__setattr__(self, "capabilities", Capabilities.all(Support.EMULATED))

    def check_generator(self, generator: Any) -> None:
        """Raise :class:`~nextword.errors.ModelLoadError` unless ``generator`` reports this
        spec's name and capabilities (a generator made without passing the spec on reports others)."""
        backend = generator.backend
        if backend != self.name:
            raise ModelLoadError(
                f"the {self.name!r} backend loaded a generator that reports backend {backend!r}; "
                "pass the backend's spec to the generator (BaseGenerator(..., spec=SPEC)) so both say the same"
            )
        if self.probed:
            if not generator.capabilities.within(self.capabilities):
                raise ModelLoadError(
                    f"the {self.name!r} backend loaded a generator that claims more than its BackendSpec declares"
                )
            return
        if generator.capabilities != self.capabilities:
            raise ModelLoadError(
                f"the {self.name!r} backend loaded a generator whose capabilities differ from its BackendSpec's; "
                "declare them once, on the spec, and pass the spec to the generator"
            )

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
