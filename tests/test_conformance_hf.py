"""The conformance suite against the hf backend on a tiny GPT-2 with the real vocabulary.

``NEXTWORD_TEST_DEVICE`` / ``NEXTWORD_TEST_DTYPE`` run it elsewhere (the GPU check script uses
``cuda`` with float16 and bfloat16); half precision gets a wider tie tolerance, since the
incremental (KV-cache) and full-sequence evaluations then differ by rounding.
``NEXTWORD_TEST_BATCHING=fast`` runs it with the ``fast`` batching mode (lists as left-padded
batches).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import nextword
from nextword.testing import GeneratorConformance

DEVICE = os.environ.get("NEXTWORD_TEST_DEVICE", "cpu")
DTYPE = os.environ.get("NEXTWORD_TEST_DTYPE", "float32")
BATCHING = os.environ.get("NEXTWORD_TEST_BATCHING", "exact")
TOLERANCE = {"float32": 1e-4, "float16": 0.05, "bfloat16": 0.25}[DTYPE]


class TestHFConformance(GeneratorConformance):
    new_tokens = 16
    logit_tolerance = TOLERANCE

    @pytest.fixture
    def generator(self, tiny_gpt2_dir: Path) -> nextword.Generator:
        return nextword.load("hf", str(tiny_gpt2_dir), device=DEVICE, dtype=DTYPE, batching=BATCHING)
