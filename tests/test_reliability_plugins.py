"""Reliability battery: broken and hostile plugins, installed as real distributions (entry points).

Every kind of plugin failure is listed by ``nextword backends`` as unusable with its reason, and
nothing else changes: the built-in backends keep working and keep their names, every CLI command
and ``--help`` still work, no traceback is printed (issue 13, defect 4).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import nextword
from nextword import BackendSpec, hookimpl

# module name -> source; each is installed as its own distribution with one entry point
PLUGINS = {
    "np_import_error": "raise RuntimeError('plugin import exploded')",
    "np_import_exit": "import sys\nsys.exit(3)",
    "np_register_raises": """
        import nextword
        @nextword.hookimpl
        def register_backends(register):
            raise ValueError('cannot register today')
    """,
    "np_register_exits": """
        import sys, nextword
        @nextword.hookimpl
        def register_backends(register):
            sys.exit('bye from register_backends')
    """,
    "np_not_a_spec": """
        import nextword
        @nextword.hookimpl
        def register_backends(register):
            register({'name': 'dictbackend'})
    """,
    "np_steals_hf": """
        import nextword
        @nextword.hookimpl
        def register_backends(register):
            register(nextword.BackendSpec(name='hf', load=lambda model, **o: None, default_model='x'))
    """,
    "np_bad_signature": """
        import nextword
        @nextword.hookimpl
        def register_backends(register, unknown_argument):
            pass
    """,
    "np_check_raises": """
        import nextword
        def check():
            raise OSError('no GPU driver')
        @nextword.hookimpl
        def register_backends(register):
            spec = nextword.BackendSpec(name='checkfails', load=lambda model, **o: None, default_model='x', check=check)
            register(spec)
    """,
    "np_load_exits": """
        import sys, nextword
        def load(model, **options):
            sys.exit(4)
        @nextword.hookimpl
        def register_backends(register):
            register(nextword.BackendSpec(name='exitload', load=load, default_model='x'))
    """,
    "np_load_not_generator": """
        import nextword
        @nextword.hookimpl
        def register_backends(register):
            register(nextword.BackendSpec(name='notagen', load=lambda model, **o: 42, default_model='x'))
    """,
    "np_commands_raise": """
        import nextword
        @nextword.hookimpl
        def register_commands(cli):
            import click
            @cli.command('halfadded')
            def halfadded():
                pass
            raise KeyError('commands broke')
    """,
    "np_commands_exit": """
        import sys, nextword
        @nextword.hookimpl
        def register_commands(cli):
            sys.exit(5)
    """,
    "np_trainer_raises": """
        import nextword
        @nextword.hookimpl
        def register_trainers(register):
            raise RuntimeError('no trainer today')
    """,
    "np_exporter_steals": """
        import nextword
        from nextword._tuning.specs import ExporterSpec
        @nextword.hookimpl
        def register_exporters(register):
            register(ExporterSpec(name='gguf', types=('f32',), export=None, verify=None))
    """,
    "np_commands_steal": """
        import click, nextword
        @nextword.hookimpl
        def register_commands(cli):
            @cli.command('generate')
            def generate():
                click.echo('hijacked')
            @cli.command('plugin-hello')
            def hello():
                click.echo('hello from a plugin')
    """,
}

# entry name -> what its reason must say
EXPECTED_REASONS = {
    "np_import_error": "import of 'np_import_error' failed: RuntimeError: plugin import exploded",
    "np_import_exit": "import of 'np_import_exit' failed: it called sys.exit(3)",
    "np_register_raises": "register_backends failed: ValueError: cannot register today",
    "np_register_exits": "register_backends failed: it called sys.exit('bye from register_backends')",
    "np_not_a_spec": "register_backends registered dict, not a BackendSpec",
    "np_steals_hf": "the backend name 'hf', which the built-in plugin 'hf' already holds",
    "np_bad_signature": "registration failed",
    "checkfails": "availability check failed: OSError: no GPU driver",
    "np_commands_raise": "register_commands failed, so its commands are not available: KeyError: 'commands broke'",
    "np_commands_exit": "register_commands failed, so its commands are not available: it called sys.exit(5)",
    "np_commands_steal": "it registers the command name(s) generate, already taken",
    "np_trainer_raises": "register_trainers failed: RuntimeError: no trainer today",
    "np_exporter_steals": "register_exporters registered the name 'gguf', already taken (the first keeps it)",
}


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with every plugin of PLUGINS installed as a distribution (dist-info + module)."""
    site = tmp_path_factory.mktemp("plugin-site")
    for module, source in PLUGINS.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source).strip() + "\n")
        info = site / f"{module}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[nextword]\n{module} = {module}\n")
    return site


def _run(site: Path, *args: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    for name in ("NEXTWORD_BACKEND", "NEXTWORD_MODEL", "NEXTWORD_CONFIG", "NEXTWORD_DEBUG"):
        env.pop(name, None)
    command = [sys.executable, "-c", code] if code is not None else [sys.executable, "-m", "nextword", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, cwd=site)


def _no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr


def test_every_broken_plugin_is_listed_unusable_with_its_reason(plugin_site: Path) -> None:
    proc = _run(plugin_site, "backends", "--json")
    assert proc.returncode == 0, proc.stderr
    _no_traceback(proc)
    infos: dict[str, dict[str, Any]] = {i["name"]: i for i in json.loads(proc.stdout)}
    for name, reason in EXPECTED_REASONS.items():
        assert name in infos, f"{name} is not listed"
        assert infos[name]["usable"] is False, name
        assert reason in infos[name]["reason"], (name, infos[name]["reason"])
    # the built-ins keep their names and their plugins
    assert infos["hf"]["plugin"] == "hf" and infos["llamacpp"]["plugin"] == "llamacpp"
    assert infos["hf"]["usable"] and infos["llamacpp"]["usable"]
    # a plugin that failed registers nothing at all
    assert "dictbackend" not in infos


def test_help_and_every_builtin_command_survive_broken_plugins(plugin_site: Path) -> None:
    helped = _run(plugin_site, "--help")
    assert helped.returncode == 0, helped.stderr
    _no_traceback(helped)
    for command in ("generate", "predict", "explain", "backends", "config", "plugin-hello"):
        assert command in helped.stdout
    assert "halfadded" not in helped.stdout  # the failing plugin's partial additions are undone
    # the built-in generate was not replaced by the plugin's
    usage = _run(plugin_site, "generate", "--help")
    assert usage.returncode == 0 and "PROMPT" in usage.stdout and "hijacked" not in usage.stdout
    # a well-behaved command of the same plugin still works
    hello = _run(plugin_site, "plugin-hello")
    assert hello.returncode == 0 and hello.stdout.strip() == "hello from a plugin"


@pytest.mark.parametrize(
    ("backend", "needle"),
    [
        ("exitload", "the 'exitload' backend could not load model 'x': called sys.exit(4)"),
        ("notagen", "returned int, which does not implement the nextword.Generator protocol"),
        ("checkfails", "is installed but cannot be used: availability check failed: OSError: no GPU driver"),
        ("np_import_exit", "the plugin for backend 'np_import_exit' is broken: import of 'np_import_exit' failed"),
    ],
)
def test_using_a_broken_backend_is_one_error_line(plugin_site: Path, backend: str, needle: str) -> None:
    proc = _run(plugin_site, "generate", "hello", "-b", backend, "--max-new-tokens", "2")
    assert proc.returncode == 1
    _no_traceback(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], proc.stderr


def test_the_api_survives_a_plugin_that_exits_on_import(plugin_site: Path) -> None:
    code = textwrap.dedent(
        """
        import nextword
        from nextword._tuning.extensions import exporters, trainers
        export = exporters()['gguf']
        print(sorted(trainers()) == ['hf'], export.types != ('f32',) and export.export is not None)
        names = {b.name: b.usable for b in nextword.backends()}
        print(names['hf'], names['llamacpp'], names['np_import_exit'])
        try:
            nextword.load('exitload')
        except nextword.ModelLoadError as exc:
            print('ModelLoadError', 'sys.exit(4)' in str(exc))
        """
    )
    proc = _run(plugin_site, code=code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "True", "True", "True", "False", "ModelLoadError", "True"]


class _Steals:
    @hookimpl
    def register_backends(self, register: Any) -> None:
        register(BackendSpec(name="llamacpp", load=lambda model, **o: None, default_model="x"))


def test_registering_a_builtin_name_at_run_time_is_refused(plugin_site: Path) -> None:
    with pytest.raises(nextword.InvalidConfig, match="which the built-in plugin 'llamacpp' already holds"):
        nextword.register_plugin(_Steals(), name="steals-llamacpp")
    assert {b.name: b.plugin for b in nextword.backends()}["llamacpp"] == "llamacpp"
