"""The public-domain text of the evaluation table: *Alice's Adventures in Wonderland*.

Lewis Carroll's book (1865) is in the public domain. The copy used is ``alice29.txt`` of the
Canterbury compression corpus (the "Millennium Fulcrum Edition 2.9"), which the source
distribution of the ``brotli`` package on PyPI ships among its test data. :func:`fetch` downloads
that source distribution with pip (no other network), takes the one file out of it and checks its
SHA-256, so every run reads the same bytes.

The file is typeset for a terminal: lines wrapped at 65 columns, paragraphs indented, CRLF line
ends, two spaces after a colon or full stop, and opening quotes written as a backquote. A keyboard
user types none of that: :func:`plain` joins each paragraph's lines with one space (none after
a line that ends in a word's hyphen), collapses
runs of spaces, writes the backquotes as apostrophes and keeps the paragraphs apart with one
blank line. The title block before chapter I is left out.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "brotli==1.2.1"
MEMBER = "brotli-1.2.1/tests/testdata/alice29.txt"
SHA256 = "7467306ee0feed4971260f3c87421154a05be571d944e9cb021a5713700c38f0"
DESCRIPTION = (
    "Lewis Carroll, Alice's Adventures in Wonderland (1865, public domain): alice29.txt of the "
    "Canterbury corpus, from the brotli 1.2.1 source distribution on PyPI"
)


def fetch(cache: Path) -> Path:
    """The path of ``alice29.txt`` under ``cache``, downloaded first if it is not there.

    Raises ``RuntimeError`` naming the package when pip cannot download it, or when the file's
    digest is not the expected one (nothing is written then).
    """
    target = cache / "alice29.txt"
    if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == SHA256:
        return target
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", tmp, PACKAGE],
            capture_output=True,
            text=True,
        )
        archives = sorted(Path(tmp).glob("brotli-*.tar.gz"))
        if done.returncode != 0 or not archives:
            raise RuntimeError(f"pip could not download the source of {PACKAGE}:\n{done.stderr[-2000:]}")
        with tarfile.open(archives[0]) as tar:
            member = tar.extractfile(MEMBER)
            if member is None:
                raise RuntimeError(f"{archives[0].name} has no {MEMBER}")
            data = member.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        raise RuntimeError(f"{MEMBER} of {PACKAGE} has SHA-256 {digest}, expected {SHA256}")
    cache.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(target)
    return target


def plain(raw: str) -> str:
    """The book as a person would type it: from chapter I on, one line per paragraph."""
    text = raw.replace("\r\n", "\n")
    start = text.find("CHAPTER I\n")
    if start < 0:
        raise ValueError("the text has no 'CHAPTER I' line")
    paragraphs = re.split(r"\n[ \t]*\n", text[start:])
    # A line broken after a word's hyphen ("WAISTCOAT-" / "POCKET") joins without a space.
    lines = [re.sub(r"(?<=[A-Za-z]-)\n", "", p.strip()) for p in paragraphs]
    return "\n\n".join(" ".join(line.split()).replace("`", "'") for line in lines if line)


def main() -> None:
    """``python benchmarks/alice.py OUT.txt [CACHE_DIR]``: write the plain text to OUT.txt (for
    ``nextword eval``)."""
    if len(sys.argv) not in (2, 3):
        raise SystemExit("usage: python benchmarks/alice.py OUT.txt [CACHE_DIR]")
    cache = Path(sys.argv[2]) if len(sys.argv) == 3 else Path(tempfile.gettempdir()) / "nextword-alice"
    raw = fetch(cache).read_text(encoding="ascii")
    Path(sys.argv[1]).write_text(plain(raw) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
