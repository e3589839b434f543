"""Reliability battery: bad input through the API and the CLI, on both built-in backends.

Each case asserts the :class:`~nextword.NextwordError` subclass, that the message names the
problem, and that the process survived (the generator still answers afterwards); CLI cases also
assert the exit status and that no traceback was printed. Anything that could take a large amount
of memory runs in a subprocess with a memory limit (issue 13, "the battery").
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import nextword
from nextword import (
    BackendNotFound,
    ContextLengthExceeded,
    InvalidConfig,
    InvalidInput,
    ModelLoadError,
    NextwordError,
)
from nextword.cli import main

BACKENDS = ("hf", "llamacpp")
NEXTWORD = [sys.executable, "-m", "nextword"]


@pytest.fixture(scope="module")
def models(tiny_gpt2_dir: Path, tiny_gguf: Callable[[str], Path]) -> dict[str, str]:
    """The tiny GPT-2 on each backend (loaded once; cached by nextword.load)."""
    paths = {"hf": str(tiny_gpt2_dir), "llamacpp": str(tiny_gguf("f32"))}
    nextword.load("hf", paths["hf"], device="cpu")
    nextword.load("llamacpp", paths["llamacpp"])
    return paths


def _options(backend: str) -> dict[str, Any]:
    return {"device": "cpu"} if backend == "hf" else {}


# ---- decoding options: every one out of range and of the wrong type ----------------------------

DECODING_CASES: list[tuple[dict[str, Any], str]] = [
    ({"max_new_tokens": -1}, "max_new_tokens must be an integer >= 0"),
    ({"max_new_tokens": 2.5}, "max_new_tokens must be an integer"),
    ({"max_new_tokens": "10"}, "max_new_tokens must be an integer"),
    ({"max_length": 0}, "max_length must be an integer >= 1"),
    ({"max_new_tokens": 3, "max_length": 9}, "set only one"),
    ({"min_new_tokens": -2}, "min_new_tokens must be an integer >= 0"),
    ({"min_new_tokens": 9, "max_new_tokens": 3}, "min_new_tokens=9 is larger than max_new_tokens=3"),
    ({"do_sample": "yes"}, "do_sample must be True, False or None"),
    ({"temperature": -1.0}, "temperature must be a number >= 0.0"),
    ({"temperature": float("inf")}, "temperature must be a number >= 0.0 and finite"),
    ({"temperature": float("nan")}, "temperature must be a number >= 0.0 and finite"),
    ({"temperature": "hot"}, "temperature must be a number"),
    ({"top_k": -5}, "top_k must be an integer >= 0"),
    ({"top_k": 1.5}, "top_k must be an integer"),
    ({"top_p": 0.0}, "top_p must be a number in (0.0, 1.0]"),
    ({"top_p": 1.5}, "top_p must be a number in (0.0, 1.0]"),
    ({"min_p": -0.1}, "min_p must be a number in [0.0, 1.0]"),
    ({"typical_p": 2}, "typical_p must be a number in (0.0, 1.0]"),
    ({"repetition_penalty": 0}, "repetition_penalty must be a number > 0.0"),
    ({"repetition_penalty": float("inf")}, "repetition_penalty must be a number > 0.0 and finite"),
    ({"no_repeat_ngram_size": -1}, "no_repeat_ngram_size must be an integer >= 0"),
    ({"num_return_sequences": 0}, "num_return_sequences must be an integer in [1, 256]"),
    ({"num_return_sequences": 10**6, "do_sample": True}, "num_return_sequences must be an integer in [1, 256]"),
    ({"num_return_sequences": 3}, "needs sampling"),
    ({"seed": -1}, "seed must be an integer in [0, 18446744073709551615]"),
    ({"seed": 2**64}, "seed must be an integer in [0, 18446744073709551615]"),
    ({"seed": "42"}, "seed must be an integer"),
    ({"stop": [""]}, "stop strings must be non-empty strings"),
    ({"stop": 7}, "stop must be a string or a list of strings"),
    ({"stop": ["ok", None]}, "stop strings must be non-empty strings"),
    ({"do_sample": False, "top_k": 5}, "only apply when sampling"),
    ({"temprature": 0.5}, "unknown decoding option 'temprature'; did you mean 'temperature'?"),
]


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_bad_decoding_option_is_invalid_config(backend: str, models: dict[str, str]) -> None:
    gen = nextword.load(backend, models[backend], **_options(backend))
    expected = gen.generate("Hello", max_new_tokens=3)
    for options, needle in DECODING_CASES:
        with pytest.raises(InvalidConfig) as err:
            nextword.generate("Hello", backend=backend, model=models[backend], options=_options(backend), **options)
        assert needle in str(err.value), (options, str(err.value))
        with pytest.raises(InvalidConfig):
            gen.stream("Hello", **options)
    assert gen.generate("Hello", max_new_tokens=3) == expected  # still answers, as before


# ---- prompts, texts and other arguments -------------------------------------------------------

ARGUMENT_CASES: list[tuple[str, Callable[[Any], object], type[NextwordError], str]] = [
    ("empty prompt", lambda g: g.generate(""), InvalidInput, "the prompt is empty"),
    ("non-UTF-8 prompt", lambda g: g.generate("caf\udce9"), InvalidInput, "not valid Unicode"),
    ("bytes prompt", lambda g: g.generate(b"Hello"), InvalidInput, "prompt must be a string or a list of strings"),
    ("int prompt", lambda g: g.generate(42), InvalidInput, "prompt must be a string or a list of strings"),
    ("None prompt", lambda g: g.generate(None), InvalidInput, "prompt must be a string or a list of strings"),
    ("empty batch", lambda g: g.generate([]), InvalidInput, "the list of prompts is empty"),
    ("bad item in batch", lambda g: g.generate(["ok", 3]), InvalidInput, "the prompt must be a string, got int"),
    ("stream of a list", lambda g: g.stream(["a", "b"]), InvalidInput, "stream() takes one prompt string"),
    ("prompt too long", lambda g: g.generate("word " * 400), ContextLengthExceeded, "context window holds 256"),
    (
        "prompt plus tokens too long",
        lambda g: g.generate("Hello", max_new_tokens=10**6),
        ContextLengthExceeded,
        "more than the model's context window of 256",
    ),
    (
        "config of the wrong type",
        lambda g: g.generate("Hello", {"top_k": 3}),
        InvalidConfig,
        "must be a DecodingConfig",
    ),
    ("k = 0", lambda g: g.predict_next("Hello", 0), InvalidInput, "k must be a positive integer"),
    ("k too large for words", lambda g: g.predict_next("Hello", 5000), InvalidInput, "k must be at most 100"),
    ("unknown unit", lambda g: g.predict_next("Hello", 3, unit="char"), InvalidInput, "unit must be 'word' or 'token'"),
    ("empty text to score", lambda g: g.score(""), InvalidInput, "the text is empty"),
    ("text too long to score", lambda g: g.score("word " * 400), ContextLengthExceeded, "context window holds 256"),
    ("non-UTF-8 text to score", lambda g: g.score("\ud800abc"), InvalidInput, "not valid Unicode"),
]


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_arguments_raise_named_errors(backend: str, models: dict[str, str]) -> None:
    gen = nextword.load(backend, models[backend], **_options(backend))
    expected = gen.generate("Hello", max_new_tokens=3)
    for label, call, kind, needle in ARGUMENT_CASES:
        with pytest.raises(kind) as err:
            call(gen)
        assert needle in str(err.value), (label, str(err.value))
    assert gen.generate("Hello", max_new_tokens=3) == expected


def test_bad_api_level_arguments(models: dict[str, str]) -> None:
    path = models["llamacpp"]
    cases: list[tuple[Callable[[], object], type[NextwordError], str]] = [
        (lambda: nextword.generate("Hi", backend="hff"), BackendNotFound, "no backend named 'hff'; did you mean 'hf'?"),
        (lambda: nextword.generate("Hi", backend=""), InvalidConfig, "backend must be a non-empty string"),
        (lambda: nextword.generate("Hi", backend="llamacpp", model=""), InvalidConfig, "model must be a non-empty"),
        (lambda: nextword.load("llamacpp", path, n_ctxx=5), InvalidConfig, "n_ctxx"),
        (lambda: nextword.load("hf", path, threads="many"), InvalidConfig, "threads"),
        (lambda: nextword.load("hf", path, dtype="float8"), InvalidConfig, "dtype"),
        (
            lambda: nextword.predict_next("Hi", 3, unit="token", beam_width=4, backend="llamacpp", model=path),
            InvalidInput,
            "do not apply to unit='token'",
        ),
        (
            lambda: nextword.predict_next("Hi", 3, beam_width=10**6, backend="llamacpp", model=path),
            InvalidInput,
            "beam_width must be at most 256",
        ),
    ]
    for call, kind, needle in cases:
        with pytest.raises(kind) as err:
            call()
        assert needle in str(err.value), str(err.value)


# ---- model files: missing, corrupt, truncated, foreign, wrong configs --------------------------


def _write_bytes(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


@pytest.fixture(scope="module")
def bad_models(
    tiny_gpt2_dir: Path, tiny_gguf: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """Broken model files and folders, built from the tiny fixtures."""
    root = tmp_path_factory.mktemp("bad-models")
    good = tiny_gguf("f32").read_bytes()
    out = {
        "missing": str(root / "nowhere" / "model.gguf"),
        "empty": _write_bytes(root / "empty.gguf", b""),
        "truncated": _write_bytes(root / "truncated.gguf", good[: len(good) // 3]),
        "header only": _write_bytes(root / "header.gguf", good[:24]),
        "foreign": _write_bytes(root / "foreign.gguf", b"\x89PNG\r\n\x1a\n" + bytes(4000)),
        "text": _write_bytes(root / "notes.txt", b"not a model"),
    }
    nothing = root / "no-config"
    nothing.mkdir()
    out["folder without config"] = str(nothing)
    for name, edit in {
        "bad json": lambda text: text[: len(text) // 2],
        "bert config": lambda text: json.dumps({**json.loads(text), "model_type": "bert", "architectures": None}),
        "unknown model_type": lambda text: json.dumps({**json.loads(text), "model_type": "no-such-arch"}),
    }.items():
        folder = root / name.replace(" ", "-")
        shutil.copytree(tiny_gpt2_dir, folder)
        config = folder / "config.json"
        config.write_text(edit(config.read_text()))
        out[name] = str(folder)
    missing = root / "missing-tensor"
    shutil.copytree(tiny_gpt2_dir, missing)
    from safetensors.torch import load_file, save_file

    weights = load_file(missing / "model.safetensors")
    del weights["transformer.h.1.mlp.c_fc.weight"]
    weights["stray.weight"] = weights["transformer.ln_f.weight"].clone()
    save_file(weights, missing / "model.safetensors", metadata={"format": "pt"})
    out["missing tensor"] = str(missing)
    return out


MODEL_CASES: list[tuple[str, str, str]] = [
    ("llamacpp", "missing", "no such"),
    ("llamacpp", "empty", "empty.gguf"),
    ("llamacpp", "truncated", "truncated.gguf"),
    ("llamacpp", "header only", "header.gguf"),
    ("llamacpp", "foreign", "foreign.gguf"),
    ("llamacpp", "text", "notes.txt"),
    ("hf", "missing", "no such model file or folder"),
    ("hf", "text", "is a file but not a .gguf file"),
    ("hf", "folder without config", "has no config.json"),
    ("hf", "bad json", "bad-json"),
    ("hf", "unknown model_type", "no-such-arch"),
    ("hf", "bert config", "describes a 'bert' model of"),
    ("hf", "missing tensor", "transformer.h.1.mlp.c_fc.weight"),
    ("hf", "missing tensor", "stray.weight"),
    ("hf", "foreign", "foreign.gguf"),
]


@pytest.mark.parametrize(("backend", "case", "needle"), MODEL_CASES)
def test_broken_models_are_model_load_errors(
    backend: str, case: str, needle: str, bad_models: dict[str, str], models: dict[str, str]
) -> None:
    with pytest.raises(ModelLoadError) as err:
        nextword.load(backend, bad_models[case], **_options(backend))
    assert needle in str(err.value), str(err.value)
    assert nextword.generate("Hi", backend=backend, model=models[backend], max_new_tokens=2).completion_tokens == 2


_LIMITED = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
import nextword
try:
    nextword.load("hf", sys.argv[1], device="cpu")
except nextword.ModelLoadError as exc:
    print("ModelLoadError:", exc)
    sys.exit(0)
print("loaded")
sys.exit(1)
"""


@pytest.mark.slow
def test_a_config_implying_a_huge_model_is_refused_before_allocating(tiny_gpt2_dir: Path, tmp_path: Path) -> None:
    """``model_type: llama`` beside GPT-2 weights implies a default 6.7B-parameter model: refused
    from the sizes alone, in a subprocess whose address space is capped at 3 GiB."""
    folder = tmp_path / "llama-config"
    shutil.copytree(tiny_gpt2_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "llama", "architectures": None}))
    limit = 3 * 1024**3
    proc = subprocess.run(
        [sys.executable, "-c", _LIMITED.format(limit=limit), str(folder)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "describes a 'llama' model of 6.7B parameters" in proc.stdout
    assert resource.getrlimit(resource.RLIMIT_AS)[0] != limit  # the cap applied to the child only


@pytest.mark.slow
def test_hf_reads_a_gguf_that_nextword_wrote_with_a_short_position_table(
    tiny_gguf: Callable[[str], Path], tiny_gpt2_dir: Path
) -> None:
    """The tiny GPT-2 has 256 positions (not GPT-2's 1024): hf loads nextword's own GGUF of it."""
    gen = nextword.load("hf", str(tiny_gguf("f32")), device="cpu")
    assert gen.context_length == 256
    reference = nextword.load("hf", str(tiny_gpt2_dir), device="cpu")
    assert gen.generate("Hello", max_new_tokens=8).token_ids == reference.generate("Hello", max_new_tokens=8).token_ids


# ---- settings files ---------------------------------------------------------------------------

TOML_CASES: list[tuple[str, type[NextwordError], str]] = [
    ("backend = \n", InvalidConfig, "is not valid TOML"),
    ("backend = 3\n", InvalidConfig, "backend must be a non-empty string, got 3"),
    ("[decoding]\nmax_new_tokens = 'ten'\n", InvalidConfig, "max_new_tokens must be an integer"),
    ("[decoding]\ntemperatur = 0.5\n", InvalidConfig, "did you mean 'temperature'"),
    ("decoding = 5\n", InvalidConfig, "'decoding' must be a table"),
    ("backend = 'nope'\n", BackendNotFound, "no backend named 'nope'"),
]


@pytest.mark.parametrize(("text", "kind", "needle"), TOML_CASES)
def test_bad_config_files_are_named_errors(
    text: str, kind: type[NextwordError], needle: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "nextword.toml").write_text(text)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(kind) as err:
        nextword.generate("Hi")
    assert needle in str(err.value), str(err.value)


def test_config_env_naming_a_missing_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NEXTWORD_CONFIG", str(tmp_path / "absent.toml"))
    with pytest.raises(InvalidConfig, match="does not name an existing file"):
        nextword.generate("Hi")


# ---- the CLI: exit status, one line, no traceback ---------------------------------------------


@pytest.fixture
def cli_run(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[..., tuple[int, str, str]]]:
    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    yield run


def test_cli_bad_inputs_exit_with_one_line(
    models: dict[str, str], bad_models: dict[str, str], cli_run: Callable[..., tuple[int, str, str]]
) -> None:
    ll, hf = models["llamacpp"], models["hf"]
    cases: list[tuple[list[str], int, str]] = [
        (["generate", "Hi", "-b", "llamacpp", "-m", ll, "--temperature", "inf"], 1, "temperature must be a number"),
        (["generate", "Hi", "-b", "llamacpp", "-m", ll, "--seed", str(2**64)], 1, "seed must be an integer in"),
        (["generate", "Hi", "-b", "llamacpp", "-m", ll, "--seed", "-1"], 2, "Invalid value for '--seed'"),
        (["generate", "Hi", "-b", "llamacpp", "-m", ll, "--top-k", "many"], 2, "Invalid value for '--top-k'"),
        (["generate", "Hi", "-b", "llamacpp", "-m", ll, "--max-new-tokens", "100000"], 1, "context window"),
        (["generate", "", "-b", "llamacpp", "-m", ll], 1, "the prompt is empty"),
        (["generate", "Hi", "-b", "llamacpp", "-m", bad_models["truncated"]], 1, "truncated.gguf"),
        (["generate", "Hi", "-b", "llamacpp", "-m", bad_models["foreign"]], 1, "foreign.gguf"),
        (["generate", "Hi", "-b", "hf", "-m", bad_models["missing tensor"], "-o", "device=cpu"], 1, "c_fc.weight"),
        (["generate", "Hi", "-b", "hf", "-m", hf, "-o", "device=cpu", "--num-return-sequences", "3"], 1, "sampling"),
        (["generate", "Hi", "-b", "nonesuch"], 1, "no backend named 'nonesuch'"),
        (["generate", "Hi", "-b", "llamacpp", "-m", ll, "-o", "threads"], 2, "expected KEY=VALUE"),
        (["generate", "Hi", "-b", "llamacpp", "-m", ll, "-o", "bogus=1"], 1, "bogus"),
        (["predict", "Hi", "-b", "llamacpp", "-m", ll, "-k", "5000"], 1, "k must be at most 100"),
        (["predict", "Hi", "-b", "llamacpp", "-m", ll, "-k", "0"], 2, "Invalid value for '-k'"),
        (["explain", "", "-b", "llamacpp", "-m", ll], 1, "empty"),
        (["no-such-command"], 2, "No such command"),
    ]
    for argv, status, needle in cases:
        code, out, err = cli_run(*argv)
        assert code == status, (argv, code, err)
        assert "Traceback" not in err + out, argv
        assert needle in err, (argv, err)
        if status == 1:
            assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), (argv, err)
    code, out, _ = cli_run("generate", "Hi", "-b", "llamacpp", "-m", ll, "--max-new-tokens", "2")
    assert code == 0 and out.startswith("Hi")


def test_cli_non_utf8_argument_in_a_subprocess(models: dict[str, str]) -> None:
    """A prompt argument holding bytes that are not UTF-8 (as a shell can pass them)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXTWORD_")}
    env["PYTHONUTF8"] = "1"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "nextword",
            "generate",
            os.fsdecode(b"caf\xe9"),
            "-b",
            "llamacpp",
            "-m",
            models["llamacpp"],
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ") and "not valid Unicode" in proc.stderr


def test_cli_full_and_closed_stdout(models: dict[str, str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXTWORD_")}
    base = [sys.executable, "-m", "nextword", "generate", "Hi", "-b", "llamacpp", "-m", models["llamacpp"]]
    if os.path.exists("/dev/full"):
        with open("/dev/full", "w") as full:
            proc = subprocess.run(base, stdout=full, stderr=subprocess.PIPE, text=True, env=env, timeout=120)
        assert proc.returncode == 1
        assert proc.stderr.strip() == "error: cannot write the output: No space left on device"
    closed = subprocess.run(
        ["bash", "-c", 'exec "$@" >&-', "nextword", *base], stderr=subprocess.PIPE, text=True, env=env, timeout=120
    )
    assert closed.returncode == 1
    assert closed.stderr.strip() == "error: standard output is closed; nothing can be written"


def test_cli_with_a_third_party_plugin_ends_without_a_finalizer_traceback(
    models: dict[str, str], tmp_path: Path
) -> None:
    info = tmp_path / "quietplugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: quietplugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[nextword]\nquietplugin = quietplugin\n")
    (tmp_path / "quietplugin.py").write_text(
        textwrap.dedent(
            """
            import nextword
            @nextword.hookimpl
            def register_backends(register):
                pass
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXTWORD_")}
    env["PYTHONPATH"] = str(tmp_path)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "nextword",
            "generate",
            "Hi",
            "-b",
            "llamacpp",
            "-m",
            models["llamacpp"],
            "--max-new-tokens",
            "2",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Exception ignored" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
