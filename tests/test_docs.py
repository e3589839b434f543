"""The documentation's code runs: every ``pycon`` block of these pages is executed as a doctest,
top to bottom in one session per page, and must print exactly what the page shows.

The pages use the real pretrained Gemma 3 270M from PyPI, so this is a slow test.
(``scripts/refresh_doc_outputs.py`` rewrites the outputs after a deliberate change.)
"""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = ["tutorial.md", "quickstart.md", "ko/tutorial.md", "ko/quickstart.md", "tutorial-finetune.md"]
# Pages that also use the GPT-2 tokenizer (the Korean tutorial counts tokens on it; the
# fine-tuning chapter builds a tiny GPT-2 with it).
NEEDS_GPT2_VOCAB = {"ko/tutorial.md", "tutorial-finetune.md"}
BLOCK = re.compile(r"^```pycon\n(.*?)^```", re.S | re.M)


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_page_code_runs_and_prints_what_the_page_shows(
    page: str, gemma_gguf: Path, request: pytest.FixtureRequest
) -> None:
    if page in NEEDS_GPT2_VOCAB:
        request.getfixturevalue("gpt2_vocab")  # fails under NEXTWORD_REQUIRE_ASSETS=1 when unavailable
    text = (DOCS / page).read_text(encoding="utf-8")
    blocks = BLOCK.findall(text)
    assert blocks, f"{page} has no pycon blocks"
    parser = doctest.DocTestParser()
    test = parser.get_doctest("\n".join(blocks), {"__name__": "__doc__"}, page, str(DOCS / page), 0)
    assert len(test.examples) >= 5
    runner = doctest.DocTestRunner(optionflags=doctest.REPORT_UDIFF)
    runner.run(test)
    assert runner.failures == 0, f"{runner.failures} example(s) of {page} did not print what the page shows"
