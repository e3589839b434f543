"""The main job a newcomer sees (scripts/main_job.sh, run by scripts/setup.sh): the report's example
with its own arguments, on the fastest backend that has the model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import nextword

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "I love cats because"


@pytest.mark.slow
def test_main_job_offline_runs_the_example_on_llamacpp(gemma_gguf: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXTWORD_")}
    env.update(HF_HUB_OFFLINE="1", PYTHON=sys.executable)
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "main_job.sh")], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert "--max-length 50 --no-repeat-ngram-size 2 --backend llamacpp" in out.stderr
    expected = nextword.generate(
        PROMPT, backend="llamacpp", model=str(gemma_gguf), max_length=50, no_repeat_ngram_size=2
    )
    assert out.stdout == PROMPT + expected.text + "\n"
    # The arguments are honoured: 50 tokens in all, and no token bigram twice (the loop the
    # report showed, "...I love them because they are so sweet...", cannot happen).
    gen = nextword.load("llamacpp", str(gemma_gguf))
    ids = gen.tokenize(PROMPT) + list(expected.token_ids)
    assert len(ids) == 50 or expected.finish_reason != "length"
    bigrams = list(zip(ids, ids[1:], strict=False))
    assert len(bigrams) == len(set(bigrams))
