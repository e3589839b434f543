"""The hooks a nextword plugin implements (pluggy project name ``nextword``).

A plugin is a module or object with functions decorated by :data:`hookimpl`, registered through
the ``nextword`` entry-point group::

    [project.entry-points.nextword]
    mybackend = "my_package.plugin"
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from nextword._contract.spec import BackendSpec

__all__ = ["hookimpl", "hookspec", "PROJECT"]

PROJECT = "nextword"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
"""Decorator for a plugin's hook implementations."""


@hookspec
def register_backends(register: Callable[[BackendSpec], None]) -> None:
    """Register backends by calling ``register(BackendSpec(...))`` once per backend."""


@hookspec
def register_commands(cli: Any) -> None:
    """Add subcommands to the ``nextword`` command line; ``cli`` is its :class:`click.Group`."""


@hookspec
def register_trainers(register: Callable[[Any], None]) -> None:
    """Register fine-tuning engines by calling ``register(TrainerSpec(...))`` once per engine
    (see :class:`nextword._tuning.TrainerSpec`). :func:`nextword.finetune` uses the one named by
    its ``trainer`` argument (``"hf"`` by default)."""


@hookspec
def register_exporters(register: Callable[[Any], None]) -> None:
    """Register model-file exporters by calling ``register(ExporterSpec(...))`` once per format
    (see :class:`nextword._tuning.ExporterSpec`); :func:`nextword.finetune` uses the ``"gguf"`` one
    for its ``gguf`` argument."""
