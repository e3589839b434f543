"""A Griffe extension that turns the reStructuredText in nextword's docstrings into Markdown.

nextword's docstrings use a few reST habits: cross-reference roles (``:class:`~nextword.X```),
literal blocks introduced by ``::`` and doctest lines (``>>>``). mkdocstrings renders docstrings
as Markdown, so this extension rewrites them once the package is loaded:

* a role whose target Griffe can resolve becomes an autorefs link (``[`X`][nextword.mod.X]``);
  mkdocs-autorefs then fails a strict build if that object is rendered on no page. A target
  Griffe cannot resolve (``click.Group``) becomes plain inline code and is listed in the log;
* ``text::`` followed by an indented block becomes ``text:`` and a fenced code block;
* a run of ``>>>`` lines becomes a fenced ``pycon`` block;
* ``#:`` comment lines right above an attribute without a docstring become its docstring (the
  Sphinx convention for documenting module constants).

Registered in ``mkdocs.yml`` under the python handler's ``extensions`` option.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import griffe

_log = logging.getLogger("mkdocs.plugins.nextword.griffe_rst")

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|data|mod|exc|obj|const):`(?P<tilde>~?)(?P<target>[^`]+)`")


class ReSTToMarkdown(griffe.Extension):
    """Rewrite every docstring of a loaded package (see the module docstring)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        for obj in _walk(pkg):
            if obj.docstring is None and obj.is_attribute:
                _doc_comment(obj)
            if obj.docstring is not None:
                obj.docstring.value = convert(obj.docstring.value, obj)


def _doc_comment(obj: griffe.Object) -> None:
    """Use Sphinx-style ``#:`` comment lines right above an attribute as its docstring."""
    if not obj.lineno or obj.filepath is None or isinstance(obj.filepath, list):
        return
    try:
        source = obj.lines_collection[obj.filepath]
    except KeyError:
        return
    comment: list[str] = []
    index = obj.lineno - 2  # the line above the attribute (lineno is 1-based)
    while index >= 0 and source[index].strip().startswith("#:"):
        comment.insert(0, source[index].strip()[2:].strip())
        index -= 1
    if comment:
        obj.docstring = griffe.Docstring("\n".join(comment), lineno=index + 2, parent=obj)


def _walk(obj: griffe.Object) -> Any:
    yield obj
    for member in obj.members.values():
        if member.is_alias:
            continue
        yield from _walk(member)  # type: ignore[arg-type]


def convert(text: str, obj: griffe.Object) -> str:
    """The Markdown form of one docstring of ``obj``."""
    text = _ROLE.sub(lambda m: _role(m, obj), text)
    return _blocks(text)


def _role(match: re.Match[str], obj: griffe.Object) -> str:
    target = match["target"].strip().removesuffix("()")
    shown = target.rsplit(".", 1)[-1] if match["tilde"] else target
    path = _resolve(target, obj)
    if path is None:
        _log.info("docstring of %s: %r is not a documented object; shown as plain code", obj.path, target)
        return f"`{shown}`"
    return f"[`{shown}`][{path}]"


def _resolve(target: str, obj: griffe.Object) -> str | None:
    """The canonical path of ``target`` as seen from ``obj``, or None."""
    first, _, rest = target.partition(".")
    scope: griffe.Object = obj
    path: str | None = None
    try:
        path = scope.resolve(first)
    except (griffe.NameResolutionError, AttributeError):
        if target.startswith("nextword"):
            path = first
    if path is None:
        return None
    if rest:
        path = f"{path}.{rest}"
    try:
        found = obj.modules_collection.get_member(path)
    except (KeyError, ValueError, AttributeError):
        return None
    try:
        return str(found.final_target.path) if found.is_alias else str(found.path)
    except griffe.AliasResolutionError:
        return None


def _blocks(text: str) -> str:
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith(">>>"):
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}```pycon")
            while i < len(lines) and lines[i].strip() and lines[i].startswith(indent):
                out.append(lines[i])
                i += 1
            out.append(f"{indent}```")
            continue
        if line.rstrip().endswith("::"):
            stripped = line.rstrip()[:-2].rstrip()
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{stripped}:" if stripped.strip() else "")
            i += 1
            block: list[str] = []
            while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > len(indent)):
                block.append(lines[i])
                i += 1
            while block and not block[-1].strip():  # trailing blank lines stay outside the block
                i -= 1
                block.pop()
            while block and not block[0].strip():
                block.pop(0)
            cut = min((_indent(b) for b in block if b.strip()), default=0)
            out.append("")
            out.append(f"{indent}```{_language(block)}")
            out.extend(f"{indent}{b[cut:]}" if b.strip() else "" for b in block)
            out.append(f"{indent}```")
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _language(body: list[str]) -> str:
    first = body[0].strip() if body else ""
    if first.startswith("[") or re.match(r"^[\w.-]+\s*=\s*\S", first) and not re.search(r"\(|import ", first):
        return "toml"
    return "python"
