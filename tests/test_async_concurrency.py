"""8 asyncio tasks with mixed calls on one generator, both backends, 3 rounds: every result
equals its sequential result, nothing raises, nothing aborts (run in a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "scripts" / "async_mixed.py"


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["hf", "llamacpp"])
def test_eight_mixed_tasks_equal_their_sequential_results(
    backend: str, tiny_gpt2_dir: Path, tiny_gguf: Callable[[str], Path]
) -> None:
    if backend == "hf":
        args = [str(tiny_gpt2_dir), "device=cpu"]
    else:
        args = [str(tiny_gguf("q8_0"))]
    proc = subprocess.run([sys.executable, str(SCRIPT), backend, *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"the process died (rc {proc.returncode}): {proc.stderr[-3000:]}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["tasks"] == 8 and report["rounds"] == 3
    assert report["mismatches"] == []
