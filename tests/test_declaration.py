"""A backend's name and capabilities are declared once, on its BackendSpec; generators report
them and nextword checks that they do when it loads a model."""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

import nextword
from nextword import BackendSpec, BaseGenerator, Capabilities, ModelLoadError, Support
from nextword.testing.pytest_fixtures import require_module


class _Echo(BaseGenerator):
    closed = 0

    @property
    def context_length(self) -> int:
        return 64

    @property
    def eos_token_ids(self) -> frozenset[int]:
        return frozenset({0})

    def tokenize(self, text: str) -> list[int]:
        return list(text.encode())

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return bytes(token_ids).decode(errors="replace")

    def next_token_logits(self, token_ids: Sequence[int]) -> npt.NDArray[np.float32]:
        return np.zeros(256, dtype=np.float32)

    def close(self) -> None:
        type(self).closed += 1


NO_STOP = Capabilities.all(Support.EMULATED, stop=Support.UNSUPPORTED)


def _plugin(spec: BackendSpec) -> object:
    class Plugin:
        @nextword.hookimpl
        def register_backends(self, register: Callable[[BackendSpec], None]) -> None:
            register(spec)

    return Plugin()


@pytest.fixture
def registered() -> Iterator[Callable[[BackendSpec], None]]:
    names: list[str] = []

    def add(spec: BackendSpec) -> None:
        names.append(nextword.register_plugin(_plugin(spec), name=f"decl-{spec.name}"))

    yield add
    for name in names:
        nextword.unregister_plugin(name)
    nextword.unload()


def test_a_generator_given_the_spec_reports_it(registered: Callable[[BackendSpec], None]) -> None:
    spec = BackendSpec(
        name="decl-ok", load=lambda model: _Echo(model, spec=spec), default_model="m", capabilities=NO_STOP
    )
    registered(spec)
    gen = nextword.load("decl-ok")
    assert gen.backend == "decl-ok" and gen.settings.backend == "decl-ok"
    assert gen.capabilities == NO_STOP
    with pytest.raises(nextword.UnsupportedOption):
        gen.generate("hi", max_new_tokens=2, stop=["x"])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda model: _Echo(model), "reports backend 'base'"),
        (lambda model: _Echo(model, spec=BackendSpec(name="decl-bad", load=print, default_model="m")), "capabilities"),
    ],
)
def test_a_generator_that_disagrees_with_its_spec_is_refused(
    registered: Callable[[BackendSpec], None], make: Callable[[str], _Echo], message: str
) -> None:
    registered(BackendSpec(name="decl-bad", load=make, default_model="m", capabilities=NO_STOP))
    before = _Echo.closed
    with pytest.raises(ModelLoadError, match=message):
        nextword.load("decl-bad")
    assert _Echo.closed == before + 1  # the refused generator was closed, not leaked


def test_built_in_generators_take_their_identity_from_the_spec() -> None:
    """Neither built-in generator class declares a name or capabilities of its own."""
    for module, name in (
        ("nextword_hf.generator", "HFGenerator"),
        ("nextword_llamacpp.generator", "LlamaCppGenerator"),
    ):
        cls = vars(require_module(module, "install nextword[all]"))[name]
        assert "backend_name" not in vars(cls) and "capabilities" not in vars(cls)


PLUGINS = Path(__file__).resolve().parents[1] / "plugins"


def _imported_modules(source: str, package_parts: tuple[str, ...]) -> set[str]:
    """Absolute names of what ``source`` (a module inside the package ``package_parts``) imports,
    at any depth (inside functions too), relative imports resolved."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = list(package_parts[: len(package_parts) - node.level + 1]) if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("package", ["nextword_hf", "nextword_llamacpp", "nextword_openai"])
def test_the_declaration_flows_one_way(package: str) -> None:
    """Only the plugin module knows its spec: it imports the generator and hands the spec on. No
    other module of the package imports the plugin module, not even inside a function (a loader
    that fell back on the plugin's SPEC would be a hidden plugin <-> generator cycle)."""
    # The check sees a lazy import, absolute or relative, from the package or a subpackage.
    target = f"{package}.plugin"
    assert target in _imported_modules(f"def f():\n    from {target} import SPEC\n", (package,))
    assert target in _imported_modules("def f():\n    from .plugin import SPEC\n", (package,))
    assert target in _imported_modules("from .. import plugin\n", (package, "convert"))
    modules = sorted((PLUGINS / package).rglob("*.py"))
    assert PLUGINS / package / "plugin.py" in modules
    offenders = [
        str(path.relative_to(PLUGINS))
        for path in modules
        if path.name != "plugin.py"
        and target
        in _imported_modules(path.read_text(encoding="utf-8"), path.relative_to(PLUGINS).with_suffix("").parts[:-1])
    ]
    assert offenders == []
