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


def test_the_suite_catches_tokenizer_contract_breaches(bytelm_plugin: str) -> None:
    """Three tokenizers that break the documented contract, each caught by the suite."""
    from tests.thirdparty.bytelm import EOS, SPEC, ByteBigramGenerator

    class ReadsNames(ByteBigramGenerator):  # "<eos>" typed in a prompt becomes the control token
        def tokenize(self, text: str) -> list[int]:
            parts = text.split("<eos>")
            ids: list[int] = []
            for i, part in enumerate(parts):
                ids += ([EOS] if i else []) + list(part.encode())
            return ids

    class HidesSpecials(ByteBigramGenerator):  # detokenize drops the end-of-text token
        def detokenize(self, token_ids: list[int]) -> str:  # type: ignore[override]
            return bytes(t for t in token_ids if t != EOS).decode(errors="replace")

    class BosSometimes(ByteBigramGenerator):  # a BOS-like token before some texts only
        def tokenize(self, text: str) -> list[int]:
            return ([EOS] if text.startswith("I") else []) + list(text.encode())

    suite = TestByteBigramConformance()
    with pytest.raises(AssertionError, match="became a control token"):
        suite.test_special_token_names_in_a_prompt_are_plain_text(ReadsNames("3", spec=SPEC))
    with pytest.raises(AssertionError, match="renders as an empty string"):
        suite.test_special_tokens_render_as_text(HidesSpecials("3", spec=SPEC))
    with pytest.raises(AssertionError, match="added to some prompts and not to others"):
        suite.test_bos_only_where_the_model_adds_it(BosSometimes("3", spec=SPEC))
