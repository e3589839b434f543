"""Settings resolution, in one place.

Precedence, highest first: explicit arguments > environment (``NEXTWORD_BACKEND``,
``NEXTWORD_MODEL``, ``NEXTWORD_CONFIG``) > config files > built-in defaults. Config files, lowest
first: ``nextword.toml`` in the user config directory, ``[tool.nextword]`` in ``./pyproject.toml``,
``./nextword.toml``; ``NEXTWORD_CONFIG=PATH`` replaces all three with one file. A config file::

    backend = "hf"
    model = "gpt2"

    [decoding]            # defaults for DecodingConfig
    max_new_tokens = 50

    [backends.hf]         # load options of one backend
    device = "cpu"
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nextword._types.decoding_config import DecodingConfig
from nextword.errors import InvalidConfig

__all__ = ["DEFAULT_BACKEND", "ConfigFile", "Resolved", "config_files", "resolve"]

DEFAULT_BACKEND = "hf"
ENV_BACKEND = "NEXTWORD_BACKEND"
ENV_MODEL = "NEXTWORD_MODEL"
ENV_CONFIG = "NEXTWORD_CONFIG"
_TOP_KEYS = {"backend", "model", "decoding", "backends"}


@dataclasses.dataclass(frozen=True)
class ConfigFile:
    """One config file that was read, and its parsed table."""

    path: Path
    label: str
    data: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Resolved:
    """The effective settings before a backend is loaded, with the source of each value."""

    backend: str
    model: str | None
    options: dict[str, Any]
    decoding: dict[str, Any]
    sources: dict[str, str]


def user_config_path() -> Path:
    """``nextword.toml`` in the platform's user config directory."""
    import platformdirs

    return Path(platformdirs.user_config_dir("nextword")) / "nextword.toml"


def config_files(cwd: Path | None = None) -> list[ConfigFile]:
    """The config files that apply, lowest precedence first."""
    cwd = Path.cwd() if cwd is None else cwd
    explicit = os.environ.get(ENV_CONFIG)
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise InvalidConfig(f"{ENV_CONFIG}={explicit!r} does not name an existing file")
        return [ConfigFile(path, f"{path} (via {ENV_CONFIG})", _read(path))]
    found = []
    user = user_config_path()
    if user.is_file():
        found.append(ConfigFile(user, str(user), _read(user)))
    pyproject = cwd / "pyproject.toml"
    if pyproject.is_file():
        table = _read(pyproject).get("tool", {}).get("nextword")
        if table is not None:
            found.append(ConfigFile(pyproject, f"{pyproject} [tool.nextword]", _check(table, pyproject)))
    local = cwd / "nextword.toml"
    if local.is_file():
        found.append(ConfigFile(local, str(local), _read(local)))
    return found


def resolve(
    backend: str | None = None,
    model: str | os.PathLike[str] | None = None,
    options: Mapping[str, Any] | None = None,
    decoding: Mapping[str, Any] | None = None,
    *,
    cwd: Path | None = None,
) -> Resolved:
    """Merge arguments, environment and config files into the effective settings.

    ``model`` is None when nothing names one (the backend's default model applies). Decoding
    options are only collected here; they are validated when the config is built.
    """
    sources: dict[str, str] = {}
    values: dict[str, Any] = {}
    opts: dict[str, Any] = {}
    dec: dict[str, Any] = {}
    per_backend: dict[str, dict[str, tuple[Any, str]]] = {}

    for cf in config_files(cwd):
        for key in ("backend", "model"):
            if key in cf.data:
                values[key] = cf.data[key]
                sources[key] = cf.label
        for key, value in cf.data.get("decoding", {}).items():
            _set_decoding(dec, sources, key, value, cf.label)
        for name, table in cf.data.get("backends", {}).items():
            if not isinstance(table, dict):
                raise InvalidConfig(f"{cf.label}: [backends.{name}] must be a table")
            for key, value in table.items():
                per_backend.setdefault(name, {})[key] = (value, cf.label)

    for key, env in (("backend", ENV_BACKEND), ("model", ENV_MODEL)):
        if os.environ.get(env):
            values[key] = os.environ[env]
            sources[key] = f"environment {env}"
    if isinstance(model, os.PathLike):
        model = os.fspath(model)
    for key, value in (("backend", backend), ("model", model)):
        if value is not None:
            values[key] = value
            sources[key] = "argument"

    chosen = values.get("backend", DEFAULT_BACKEND)
    if not isinstance(chosen, str) or not chosen:
        raise InvalidConfig(f"backend must be a non-empty string, got {chosen!r} (from {sources.get('backend')})")
    sources.setdefault("backend", "default")
    chosen_model = values.get("model")
    if chosen_model is not None and (not isinstance(chosen_model, str) or not chosen_model):
        raise InvalidConfig(f"model must be a non-empty string, got {chosen_model!r} (from {sources.get('model')})")
    for key, (value, label) in per_backend.get(chosen, {}).items():
        opts[key] = value
        sources[f"options.{key}"] = label
    for key, value in (options or {}).items():
        opts[key] = value
        sources[f"options.{key}"] = "argument"
    for key, value in (decoding or {}).items():
        _set_decoding(dec, sources, key, value, "argument")
    return Resolved(backend=chosen, model=chosen_model, options=opts, decoding=dec, sources=sources)


def decoding_from(
    resolved: Resolved, config: DecodingConfig | None, arguments: Mapping[str, Any]
) -> tuple[DecodingConfig, dict[str, str]]:
    """The effective DecodingConfig and the source of each option that differs from the default.

    Without ``config``: config-file ``[decoding]`` defaults, then ``arguments``. With an explicit
    ``config`` object: that object, then ``arguments`` (config-file defaults do not apply).
    """
    if config is not None and not isinstance(config, DecodingConfig):
        raise InvalidConfig(f"config must be a DecodingConfig, got {type(config).__name__}")
    if config is None:
        cfg = DecodingConfig.from_options(None, **resolved.decoding)
        sources = {k: v for k, v in resolved.sources.items() if k.startswith("decoding.")}
    else:
        cfg = DecodingConfig.from_options(config, **arguments)
        sources = {f"decoding.{k}": "argument (config)" for k in config.non_default_options()}
        sources.update({f"decoding.{k}": "argument" for k in arguments})
    return cfg, sources


_LENGTH_LIMITS = ("max_new_tokens", "max_length")


def _set_decoding(dec: dict[str, Any], sources: dict[str, str], key: str, value: Any, label: str) -> None:
    """Set one decoding option from a layer. ``max_new_tokens`` and ``max_length`` are two ways
    to say one thing: a layer that sets either replaces whichever a lower layer set (both set
    in one layer stay, and fail validation as contradictory)."""
    if key in _LENGTH_LIMITS and value is not None:
        for other in _LENGTH_LIMITS:
            if other != key and sources.get(f"decoding.{other}") != label:
                dec.pop(other, None)
                sources.pop(f"decoding.{other}", None)
    dec[key] = value
    sources[f"decoding.{key}"] = label


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidConfig(f"{path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise InvalidConfig(f"cannot read config file {path}: {exc}") from None
    if path.name == "pyproject.toml":
        return data
    return _check(data, path)


def _check(data: Any, path: Path) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InvalidConfig(f"{path}: the nextword settings must be a table")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise InvalidConfig(
            f"{path}: unknown setting(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(sorted(_TOP_KEYS))}"
        )
    for key in ("decoding", "backends"):
        if key in data and not isinstance(data[key], dict):
            raise InvalidConfig(f"{path}: {key!r} must be a table ([{key}])")
    return data
