"""The plugin author's guide (docs/plugins.md) shows its example's code inline, so the page reads
whole from the repository too; this test holds every such block equal to the example package's
current source (``<!-- snippet: FILE[:SECTION] -->`` names where a block comes from)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nextword.testing.assets import ASSET_DIR_ENV, VocabFiles, gpt2_vocab_files

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "plugins.md"
MARKER = re.compile(r"^\s*#\s*--8<--\s*\[(start|end):([\w-]+)\]\s*$")
SNIPPET = re.compile(r"^(\s*)<!-- snippet: ([^\s:]+)(?::([\w-]+))? -->$")


def _source(path: str, name: str | None) -> list[str]:
    """The lines of ``path`` (without section markers), or of its section ``name``."""
    lines = (ROOT / path).read_text(encoding="utf-8").splitlines()
    if name is None:
        return [line for line in lines if not MARKER.match(line)]
    out: list[str] = []
    inside = False
    for line in lines:
        mark = MARKER.match(line)
        if mark is not None:
            if mark.group(2) == name:
                inside = mark.group(1) == "start"
            continue
        if inside:
            out.append(line)
    assert out, f"{path} has no section {name!r}"
    return out


def _blocks() -> list[tuple[str, str | None, list[str]]]:
    lines = GUIDE.read_text(encoding="utf-8").splitlines()
    found = []
    for i, line in enumerate(lines):
        m = SNIPPET.match(line)
        if m is None:
            continue
        indent, fence = m.group(1), lines[i + 1]
        assert fence.lstrip().startswith("```"), f"line {i + 2}: a snippet marker must precede a code fence"
        body: list[str] = []
        for inner in lines[i + 2 :]:
            if inner.strip() == "```":
                break
            body.append(inner[len(indent) :] if inner.startswith(indent) else inner)
        found.append((m.group(2), m.group(3), body))
    return found


BLOCKS = _blocks()


def test_the_guide_shows_its_code_inline() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    assert "--8<--" not in text.replace("# --8<-- [", "")  # no include left for the raw page to lose
    assert len(BLOCKS) >= 10


@pytest.mark.parametrize(("path", "section", "body"), BLOCKS, ids=[f"{p}:{s}" for p, s, _ in BLOCKS])
def test_each_block_equals_the_example_source(path: str, section: str | None, body: list[str]) -> None:
    assert body == _source(path, section), f"docs/plugins.md is out of date with {path}:{section}"


def test_the_guides_vocabulary_script_fills_the_asset_folder(gpt2_vocab: VocabFiles, tmp_path: Path) -> None:
    """The guide's copy_gpt2_vocab.py puts GPT-2's files where the kit's fixtures look for them."""
    text = GUIDE.read_text(encoding="utf-8")
    script = re.search(r'^```python title="copy_gpt2_vocab.py"\n(.*?)^```', text, re.S | re.M)
    assert script is not None, "docs/plugins.md lost its copy_gpt2_vocab.py block"
    env = {**os.environ, ASSET_DIR_ENV: str(tmp_path / "assets")}
    subprocess.run([sys.executable, "-c", script.group(1)], env=env, check=True, timeout=60, cwd=tmp_path)
    found = gpt2_vocab_files(tmp_path / "assets")
    assert found.vocab.read_bytes() == gpt2_vocab.vocab.read_bytes()
    assert found.merges.read_bytes() == gpt2_vocab.merges.read_bytes()
