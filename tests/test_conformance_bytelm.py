"""The conformance suite against a third-party-style backend (proof an outsider can use it)."""

from __future__ import annotations

import pytest

import nextword
from nextword.testing import GeneratorConformance


class TestByteBigramConformance(GeneratorConformance):
    prompts = ("I love cats because", "Caf\u00e9 au lait, s'il vous pla\u00eet", "\u00fcber alles")
    new_tokens = 24

    @pytest.fixture
    def generator(self, bytelm_plugin: str) -> nextword.Generator:
        return nextword.load("bytelm", "3")
