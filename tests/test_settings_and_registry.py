"""Settings resolution, the plugin registry, and the import-time promise."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

import nextword
from nextword import BackendNotFound, BackendSpec, InvalidConfig
from nextword._api.settings import resolve


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_defaults(tmp_path: Path) -> None:
    r = resolve(cwd=tmp_path)
    assert r.backend == "hf" and r.model is None
    assert r.sources["backend"] == "default"


def test_precedence_argument_env_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user = _write(tmp_path / "user.toml", 'backend = "user-b"\nmodel = "user-m"\n[decoding]\ntop_k = 3\n')
    monkeypatch.setattr("nextword._api.settings.user_config_path", lambda: user)
    r = resolve(cwd=tmp_path)
    assert (r.backend, r.model, r.decoding) == ("user-b", "user-m", {"top_k": 3})

    _write(tmp_path / "pyproject.toml", '[project]\nname="x"\n[tool.nextword]\nmodel = "py-m"\n')
    r = resolve(cwd=tmp_path)
    assert (r.backend, r.model) == ("user-b", "py-m")
    assert "[tool.nextword]" in r.sources["model"]

    _write(tmp_path / "nextword.toml", 'model = "local-m"\n[backends.user-b]\ndevice = "cpu"\n')
    r = resolve(cwd=tmp_path)
    assert r.model == "local-m" and r.options == {"device": "cpu"}
    assert r.sources["model"].endswith("nextword.toml")

    monkeypatch.setenv("NEXTWORD_MODEL", "env-m")
    monkeypatch.setenv("NEXTWORD_BACKEND", "env-b")
    r = resolve(cwd=tmp_path)
    assert (r.backend, r.model) == ("env-b", "env-m")
    assert r.options == {}  # the [backends.user-b] table does not apply to env-b
    assert r.sources["model"] == "environment NEXTWORD_MODEL"

    r = resolve("arg-b", "arg-m", {"threads": 2}, {"top_k": 9}, cwd=tmp_path)
    assert (r.backend, r.model, r.options, r.decoding) == ("arg-b", "arg-m", {"threads": 2}, {"top_k": 9})
    assert r.sources["decoding.top_k"] == "argument"


def test_nextword_config_env_replaces_discovery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path / "nextword.toml", 'model = "ignored"\n')
    cfg = _write(tmp_path / "other.toml", 'model = "chosen"\n')
    monkeypatch.setenv("NEXTWORD_CONFIG", str(cfg))
    assert resolve(cwd=tmp_path).model == "chosen"
    monkeypatch.setenv("NEXTWORD_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(InvalidConfig, match="does not name an existing file"):
        resolve(cwd=tmp_path)


def test_bad_config_files(tmp_path: Path) -> None:
    _write(tmp_path / "nextword.toml", "backend = \n")
    with pytest.raises(InvalidConfig, match="not valid TOML"):
        resolve(cwd=tmp_path)
    _write(tmp_path / "nextword.toml", 'bakend = "hf"\n')
    with pytest.raises(InvalidConfig, match="unknown setting"):
        resolve(cwd=tmp_path)
    _write(tmp_path / "nextword.toml", "decoding = 3\n")
    with pytest.raises(InvalidConfig, match="must be a table"):
        resolve(cwd=tmp_path)


def test_config_file_decoding_defaults_reach_generate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bytelm_plugin: str
) -> None:
    _write(tmp_path / "nextword.toml", 'backend = "bytelm"\nmodel = "5"\n[decoding]\nmax_new_tokens = 7\n')
    monkeypatch.chdir(tmp_path)
    result = nextword.generate("abc")
    assert result.settings.backend == "bytelm" and result.settings.model == "5"
    assert result.settings.decoding.max_new_tokens == 7
    assert result.token_ids == nextword.load("bytelm", "5").generate("abc", max_new_tokens=7).token_ids
    assert result.settings.sources["decoding.max_new_tokens"].endswith("nextword.toml")
    # An explicit argument wins over the file.
    assert nextword.generate("abc", max_new_tokens=2).settings.decoding.max_new_tokens == 2
    # A bad value in the file is reported with the field name.
    _write(tmp_path / "nextword.toml", 'backend = "bytelm"\n[decoding]\ntop_p = 7\n')
    with pytest.raises(InvalidConfig, match="top_p"):
        nextword.generate("abc")


def test_unknown_backend_suggests(bytelm_plugin: str) -> None:
    with pytest.raises(BackendNotFound, match="did you mean 'bytelm'"):
        nextword.generate("x", backend="bytelmm")
    with pytest.raises(BackendNotFound, match="installed backends"):
        nextword.load("nope")


def test_backends_lists_hf() -> None:
    names = {b.name: b for b in nextword.backends()}
    assert names["hf"].usable and names["hf"].default_model == "gpt2"


class _BrokenPlugin:
    @nextword.hookimpl
    def register_backends(self, register: Callable[[BackendSpec], None]) -> None:
        raise RuntimeError("boom")


class _UnusablePlugin:
    @nextword.hookimpl
    def register_backends(self, register: Callable[[BackendSpec], None]) -> None:
        register(BackendSpec(name="needs-gpu", load=lambda model: None, default_model="m", check=lambda: "no GPU here"))


def test_broken_and_unusable_plugins_are_reported_not_raised() -> None:
    with pytest.raises(InvalidConfig, match="boom"):
        nextword.register_plugin(_BrokenPlugin(), name="broken")
    nextword.register_plugin(_UnusablePlugin(), name="unusable")
    try:
        infos = {b.name: b for b in nextword.backends()}
        assert not infos["broken"].usable and "boom" in (infos["broken"].reason or "")
        assert not infos["needs-gpu"].usable and infos["needs-gpu"].reason == "no GPU here"
        with pytest.raises(BackendNotFound, match="cannot be used: no GPU here"):
            nextword.load("needs-gpu")
    finally:
        nextword.unregister_plugin("unusable")
        nextword.unregister_plugin("broken")


def test_a_load_returning_a_non_generator_is_reported() -> None:
    class Bad:
        @nextword.hookimpl
        def register_backends(self, register: Callable[[BackendSpec], None]) -> None:
            register(BackendSpec(name="bad-load", load=lambda model: object(), default_model="m"))

    nextword.register_plugin(Bad(), name="bad-load")
    try:
        with pytest.raises(nextword.ModelLoadError, match="does not implement"):
            nextword.load("bad-load")
    finally:
        nextword.unregister_plugin("bad-load")


def test_import_does_not_import_torch() -> None:
    code = "import sys, nextword; nextword.backends(); print('torch' in sys.modules, 'llama_cpp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    timing = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import nextword"], capture_output=True, text=True
    )
    assert timing.returncode == 0
    assert not [line for line in timing.stderr.splitlines() if line.rstrip().endswith(("torch", "transformers"))]


def test_a_plugin_whose_import_fails_does_not_break_import(tmp_path: Path) -> None:
    """An entry point that cannot be imported shows up in backends() with the reason."""
    dist = tmp_path / "brokenplugin-0.0.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenplugin\nVersion: 0.0.0\n")
    (dist / "entry_points.txt").write_text("[nextword]\nbrokenthing = no_such_module_xyz.plugin\n")
    code = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import nextword; "
        "b = {i.name: i for i in nextword.backends()}; print(b['brokenthing'].usable, b['brokenthing'].reason)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("False import of 'no_such_module_xyz.plugin' failed: ModuleNotFoundError")


def test_a_length_limit_replaces_the_other_from_a_lower_layer(tmp_path: Path) -> None:
    _write(tmp_path / "nextword.toml", "[decoding]\nmax_new_tokens = 10\n")
    r = resolve(decoding={"max_length": 5}, cwd=tmp_path)
    assert r.decoding == {"max_length": 5}
    assert "decoding.max_new_tokens" not in r.sources
    assert resolve(cwd=tmp_path).decoding == {"max_new_tokens": 10}


class _Provides:
    def __init__(self, *names: object) -> None:
        self.names = names

    @nextword.hookimpl
    def register_backends(self, register: Callable[[BackendSpec], None]) -> None:
        for name in self.names:
            register(
                BackendSpec(name=name, load=lambda model: None, default_model="m") if isinstance(name, str) else name
            )  # type: ignore[arg-type]


def test_registration_is_all_or_nothing_and_names_are_unique(bytelm_plugin: str) -> None:
    with pytest.raises(InvalidConfig, match="not a BackendSpec"):
        nextword.register_plugin(_Provides("zz-ok", 42), name="half")
    assert "zz-ok" not in {b.name for b in nextword.backends() if b.usable}
    with pytest.raises(BackendNotFound):
        nextword.load("zz-ok")
    # The failed plugin left nothing behind: the same name can be registered again.
    nextword.register_plugin(_Provides("zz-ok"), name="half")
    nextword.unregister_plugin("half")
    with pytest.raises(InvalidConfig, match="which plugin 'bytelm-plugin' already holds"):
        nextword.register_plugin(_Provides("bytelm"), name="imposter")
    assert nextword.load("bytelm", "3").backend == "bytelm"  # the original is untouched


def test_a_reregistered_backend_does_not_reuse_the_old_model(bytelm_plugin: str) -> None:
    from tests.thirdparty.bytelm import BytelmPlugin

    first = nextword.load("bytelm", "0")
    nextword.unregister_plugin(bytelm_plugin)
    try:
        nextword.register_plugin(BytelmPlugin(), name="bytelm-again")
        assert nextword.load("bytelm", "0") is not first
    finally:
        nextword.unregister_plugin("bytelm-again")
        nextword.register_plugin(BytelmPlugin(), name=bytelm_plugin)
