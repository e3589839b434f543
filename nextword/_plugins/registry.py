"""The plugin manager: discovers plugins through entry points and keeps the backends they register.

Discovery is lazy (on first use) and fault-tolerant: a plugin whose import or registration fails
(an exception, or even ``sys.exit()``) is recorded with its reason and shown by :func:`backends`,
never raised at ``import nextword``; the other plugins are not affected.

Name clashes: the built-in plugins (those of the ``nextword`` distribution) are loaded first and
keep their backend names; a plugin that registers a name already taken registers nothing and is
listed as unusable, naming the plugin that holds the name. Between third-party plugins, the first
in (distribution, entry point) order wins.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.metadata
import threading
import traceback
from typing import Any, TypeVar

import pluggy

from nextword._contract.spec import BackendSpec
from nextword._plugins import hooks as hookspecs
from nextword.errors import BackendNotFound, InvalidConfig

__all__ = [
    "BUILTIN_DISTRIBUTION",
    "ENTRY_POINT_GROUP",
    "BackendInfo",
    "add_plugin_commands",
    "backends",
    "collect_registrations",
    "get_backend",
    "plugin_manager",
    "register_plugin",
]

ENTRY_POINT_GROUP = "nextword"

_T = TypeVar("_T")

BUILTIN_DISTRIBUTION = "nextword"
"""The distribution whose entry points are the built-in plugins."""


def _failure(exc: BaseException) -> str:
    """One line describing what a plugin raised (``sys.exit()`` included)."""
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r})"
    return traceback.format_exception_only(type(exc), exc)[-1].strip()


def _distribution(ep: importlib.metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return str(getattr(dist, "name", "") or "")


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
        self._builtin: set[str] = set()  # plugin names of the built-in plugins
        self._command_problems: dict[str, str] = {}

    def discover(self) -> None:
        with self._lock:
            if self._discovered:
                return
            self._discovered = True
            found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
            # Built-ins first, so that they keep their names whatever else is installed.
            ordered = sorted(
                found, key=lambda ep: (_distribution(ep) != BUILTIN_DISTRIBUTION, _distribution(ep), ep.name)
            )
            for ep in ordered:
                builtin = _distribution(ep) == BUILTIN_DISTRIBUTION
                name = ep.name
                if self.pm.get_plugin(name) is not None or name in self._broken:
                    if builtin:
                        continue  # the same distribution seen twice on sys.path
                    name = f"{_distribution(ep) or ep.value}:{ep.name}"
                try:
                    plugin = ep.load()
                except KeyboardInterrupt:
                    raise
                except BaseException as exc:  # a broken plugin must not break nextword (not even by exiting)
                    self._broken[name] = f"import of {ep.value!r} failed: {_failure(exc)}"
                    continue
                if builtin:
                    self._builtin.add(name)
                self._add(plugin, name)

    def _add(self, plugin: Any, name: str) -> None:
        try:
            self.pm.register(plugin, name=name)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            self._broken[name] = f"registration failed: {_failure(exc)}"
            return
        registered: list[BackendSpec] = []
        impls = [i for i in self.pm.hook.register_backends.get_hookimpls() if i.plugin is plugin]
        try:
            for impl in impls:
                impl.function(register=registered.append)
        except KeyboardInterrupt:
            self.pm.unregister(plugin)
            raise
        except BaseException as exc:
            self.pm.unregister(plugin)
            self._broken[name] = f"register_backends failed: {_failure(exc)}"
            return
        problem = None
        wrong = [spec for spec in registered if not isinstance(spec, BackendSpec)]
        for spec in wrong[:1]:
            problem = f"register_backends registered {type(spec).__name__}, not a BackendSpec"
        for spec in registered if not wrong else []:
            if spec.name in self._specs:
                owner = self._specs[spec.name][1]
                held = "the built-in plugin" if owner in self._builtin else "plugin"
                problem = (
                    f"it registers the backend name {spec.name!r}, which {held} {owner!r} already holds; "
                    "the first registration keeps a name (built-in backends always do), so this plugin "
                    "registered nothing: give its backend another name"
                )
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
                reason = spec.check()
                if reason is not None and not isinstance(reason, str):
                    reason = f"availability check returned {type(reason).__name__}, not a reason string"
                self._checked[spec.name] = reason
            except KeyboardInterrupt:
                raise
            except BaseException as exc:
                self._checked[spec.name] = f"availability check failed: {_failure(exc)}"
        return self._checked[spec.name]

    def _registration_hooks(self) -> list[str]:
        """The hooks other than backends' and commands' that take ``register=``."""
        names = []
        for name in dir(self.pm.hook):
            caller = getattr(self.pm.hook, name)
            spec = getattr(caller, "spec", None)
            if spec is not None and name not in ("register_backends", "register_commands"):
                if "register" in spec.argnames:
                    names.append(name)
        return names

    def add_commands(self, cli: Any) -> None:
        """Run every plugin's ``register_commands`` hook on the click group ``cli``, one plugin at a
        time: a plugin whose hook fails adds no command, and one that replaces a command already
        there (a built-in's) is undone; both are reported by :meth:`infos`."""
        self.discover()
        for impl in self.pm.hook.register_commands.get_hookimpls():
            name = self.pm.get_name(impl.plugin) or repr(impl.plugin)
            before = dict(cli.commands)
            try:
                impl.function(cli=cli)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:
                cli.commands.clear()
                cli.commands.update(before)
                self._command_problems[name] = (
                    f"register_commands failed, so its commands are not available: {_failure(exc)}"
                )
                continue
            replaced = sorted(n for n, cmd in before.items() if cli.commands.get(n) is not cmd)
            for command in replaced:
                cli.commands[command] = before[command]
            if replaced:
                self._command_problems[name] = (
                    f"it registers the command name(s) {', '.join(replaced)}, already taken (the first keeps it)"
                )

    def collect(self, hook: str, kind: type[_T]) -> dict[str, _T]:
        """What every plugin registers through the hook ``hook`` (called ``register=...``), by
        name, calling the plugins one at a time, built-ins first: a plugin whose hook fails,
        registers something not a ``kind`` or a name already taken adds nothing, and the
        problem is reported by :meth:`infos`."""
        self.discover()
        impls = getattr(self.pm.hook, hook).get_hookimpls()
        impls.sort(key=lambda impl: self.pm.get_name(impl.plugin) not in self._builtin)
        out: dict[str, tuple[_T, str]] = {}
        for impl in impls:
            plugin = self.pm.get_name(impl.plugin) or repr(impl.plugin)
            found: list[object] = []
            try:
                impl.function(register=found.append)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:
                self._command_problems[plugin] = f"{hook} failed: {_failure(exc)}"
                continue
            wrong = [type(spec).__name__ for spec in found if not isinstance(spec, kind)]
            names = [getattr(spec, "name", None) for spec in found]
            taken = [n for n in names if n in out or names.count(n) > 1]
            if wrong or taken:
                self._command_problems[plugin] = (
                    f"{hook} registered {wrong[0]}, not a {kind.__name__}"
                    if wrong
                    else f"{hook} registered the name {taken[0]!r}, already taken (the first keeps it)"
                )
                continue
            for spec in found:
                if isinstance(spec, kind):  # all are (checked above); narrows the type
                    out[getattr(spec, "name")] = (spec, plugin)  # noqa: B009
        return {name: spec for name, (spec, _) in out.items()}

    def infos(self) -> list[BackendInfo]:
        self.discover()
        for hook in self._registration_hooks():  # trainers, exporters...: their failures show too
            self.collect(hook, object)
        out = []
        for name, (spec, plugin) in sorted(self._specs.items()):
            reason = self._check(spec)
            out.append(BackendInfo(name, reason is None, reason, spec.default_model, spec.description, plugin))
        for plugin, reason in sorted(self._broken.items()):
            out.append(BackendInfo(plugin, False, reason, None, "", plugin))
        for plugin, reason in sorted(self._command_problems.items()):
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


def add_plugin_commands(cli: Any) -> None:
    """Add the commands plugins register to the click group ``cli``, plugin by plugin: a failing
    plugin's additions are undone, and its failure never breaks the other commands or ``--help``."""
    _REGISTRY.add_commands(cli)


def collect_registrations(hook: str, kind: type[_T]) -> dict[str, _T]:
    """Everything plugins register through the hook named ``hook`` that takes ``register=``
    (trainers, exporters, ...), by name, with plugin failures contained as for backends."""
    return _REGISTRY.collect(hook, kind)


def backends() -> list[BackendInfo]:
    """Every installed backend, whether it can be used here and, if not, why."""
    return _REGISTRY.infos()
