"""The example backend against nextword's shared conformance suite, plus a few checks of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

import nextword
from nextword.testing import GeneratorConformance


# --8<-- [start:conformance]
class TestCharNGramConformance(GeneratorConformance):
    """Every test of the shared suite, run on the installed charngram backend."""

    # Knobs of the suite: one token is one character here, so generate a little more text.
    new_tokens = 32

    @pytest.fixture
    def generator(self) -> nextword.Generator:
        # Loaded through the public API, so the entry point and the options are exercised too.
        # nextword caches the loaded model: it is trained once for the whole session.
        return nextword.load("charngram", "builtin")


# --8<-- [end:conformance]


# --8<-- [start:own-tests]
def test_the_entry_point_registers_a_usable_backend() -> None:
    info = {b.name: b for b in nextword.backends()}["charngram"]
    assert info.usable, info.reason
    assert info.default_model == "builtin"


def test_a_text_file_is_a_model(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("abc abc abc abc\n\nabc abc abc\n", encoding="utf-8")
    generator = nextword.load("charngram", str(corpus), order=3)
    assert generator.generate("abc a", max_new_tokens=6).text == "bc abc"


def test_load_options_are_validated() -> None:
    with pytest.raises(nextword.InvalidConfig):
        nextword.load("charngram", order=0)
    with pytest.raises(nextword.InvalidConfig):
        nextword.load("charngram", vocabulary=100)


def test_a_missing_corpus_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(nextword.ModelLoadError, match="neither"):
        nextword.load("charngram", str(tmp_path / "missing.txt"))


def test_unknown_characters_are_read_but_never_written() -> None:
    generator = nextword.load("charngram")
    prompt = "A cup of \u2615 and"  # the built-in text has no coffee cup
    assert generator.detokenize(generator.tokenize(prompt)) == "A cup of \ufffd and"
    result = generator.generate(prompt, max_new_tokens=40, do_sample=True, temperature=2.0, seed=0)
    assert "\ufffd" not in result.text


# --8<-- [end:own-tests]
