"""Finding the trainers and exporters that plugins register (``register_trainers`` and
``register_exporters`` hooks). Asked afresh on every call, so plugins registered at run time
count too."""

from __future__ import annotations

import difflib
from typing import TypeVar

from nextword._plugins.registry import collect_registrations
from nextword._tuning.specs import ExporterSpec, TrainerSpec
from nextword.errors import BackendNotFound

__all__ = ["exporters", "get_exporter", "get_trainer", "trainers"]

_Spec = TypeVar("_Spec", TrainerSpec, ExporterSpec)


def trainers() -> dict[str, TrainerSpec]:
    """Every registered trainer by name."""
    return _collect("register_trainers", TrainerSpec)


def exporters() -> dict[str, ExporterSpec]:
    """Every registered exporter by format name."""
    return _collect("register_exporters", ExporterSpec)


def get_trainer(name: str) -> TrainerSpec:
    """The trainer ``name``, or :class:`~nextword.BackendNotFound` saying why it cannot be used."""
    return _usable(trainers(), name, "trainer", "fine-tuning needs the hf extra: pip install 'nextword[hf]'")


def get_exporter(name: str) -> ExporterSpec:
    """The exporter of format ``name``, or :class:`~nextword.BackendNotFound` saying why not."""
    return _usable(
        exporters(), name, "exporter", "GGUF export needs the llamacpp extra: pip install 'nextword[llamacpp]'"
    )


def _collect(hook: str, kind: type[_Spec]) -> dict[str, _Spec]:
    # Plugin by plugin: one that fails, registers a wrong object or a taken name adds nothing
    # and is listed by `nextword backends`; the others are not affected.
    return collect_registrations(hook, kind)


def _usable(specs: dict[str, _Spec], name: str, what: str, hint: str) -> _Spec:
    spec = specs.get(name)
    if spec is None:
        close = difflib.get_close_matches(name, list(specs), n=1)
        maybe = f"; did you mean {close[0]!r}?" if close else ""
        listing = ", ".join(sorted(specs)) or "none"
        raise BackendNotFound(f"no {what} named {name!r}{maybe} (installed: {listing}); {hint}")
    reason = spec.check()
    if reason:
        raise BackendNotFound(f"the {what} {name!r} cannot be used here: {reason}")
    return spec
