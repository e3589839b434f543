"""MkDocs hooks that generate parts of the documentation from the code itself.

A page asks for generated content with an HTML comment on a line of its own::

    <!-- nextword:decoding-options -->          every DecodingConfig field: type, default, range, meaning
    <!-- nextword:decoding-support -->          per backend: native / emulated / unsupported, and features
    <!-- nextword:backend-options hf -->        a backend's load options, from its OptionSpecs
    <!-- nextword:cli-reference -->             every command of the click CLI, with its options
    <!-- nextword:check-headings decoding -->   fail unless every DecodingConfig field has a heading
    <!-- nextword:check-headings errors -->     fail unless every error class has a heading

Backends are found through the ``nextword`` entry points of the nextword distribution itself (the
built-in plugins); each plugin module's ``register_backends`` hook is called with a collecting
``register`` function, exactly as nextword's registry does, so the tables show the declarations the
plugins ship. A plugin that cannot be imported is named under the table instead of silently
missing. Anything unexpected is logged as a warning, which fails ``mkdocs build --strict``.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib
import importlib.metadata
import inspect
import logging
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

log = logging.getLogger("mkdocs.hooks.nextword")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "plugins") not in sys.path:  # the built-in plugins, when nextword is not installed
    sys.path.append(str(ROOT / "plugins"))

FALLBACK_PLUGIN_MODULES = {
    "hf": "nextword_hf.plugin",
    "llamacpp": "nextword_llamacpp.plugin",
    "openai": "nextword_openai.plugin",
}

_PLACEHOLDER = re.compile(r"^<!-- nextword:(?P<name>[\w-]+)(?P<args>(?: [\w.-]+)*) -->[ \t]*$", re.MULTILINE)


# ---- MkDocs event -------------------------------------------------------------------------------


def on_page_markdown(markdown: str, *, page: Any, **kwargs: Any) -> str:
    """Replace every placeholder of the page with its generated Markdown."""

    def fill(match: re.Match[str]) -> str:
        name, args = match["name"], match["args"].split()
        make = GENERATORS.get(name)
        if make is None:
            log.warning("%s: unknown placeholder <!-- nextword:%s -->", page.file.src_uri, name)
            return match[0]
        try:
            return make(markdown, page.file.src_uri, *args)
        except Exception as exc:  # report, and fail the strict build
            log.warning("%s: generating %r failed: %s: %s", page.file.src_uri, name, type(exc).__name__, exc)
            return match[0]

    return _PLACEHOLDER.sub(fill, markdown)


#: Pages under these folders are written in another language than the site's (``theme.language``).
PAGE_LANGUAGES = {"ko/": "ko"}

_HTML_LANG = re.compile(r'<html lang="[^"]*"')


def on_post_page(output: str, *, page: Any, **kwargs: Any) -> str:
    """Declare the language of a translated page (``<html lang="ko">``), so that browsers, screen
    readers and search engines read it as Korean."""
    for folder, lang in PAGE_LANGUAGES.items():
        if page.file.src_uri.startswith(folder):
            return _HTML_LANG.sub(f'<html lang="{lang}"', output, count=1)
    return output


# ---- helpers ------------------------------------------------------------------------------------


def _cell(text: object) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _code(value: object) -> str:
    """Inline code in a table cell (Python-Markdown's tables leave pipes inside code spans alone)."""
    return "`" + " ".join(str(value).split()) + "`"


@dataclasses.dataclass(frozen=True)
class _Backends:
    specs: dict[str, Any]
    problems: dict[str, str]

    def note(self) -> str:
        if not self.problems:
            return ""
        missing = "; ".join(f"`{name}`: {_cell(reason)}" for name, reason in sorted(self.problems.items()))
        return (
            '\n\n!!! note "Not shown"\n'
            f"    These built-in plugins could not be imported when this page was built: {missing}."
        )


@functools.cache
def _builtin_plugin_modules() -> dict[str, str]:
    """Entry-point name -> module of the plugins that the nextword distribution itself declares."""
    modules: dict[str, str] = {}
    for ep in importlib.metadata.entry_points(group="nextword"):
        dist = getattr(ep, "dist", None)
        if dist is not None and dist.name == "nextword":
            modules[ep.name] = ep.value
    if not modules:
        log.info("nextword is not installed; using the plugin modules from plugins/")
        modules = dict(FALLBACK_PLUGIN_MODULES)
    return modules


def _builtin_packages() -> set[str]:
    """Top-level packages shipped by nextword: the core and the built-in plugins."""
    return {"nextword"} | {module.partition(".")[0] for module in _builtin_plugin_modules().values()}


@functools.cache
def _builtin_backends() -> _Backends:
    """The BackendSpecs the built-in plugins register, by backend name."""
    modules = _builtin_plugin_modules()
    specs: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for plugin, module_name in sorted(modules.items()):
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            problems[plugin] = f"{type(exc).__name__}: {exc}"
            log.info("plugin %s (%s) cannot be imported: %s", plugin, module_name, exc)
            continue
        found: list[Any] = []
        module.register_backends(register=found.append)
        for spec in found:
            specs[spec.name] = spec
    return _Backends(specs, problems)


# ---- decoding options ---------------------------------------------------------------------------


def _field_docs() -> dict[str, str]:
    """The attribute docstrings of DecodingConfig's fields, read from its source."""
    from nextword._types.decoding_config import DecodingConfig

    tree = ast.parse(inspect.getsource(DecodingConfig))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, following in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = inspect.cleandoc(following.value.value)
    return docs


def _allowed(name: str) -> str:
    """What the validator accepts, in its own words: build invalid configs and read the messages."""
    from nextword._types.decoding_config import DecodingConfig
    from nextword.errors import InvalidConfig

    phrases: list[str] = []
    for probe in (object(), [""]):
        try:
            DecodingConfig(**{name: probe})
        except InvalidConfig as exc:
            m = re.match(r"(?P<subject>.+?) must be (?P<what>.+?), got ", str(exc))
            if m is None:
                continue
            phrase = m["what"] if m["subject"] == name else f"{m['subject']}: {m['what']}"
            if phrase not in phrases:
                phrases.append(phrase)
        except Exception:
            continue
    if not phrases:
        raise ValueError(f"cannot tell the allowed values of {name!r} from the validator's messages")
    return "; ".join(phrases)


def decoding_options(markdown: str, src: str) -> str:
    from nextword._types.decoding_config import DecodingConfig

    docs = _field_docs()
    rows = []
    for field in dataclasses.fields(DecodingConfig):
        if field.name not in docs:
            log.warning("%s: DecodingConfig.%s has no docstring to show", src, field.name)
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()  # type: ignore[misc]
        rows.append(
            [
                f"[`{field.name}`](#{field.name})" if _has_heading(markdown, field.name) else f"`{field.name}`",
                _code(field.type),
                _code(repr(default)),
                _cell(_allowed(field.name)),
                _cell(docs.get(field.name, "")),
            ]
        )
    return _table(["option", "type", "default", "accepted values", "meaning"], rows)


def decoding_support(markdown: str, src: str) -> str:
    from nextword._types.decoding_config import DecodingConfig

    found = _builtin_backends()
    names = sorted(n for n in found.specs if not getattr(found.specs[n], "probed", False))
    if not names:
        raise ValueError("no built-in backend could be imported")
    remote = sorted(n for n in found.specs if getattr(found.specs[n], "probed", False))
    rows = []
    for option in DecodingConfig.field_names():
        cells = []
        for name in names:
            caps = found.specs[name].capabilities
            cells.append("unsupported" if caps is None else _support_text(caps.support(option).value))
        rows.append([f"`{option}`", *cells])
    for feature, label in (
        ("batch", "batches"),
        ("stream", "streaming"),
        ("predict_next", "`predict_next`"),
        ("score", "`score`"),
    ):
        cells = []
        for name in names:
            caps = found.specs[name].capabilities
            cells.append("yes" if caps is not None and getattr(caps, feature) else "**no**")
        rows.append([label, *cells])
    after = ""
    if remote:
        listed = ", ".join(f"`{n}`" for n in remote)
        after = (
            f"\n\n{listed}: what is supported depends on the server it talks to; see "
            "[Serving and scaling out](serving.md#what-each-server-keeps).\n"
        )
    return _table(["option / feature", *(f"`{n}`" for n in names)], rows) + after + found.note()


def _support_text(value: str) -> str:
    return {"native": "native", "emulated": "emulated", "unsupported": "**unsupported**"}.get(value, value)


# ---- backend options ----------------------------------------------------------------------------


def backend_options(markdown: str, src: str, backend: str) -> str:
    found = _builtin_backends()
    spec = found.specs.get(backend)
    if spec is None:
        if backend in found.problems:
            return (
                f"*The `{backend}` plugin could not be imported when this page was built "
                f"({_cell(found.problems[backend])}), so its options are not listed here; "
                f"`nextword config --backend {backend}` shows them on a machine where it is installed.*"
            )
        raise ValueError(f"no built-in backend named {backend!r}")
    rows = []
    for name, opt in spec.options.items():
        accepted = opt.type.__name__
        if opt.choices is not None:
            accepted = " \\| ".join(f"`{c}`" for c in opt.choices)
        elif opt.minimum is not None:
            accepted = f"{accepted} ≥ {opt.minimum}"
        default = "—" if opt.default is None else _code(repr(opt.default))
        rows.append([f"`{name}`", accepted, default, _cell(opt.help)])
    header = f"Default model: `{spec.default_model}`.\n\n"
    return header + _table(["option", "accepted values", "default", "meaning"], rows)


# ---- command line -------------------------------------------------------------------------------


def cli_reference(markdown: str, src: str) -> str:
    from nextword._plugins.registry import plugin_manager
    from nextword.cli import cli

    # Subcommands that the built-in plugins add through the register_commands hook.
    plugin_manager().hook.register_commands(cli=cli)
    ctx = click.Context(cli, info_name="nextword", **cli.context_settings)
    commands: dict[str, click.Command] = {}
    for name in cli.list_commands(ctx):
        cmd = cli.get_command(ctx, name)
        if cmd is None or cmd.hidden:
            continue
        module = getattr(cmd.callback, "__module__", "") or ""
        if module.partition(".")[0] not in _builtin_packages():
            continue  # a third-party plugin's command: not part of nextword's reference
        commands[name] = cmd
    parts = [_command_doc(cli, ctx, "nextword", "###", subcommands=list(commands))]
    for name, cmd in commands.items():
        sub = click.Context(cmd, info_name=name, parent=ctx)
        parts.append(_command_doc(cmd, sub, f"nextword {name}", "###"))
    return "\n\n".join(parts)


def _command_doc(
    cmd: click.Command, ctx: click.Context, title: str, level: str, subcommands: list[str] | None = None
) -> str:
    pieces = " ".join(cmd.collect_usage_pieces(ctx))
    out = [f"{level} `{title}`", "", f"```text\n{title} {pieces}\n```", ""]
    if cmd.help:
        out += [inspect.cleandoc(cmd.help).replace("\b\n", ""), ""]
    if subcommands:
        out += ["Commands: " + ", ".join(f"[`{n}`](#nextword-{n})" for n in subcommands) + ".", ""]
    params = cmd.get_params(ctx)
    arguments = [p for p in params if isinstance(p, click.Argument)]
    options = [p for p in params if isinstance(p, click.Option)]
    if arguments:
        rows = [
            [f"`{a.human_readable_name}`", _param_type(a), "required" if a.required else "optional"] for a in arguments
        ]
        out += ["**Arguments**", "", _table(["argument", "type", ""], rows), ""]
    if options:
        rows = [[_option_names(o), _param_type(o), _option_default(o), _cell(o.help or "")] for o in options]
        out += ["**Options**", "", _table(["option", "type", "default", "meaning"], rows), ""]
    return "\n".join(out).rstrip()


def _option_names(opt: click.Option) -> str:
    names = ", ".join(f"`{n}`" for n in opt.opts)
    if opt.secondary_opts:
        names += " / " + ", ".join(f"`{n}`" for n in opt.secondary_opts)
    return names


def _param_type(param: click.Parameter) -> str:
    if isinstance(param, click.Option) and param.is_flag:
        return "flag"
    kind = param.type
    if isinstance(kind, click.Choice):
        text = " \\| ".join(f"`{c}`" for c in kind.choices)
    elif isinstance(kind, (click.IntRange, click.FloatRange)):
        base = "integer" if isinstance(kind, click.IntRange) else "number"
        bounds = []
        if kind.min is not None:
            bounds.append(f"{'>' if kind.min_open else '≥'} {kind.min}")
        if kind.max is not None:
            bounds.append(f"{'<' if kind.max_open else '≤'} {kind.max}")
        text = f"{base} {', '.join(bounds)}".strip()
    else:
        text = {"integer": "integer", "float": "number", "text": "text", "boolean": "boolean"}.get(kind.name, kind.name)
    if getattr(param, "multiple", False):
        text += ", repeatable"
    return text


# click 8.3 marks "no default given" with a sentinel object instead of None.
_UNSET = getattr(click.core, "UNSET", None)


def _option_default(opt: click.Option) -> str:
    value = opt.default
    if opt.is_flag:
        return "on" if value is True else "—"
    if value is None or value is _UNSET or value == () or callable(value):
        return "—"
    return _code(value)


# ---- checks -------------------------------------------------------------------------------------


def _has_heading(markdown: str, name: str) -> bool:
    return re.search(rf"^#{{2,4}} .*`{re.escape(name)}`", markdown, re.MULTILINE) is not None


def check_headings(markdown: str, src: str, kind: str) -> str:
    if kind == "decoding":
        from nextword._types.decoding_config import DecodingConfig

        names = list(DecodingConfig.field_names())
    elif kind == "errors":
        import nextword.errors

        names = list(nextword.errors.__all__)
    else:
        raise ValueError(f"unknown heading check {kind!r}")
    missing = [n for n in names if not _has_heading(markdown, n)]
    if missing:
        log.warning("%s: no section for %s (add a heading containing `name`)", src, ", ".join(missing))
    return ""


GENERATORS: dict[str, Callable[..., str]] = {
    "decoding-options": decoding_options,
    "decoding-support": decoding_support,
    "backend-options": backend_options,
    "cli-reference": cli_reference,
    "check-headings": check_headings,
}
