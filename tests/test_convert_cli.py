"""Tests of ``nextword convert`` (added to the CLI by the llamacpp plugin's ``register_commands``
hook), run as ``python -m nextword convert`` in a subprocess like a user would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nextword
from nextword.testing.pytest_fixtures import require_module

require_module("llama_cpp")
require_module("gguf")


def run_convert(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("NEXTWORD_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "nextword", "convert", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=300,
    )


def assert_one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The CLI failed as a user error: status 1, one ``error:`` line, no traceback."""
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in proc.stderr + proc.stdout
    return lines[0]


def test_convert_is_listed_in_the_help() -> None:
    proc = subprocess.run([sys.executable, "-m", "nextword", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "convert" in proc.stdout


def test_convert_with_verify_prints_the_report_and_the_file_loads(tiny_gpt2_dir: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "tiny.F32.gguf"
    proc = run_convert(str(tiny_gpt2_dir), str(out), "--type", "f32", "--verify", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}" in proc.stdout
    for part in ("top-1 agreement 100.0%", "mean KL", "max |Δ log-prob|"):
        assert part in proc.stdout
    assert "Writing F32 GGUF" in proc.stderr  # the progress bar
    assert sorted(p.name for p in out_dir.iterdir()) == ["tiny.F32.gguf"]

    gen = nextword.load("llamacpp", str(out))
    try:  # F32 gives transformers' greedy tokens (tests/test_equivalence.py)
        hf = nextword.load("hf", str(tiny_gpt2_dir), device="cpu")
        expected = hf.generate("I love cats because", max_new_tokens=5).token_ids
        assert gen.generate("I love cats because", max_new_tokens=5).token_ids == expected
    finally:
        gen.close()


def test_probe_implies_verify_and_out_may_be_a_folder(tiny_gpt2_dir: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = run_convert(
        str(tiny_gpt2_dir),
        str(out_dir),
        "--type",
        "Q8_0",
        "--probe",
        "Hello world",
        "--probe",
        "I love cats",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    written = out_dir / f"{tiny_gpt2_dir.name}.Q8_0.gguf"
    assert f"wrote {written}" in proc.stdout
    assert "over 5 tokens" in proc.stdout  # "Hello world" (2) + "I love cats" (3)
    assert sorted(p.name for p in out_dir.iterdir()) == [written.name]


def test_unsupported_architecture_is_one_error_line_and_leaves_nothing(tiny_gpt2_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "llama-ish"
    shutil.copytree(tiny_gpt2_dir, src)
    config = json.loads((src / "config.json").read_text())
    config["model_type"] = "llama"
    (src / "config.json").write_text(json.dumps(config))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = run_convert(str(src), str(out_dir / "x.gguf"), "--type", "q4_k_m", cwd=tmp_path)
    line = assert_one_error_line(proc)
    assert "model_type 'llama'" in line
    assert list(out_dir.iterdir()) == []  # no output, no temporary files


def test_failure_while_writing_removes_the_temporary_files(tiny_gpt2_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "truncated"
    shutil.copytree(tiny_gpt2_dir, src)
    weights = src / "model.safetensors"
    os.truncate(weights, weights.stat().st_size - 1000)  # the header is intact: fails mid-write
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = run_convert(str(src), str(out_dir / "x.gguf"), "--type", "q4_k_m", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "truncated" in proc.stderr and "Traceback" not in proc.stderr
    assert list(out_dir.iterdir()) == []


def test_bad_type_is_a_usage_error(tiny_gpt2_dir: Path, tmp_path: Path) -> None:
    proc = run_convert(str(tiny_gpt2_dir), str(tmp_path / "x.gguf"), "--type", "q3_k", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "q3_k" in proc.stderr and "q4_k_m" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x.gguf").exists()


def test_missing_source_is_one_error_line(tmp_path: Path) -> None:
    proc = run_convert(str(tmp_path / "no-such-model"), str(tmp_path / "x.gguf"), cwd=tmp_path)
    line = assert_one_error_line(proc)
    assert "not found" in line and "no-such-model" in line
    assert list(tmp_path.iterdir()) == []


def test_hub_id_offline_is_one_error_line(tmp_path: Path) -> None:
    env = {
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_CACHE": str(tmp_path / "hf-home" / "hub"),
    }
    proc = run_convert("some-org/some-gpt2", str(tmp_path / "x.gguf"), cwd=tmp_path, env=env)
    line = assert_one_error_line(proc)
    assert "unreachable" in line and "SRC" in line
    assert not (tmp_path / "x.gguf").exists()
