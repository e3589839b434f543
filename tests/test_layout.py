"""The package layout: every module imports on its own (no import cycle), and no module is hidden
behind a function of the same name."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import nextword

ROOT = Path(__file__).resolve().parents[1]


def _modules() -> list[str]:
    names: list[str] = []
    for package, path in (("nextword", ROOT / "nextword"), *((p.name, p) for p in (ROOT / "plugins").iterdir())):
        if not (path / "__init__.py").is_file():
            continue
        names.append(package)
        names.extend(m.name for m in pkgutil.walk_packages([str(path)], prefix=f"{package}."))
    return sorted(n for n in names if not n.endswith(".__main__"))  # __main__ runs the CLI


MODULES = _modules()


# Run in a fresh interpreter: third-party dependencies are imported once, then each module is
# imported first in a forked child, so a cycle shows up whichever module of it comes first.
_IMPORT_EACH = """
import importlib, os, sys, traceback
for dep in ("numpy", "click", "rich", "pluggy", "platformdirs", "torch", "transformers", "llama_cpp", "gguf"):
    try:
        importlib.import_module(dep)
    except Exception:
        pass
assert not [m for m in sys.modules if m.split(".")[0] in ("nextword", "nextword_hf", "nextword_llamacpp")]
failed = []
for name in sys.argv[1:]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            importlib.import_module(name)
            code = 0
        except BaseException:
            os.write(w, traceback.format_exc().strip().splitlines()[-1].encode())
            code = 1
        os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as pipe:
        message = pipe.read().decode(errors="replace")
    if os.waitpid(pid, 0)[1] != 0:
        failed.append(name + ": " + message)
print("\\n".join(failed))
"""


@pytest.mark.slow
def test_every_module_imports_on_its_own() -> None:
    """Each module of the core and the built-in plugins imports when it is the first of them to
    be imported: no import cycle, and no module that only works after another was imported."""
    assert "nextword.cli" in MODULES and "nextword_llamacpp.plugin" in MODULES
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_EACH, *MODULES], capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"modules that fail to import first:\n{result.stdout}"


@pytest.mark.parametrize("name", ["explain", "generate", "predict_next", "score", "stream", "load"])
def test_public_functions_do_not_hide_modules(name: str) -> None:
    """``nextword.<function>`` is the function, and no submodule of that name exists to be shadowed."""
    assert callable(getattr(nextword, name))
    assert f"nextword.{name}" not in MODULES


def test_explanation_module_is_reachable() -> None:
    import nextword._analysis.explanation as explanation

    assert explanation.explain is nextword.explain
    assert callable(explanation.to_html) and callable(explanation.render_terminal)


def test_llamacpp_plugin_does_not_import_the_converter() -> None:
    """Registering the llamacpp backend (and its ``convert`` command's type list) reads only the
    converter's list of types, not the converter."""
    code = (
        "import sys, nextword, nextword_llamacpp.plugin, nextword_llamacpp.commands\n"
        "nextword.backends()\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('nextword_llamacpp.convert'))\n"
        "print(' '.join(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["nextword_llamacpp.convert", "nextword_llamacpp.convert.gguf_types"]


def test_cli_commands_are_module_level_objects() -> None:
    """Each built-in command is a module-level click command of its own module, added to the group."""
    import click

    from nextword.cli import cli, generation, inspection, words

    for module, name in [
        (generation, "generate"),
        (words, "predict"),
        (words, "explain"),
        (inspection, "backends"),
        (inspection, "config"),
    ]:
        command = getattr(module, name)
        assert isinstance(command, click.Command) and cli.commands[name] is command


def test_stream_returns_a_public_type(hf_gen: nextword.Generator) -> None:
    stream = nextword.stream(
        "I love cats", backend="hf", model=hf_gen.model, options={"device": "cpu"}, max_new_tokens=3
    )
    assert isinstance(stream, nextword.GenerationStream)
    assert stream.text() == stream.result.text and stream.result.settings.backend == "hf"


def test_the_pytest_plugin_imports_nothing_heavy() -> None:
    """Loading nextword's pytest plugin (the ``pytest11`` entry point, active in every pytest run
    where nextword is installed) imports no engine, no model builder and not the suite."""
    code = (
        "import sys, nextword.testing.pytest_plugin as p\n"
        "assert {'gpt2_vocab', 'tiny_gpt2_dir', 'gemma_gguf'} <= set(p.__all__)\n"
        "heavy = ('torch', 'transformers', 'llama_cpp', 'gguf', 'nextword.testing.conformance',\n"
        "         'nextword.testing.models', 'nextword_hf', 'nextword_llamacpp')\n"
        "print(' '.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == ""
    from importlib.metadata import entry_points

    assert [e.value for e in entry_points(group="pytest11") if e.name == "nextword"] == [
        "nextword.testing.pytest_plugin"
    ]


def test_the_gpt2_vocabulary_is_never_downloaded_at_test_time(tmp_path: Path) -> None:
    from nextword.testing.assets import AssetUnavailable, gpt2_vocab_files

    with pytest.raises(AssetUnavailable, match="never downloads.*python -m tests.assets"):
        gpt2_vocab_files(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_the_testing_kit_knows_nothing_of_llama_cpp() -> None:
    """Everything under nextword/testing/ works without llama.cpp and gguf, and fetches nothing:
    where the asset files come from is the project's business (tests/assets.py here)."""
    banned = {"llama_cpp", "gguf", "nextword_llamacpp", "subprocess", "urllib", "http", "tarfile", "zipfile"}
    kit = sorted((ROOT / "nextword" / "testing").glob("*.py"))
    assert ROOT / "nextword" / "testing" / "assets.py" in kit
    found: dict[str, set[str]] = {}
    for path in kit:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                roots = {node.module.split(".")[0]}
            else:
                continue
            if roots & banned:
                found.setdefault(path.name, set()).update(roots & banned)
        text = path.read_text(encoding="utf-8")
        for word in ("ggml", "sdist", "pip download"):
            if word in text:
                found.setdefault(path.name, set()).add(word)
    assert found == {}


# ---- the public faces and the backend contract ---------------------------------------------------

PUBLIC_FACES = {"nextword", "nextword.backend", "nextword.errors", "nextword.testing"}


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute import of nextword in ``path``."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "nextword")
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            if node.module.split(".")[0] == "nextword":
                out.append((node.lineno, node.module))
    return out


def test_plugins_import_the_core_only_through_its_public_faces() -> None:
    """The built-in backends (and the documented example plugin) use only what a third-party
    plugin can: ``nextword``, ``nextword.backend``, ``nextword.errors`` and ``nextword.testing``."""
    files = [*(ROOT / "plugins").rglob("*.py"), *(ROOT / "docs" / "examples").rglob("*.py")]
    assert any(f.parts[-2:] == ("nextword_llamacpp", "generator.py") for f in files)
    bad = [
        f"{f.relative_to(ROOT)}:{line}: {module}"
        for f in files
        for line, module in _imports(f)
        if module not in PUBLIC_FACES and not module.startswith("nextword.testing.")
    ]
    assert bad == []


_PROBED = re.compile(r"\b(gen|generator|generators|inner|caps|capabilities)\b")


def test_no_generator_is_probed_for_optional_features() -> None:
    """Optional engine features are declared methods with working defaults on ``BaseGenerator``:
    the core, the server, the CLI and the plugins call them, never ``getattr``/``hasattr`` a
    generator or its capabilities to find out whether they exist."""
    found: list[str] = []
    for f in [*(ROOT / "nextword").rglob("*.py"), *(ROOT / "plugins").rglob("*.py")]:
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr")
                and node.args
                and _PROBED.search(ast.unparse(node.args[0]))
            ):
                found.append(f"{f.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert found == []


def test_import_nextword_loads_nothing_it_does_not_need() -> None:
    """``import nextword`` loads the error hierarchy and the table of lazily loaded names only:
    no asyncio, numpy, pluggy, registry or word search until a name that needs them is used."""
    code = (
        "import sys; before = set(sys.modules); import nextword; new = set(sys.modules) - before\n"
        "print(' '.join(sorted(new)))\n"
        "nextword.DecodingConfig; nextword.predict_next\n"
        "print('numpy' in sys.modules, 'nextword._api.calls' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    first, second = out.stdout.splitlines()
    new = set(first.split())
    assert {m for m in new if m.startswith("nextword")} == {"nextword", "nextword.errors"}, first
    assert not new & {"asyncio", "numpy", "pluggy", "click", "rich", "platformdirs", "threading"}, first
    assert second == "True True"  # the names still load, on first use


def test_every_public_name_resolves_and_is_typed() -> None:
    """Each name in ``nextword.__all__`` resolves (lazily), and the table of lazy names agrees
    with the imports that type checkers and the docs read."""
    for name in nextword.__all__:
        assert getattr(nextword, name) is not None, name
    tree = ast.parse((ROOT / "nextword" / "__init__.py").read_text(encoding="utf-8"))
    typed: dict[str, str] = {}
    for block in ast.walk(tree):
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test):
            for stmt in block.body:
                if isinstance(stmt, ast.ImportFrom) and stmt.module:
                    typed.update({alias.asname or alias.name: stmt.module for alias in stmt.names})
    assert typed == nextword._LAZY  # noqa: SLF001 - the table itself is what is checked
    assert set(nextword._LAZY) <= set(nextword.__all__)
    backend = importlib.import_module("nextword.backend")
    for name in backend.__all__:
        assert getattr(backend, name) is not None, name


def _code_lines(node: ast.AST, lines: list[str]) -> int:
    """Lines of ``node`` that hold code: not blank, not a comment, not a docstring."""
    docs: set[int] = set()
    for inner in ast.walk(node):
        body = getattr(inner, "body", None)
        if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and body:
            first = body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docs.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    span = range(getattr(node, "lineno", 1), (getattr(node, "end_lineno", None) or 1) + 1)
    return sum(1 for i in span if i not in docs and lines[i - 1].strip() and not lines[i - 1].strip().startswith("#"))


def test_modules_and_functions_stay_small() -> None:
    """Rooms of one job each: no module of the core or the plugins over 600 lines, no function
    over 80 lines of code."""
    big: list[str] = []
    for f in [*(ROOT / "nextword").rglob("*.py"), *(ROOT / "plugins").rglob("*.py")]:
        text = f.read_text(encoding="utf-8")
        lines = text.split("\n")
        if len(lines) > 600:
            big.append(f"{f.relative_to(ROOT)}: {len(lines)} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _code_lines(node, lines) > 80:
                big.append(f"{f.relative_to(ROOT)}:{node.lineno} {node.name}: {_code_lines(node, lines)} code lines")
    assert big == []
