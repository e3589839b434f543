"""The plugin manager: discovers plugins through entry points and keeps the backends they register.

Discovery is lazy (on first use) and fault-tolerant: a plugin whose import or registration fails
is recorded with its reason and shown by :func:`backends`, never raised at ``import nextword``.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.metadata
import threading
import traceback
from typing import Any

import pluggy

from nextword import hookspecs
from nextword.backend_spec import BackendSpec
from nextword.errors import BackendNotFound, InvalidConfig

__all__ = ["BackendInfo", "backends", "get_backend", "plugin_manager", "register_plugin", "ENTRY_POINT_GROUP"]

ENTRY_POINT_GROUP = "nextword"


@dataclasses.dataclass(frozen=True)
class BackendInfo:
    """What ``nextword backends`` shows for one backend (or for a plugin that failed to load)."""

    name: str
    usable: bool
    reason: str | None
    default_model: str | None
    description: str
    plugin: str


class _Registry:
    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._lock = threading.RLock()
        self._discovered = False
        self._specs: dict[str, tuple[BackendSpec, str]] = {}
        self._broken: dict[str, str] = {}
        self._checked: dict[str, str | None] = {}

    def discover(self) -> None:
        with self._lock:
            if self._discovered:
                return
            self._discovered = True
            for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
                if self.pm.get_plugin(ep.name) is not None:
                    continue
                try:
                    plugin = ep.load()
                except Exception as exc:  # a broken plugin must not break nextword
                    self._broken[ep.name] = f"import failed: {type(exc).__name__}: {exc}"
                    continue
                self._add(plugin, ep.name)

    def _add(self, plugin: Any, name: str) -> None:
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:
            self._broken[name] = f"registration failed: {type(exc).__name__}: {exc}"
            return
        registered: list[BackendSpec] = []
        impls = [i for i in self.pm.hook.register_backends.get_hookimpls() if i.plugin is plugin]
        try:
            for impl in impls:
                impl.function(register=registered.append)
        except Exception as exc:
            self.pm.unregister(plugin)
            detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
            self._broken[name] = f"register_backends failed: {detail}"
            return
        problem = None
        wrong = [spec for spec in registered if not isinstance(spec, BackendSpec)]
        for spec in wrong[:1]:
            problem = f"register_backends registered {type(spec).__name__}, not a BackendSpec"
        for spec in registered if not wrong else []:
            if spec.name in self._specs:
                owner = self._specs[spec.name][1]
                problem = f"the backend name {spec.name!r} is already registered by plugin {owner!r}"
            elif sum(other.name == spec.name for other in registered) > 1:
                problem = f"register_backends registered the backend name {spec.name!r} twice"
        if problem is not None:
            # All or nothing: a plugin with a bad registration adds no backend at all.
            self.pm.unregister(plugin)
            self._broken[name] = problem
            return
        for spec in registered:
            # A copy per registration: models loaded through an earlier registration of the same
            # spec object (cached under it) are never handed out for this one.
            self._specs[spec.name] = (dataclasses.replace(spec), name)

    def register(self, plugin: Any, name: str | None = None) -> str:
        with self._lock:
            self.discover()
            plugin_name = name or getattr(plugin, "__name__", None) or repr(plugin)
            if self.pm.get_plugin(plugin_name) is not None:
                raise InvalidConfig(f"a plugin named {plugin_name!r} is already registered")
            self._broken.pop(plugin_name, None)
            self._add(plugin, plugin_name)
            if plugin_name in self._broken:
                raise InvalidConfig(f"plugin {plugin_name!r} could not be registered: {self._broken[plugin_name]}")
            return plugin_name

    def unregister(self, name: str) -> None:
        with self._lock:
            plugin = self.pm.get_plugin(name)
            if plugin is not None:
                self.pm.unregister(plugin)
            self._specs = {k: v for k, v in self._specs.items() if v[1] != name}
            self._checked.clear()
            self._broken.pop(name, None)

    def get(self, name: str) -> BackendSpec:
        self.discover()
        entry = self._specs.get(name)
        if entry is None:
            if name in self._broken:
                raise BackendNotFound(f"the plugin for backend {name!r} is broken: {self._broken[name]}")
            known = sorted(self._specs)
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            listing = ", ".join(known) or "none"
            raise BackendNotFound(
                f"no backend named {name!r}{hint} (installed backends: {listing}); "
                "run `nextword backends` to see them and why any is unusable"
            )
        spec = entry[0]
        reason = self._check(spec)
        if reason:
            raise BackendNotFound(f"the {name!r} backend is installed but cannot be used: {reason}")
        return spec

    def _check(self, spec: BackendSpec) -> str | None:
        """``spec.check()``, run once per backend and remembered (availability does not change
        within a process); an exception counts as the reason."""
        if spec.name not in self._checked:
            try:
                self._checked[spec.name] = spec.check()
            except Exception as exc:
                self._checked[spec.name] = f"availability check failed: {type(exc).__name__}: {exc}"
        return self._checked[spec.name]

    def infos(self) -> list[BackendInfo]:
        self.discover()
        out = []
        for name, (spec, plugin) in sorted(self._specs.items()):
            reason = self._check(spec)
            out.append(BackendInfo(name, reason is None, reason, spec.default_model, spec.description, plugin))
        for plugin, reason in sorted(self._broken.items()):
            out.append(BackendInfo(plugin, False, reason, None, "", plugin))
        return out


_REGISTRY = _Registry()


def plugin_manager() -> pluggy.PluginManager:
    """The pluggy plugin manager (plugins discovered)."""
    _REGISTRY.discover()
    return _REGISTRY.pm


def register_plugin(plugin: Any, name: str | None = None) -> str:
    """Register a plugin object or module at run time (as an entry point would); returns its name."""
    return _REGISTRY.register(plugin, name)


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered under ``name`` and its backends."""
    _REGISTRY.unregister(name)


def get_backend(name: str) -> BackendSpec:
    """The spec of a usable backend, or :class:`BackendNotFound` saying why not."""
    return _REGISTRY.get(name)


def backends() -> list[BackendInfo]:
    """Every installed backend, whether it can be used here and, if not, why."""
    return _REGISTRY.infos()
