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


def test_min_new_tokens_past_max_length_is_refused_before_generating(bytelm_plugin: str) -> None:
    gen = nextword.load("bytelm", "3")
    with pytest.raises(nextword.InvalidConfig, match="min_new_tokens=10"):
        gen.generate("abcdef", max_length=10, min_new_tokens=10)


def test_a_closed_stream_has_no_result(bytelm_plugin: str) -> None:
    gen = nextword.load("bytelm", "3")
    stream = gen.stream("abc", max_new_tokens=30)
    iterator = iter(stream)
    next(iterator)
    stream.close()
    assert list(iterator) == []
    with pytest.raises(RuntimeError, match="closed before it finished"):
        _ = stream.result
