"""The conformance suite against the hf backend on a tiny GPT-2 with the real vocabulary."""

from __future__ import annotations

from pathlib import Path

import pytest

import nextword
from nextword.testing import GeneratorConformance


class TestHFConformance(GeneratorConformance):
    new_tokens = 16

    @pytest.fixture
    def generator(self, tiny_gpt2_dir: Path) -> nextword.Generator:
        return nextword.load("hf", str(tiny_gpt2_dir), device="cpu")
