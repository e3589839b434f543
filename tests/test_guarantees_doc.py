"""docs/guarantees.md names, for each promise, the tests that hold it: every name must exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_test_named_on_the_guarantees_page_exists() -> None:
    page = (ROOT / "docs" / "guarantees.md").read_text()
    named = set(re.findall(r"`(?:tests/[\w/]+\.py::)?(test_\w+)`", page))
    files = set(re.findall(r"`(tests/[\w/]+\.py)", page))
    defined = {
        name
        for path in (ROOT / "tests").glob("test_*.py")
        for name in re.findall(r"^\s*def (test_\w+)\(", path.read_text(), re.MULTILINE)
    }
    assert len(named) >= 25
    assert sorted(named - defined) == []
    assert sorted(f for f in files if not (ROOT / f).is_file()) == []
