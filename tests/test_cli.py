"""The command line: commands, exit codes, one-line errors without tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import nextword
from nextword.cli import main


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("NEXTWORD_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "nextword", *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=300
    )


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """The command line in this process (``main(argv)``): exit status, stdout, stderr. The tests
    of the process boundary itself (``python -m nextword``) use :func:`run_cli`."""

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_generate_json_and_stream(tiny_gpt2_dir: Path) -> None:
    out = run_cli("generate", "I love cats because", "-m", str(tiny_gpt2_dir), "--max-new-tokens", "6", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert len(data["sequences"][0]["token_ids"]) == 6
    assert data["settings"]["model"] == str(tiny_gpt2_dir)
    streamed = run_cli("generate", "I love cats because", "-m", str(tiny_gpt2_dir), "--max-new-tokens", "6", "--stream")
    assert streamed.returncode == 0
    assert streamed.stdout.rstrip("\n") == "I love cats because" + data["sequences"][0]["text"]


def test_generate_with_sampling_options(tiny_gpt2_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "generate",
            "Hello",
            "-m",
            str(tiny_gpt2_dir),
            "--max-new-tokens",
            "4",
            "--top-k",
            "5",
            "--num-return-sequences",
            "2",
            "--seed",
            "3",
            "--stop",
            "\n",
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    # The options reach the engine: the output is what the API gives with the same options.
    expected = nextword.generate(
        "Hello", model=str(tiny_gpt2_dir), max_new_tokens=4, top_k=5, num_return_sequences=2, seed=3, stop=["\n"]
    )
    assert len(expected.sequences) == 2
    assert captured.out.splitlines() == ["Hello" + seq.text for seq in expected.sequences]
    assert captured.err.count("--- sequence") == 2


def test_predict_table_and_json(tiny_gpt2_dir: Path, cli: Callable[..., tuple[int, str, str]]) -> None:
    code, table, err = cli("predict", "I love cats because", "-m", str(tiny_gpt2_dir), "-k", "4")
    assert code == 0, err
    assert "█" in table or "▏" in table
    code, js, err = cli("predict", "I love cats because", "-m", str(tiny_gpt2_dir), "-k", "4", "--json")
    assert code == 0, err
    cands = json.loads(js)["candidates"]
    expected = nextword.predict_next("I love cats because", model=str(tiny_gpt2_dir), k=4)
    assert [c["text"] for c in cands] == [c.text for c in expected]
    assert [c["prob"] for c in cands] == pytest.approx([c.prob for c in expected], rel=1e-5)
    assert all(c.text.strip() in table for c in expected)  # the table shows every candidate


def test_backends_and_config(
    tmp_path: Path, cli: Callable[..., tuple[int, str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = cli("backends")
    assert code == 0 and "hf" in out and "usable" in out
    (tmp_path / "nextword.toml").write_text('model = "./my-model"\n[decoding]\nmax_new_tokens = 9\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEXTWORD_BACKEND", "hf")
    data = json.loads(cli("config", "--json")[1])
    assert data["backend"] == "hf" and data["sources"]["backend"] == "environment NEXTWORD_BACKEND"
    assert data["model"] == "./my-model" and data["sources"]["model"].endswith("nextword.toml")
    assert data["decoding"]["max_new_tokens"] == 9
    monkeypatch.delenv("NEXTWORD_BACKEND")
    assert "model    = './my-model'" in cli("config")[1]


def test_config_shows_what_a_load_with_the_same_options_would_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`-o KEY=VALUE` on `nextword config`, resolved exactly as a load resolves it
    (nextword._api.calls.effective_settings)."""
    from nextword._api.calls import effective_settings
    from nextword._api.settings import resolve
    from nextword._plugins.registry import get_backend

    before = nextword.loaded()
    assert main(["config", "--json", "-b", "hf", "-m", "some-model", "-o", "threads=2", "-o", "device=cpu"]) == 0
    data = json.loads(capsys.readouterr().out)
    expected = effective_settings(resolve("hf", "some-model", {"threads": "2", "device": "cpu"}), get_backend("hf"))
    assert (
        data["options"]
        == expected.options
        == {
            "threads": 2,
            "device": "cpu",
            "dtype": "float32",
            "cache": "dynamic",
            "gguf_cache": "default",
            "batching": "exact",
        }
    )
    assert data["sources"]["options.threads"] == "argument" and data["sources"]["options.dtype"] == "default"
    assert main(["config", "-b", "hf", "-o", "colour=red"]) == 1
    assert "unknown option 'colour'" in capsys.readouterr().err
    assert main(["config", "--json", "-b", "nope"]) == 0
    assert "no backend named 'nope'" in json.loads(capsys.readouterr().out)["problem"]
    assert nextword.loaded() == before  # nothing was loaded to answer


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["generate", "", "-m", "{model}"], "prompt is empty"),
        (["generate", "hi", "-b", "nope"], "no backend named 'nope'"),
        (["generate", "hi", "-m", "./missing-folder"], "no such model file or folder"),
        (["generate", "hi", "-m", "{model}", "--top-p", "2"], "top_p must be a number in (0.0, 1.0]"),
        (["generate", "hi", "-m", "{model}", "-o", "colour=red"], "unknown option 'colour'"),
        (["generate", "word " * 300, "-m", "{model}"], "context window"),
        (["generate", "hi", "-m", "{model}", "--temperature", "0.5", "--greedy"], "only apply when sampling"),
    ],
)
def test_user_errors_print_one_line_and_exit_1(
    tiny_gpt2_dir: Path, args: list[str], needle: str, cli: Callable[..., tuple[int, str, str]]
) -> None:
    code, out, err = cli(*[a.replace("{model}", str(tiny_gpt2_dir)) for a in args])
    assert code == 1
    assert "Traceback" not in err + out
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], err


def test_an_unreachable_hub_is_one_line_in_a_fresh_process() -> None:
    """In its own process: the Hub client reads HF_HUB_OFFLINE when it is imported."""
    out = run_cli("generate", "hi", "-m", "nextword-test/not-on-the-hub", env={"HF_HUB_OFFLINE": "1"})
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "unreachable" in errors[0], out.stderr


def test_usage_errors_exit_2() -> None:
    out = run_cli("generate")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    out = run_cli("generate", "hi", "--top-k", "-4")
    assert out.returncode == 2 and "Traceback" not in out.stderr
