"""Re-run the ``pycon`` blocks of documentation pages and write the outputs they produce.

    python scripts/refresh_doc_outputs.py docs/tutorial.md docs/quickstart.md docs/ko/tutorial.md docs/ko/quickstart.md

Each page runs top to bottom in one namespace, like a Python session; every ``>>>`` example's
expected output is replaced by what it printed or returned. tests/test_docs.py then checks, in CI,
that the pages still produce exactly those outputs.

Console transcripts are left alone. The one of a real model in docs/tutorial-finetune.md ("On a
real model": Gemma 3 270M fine-tuned, exported to Q8_0 GGUF) is recorded by
``nice -n 19 python scripts/record_gemma_finetune.py`` (about ten minutes on two cores; run it on a
quiet machine, as it records the speed).
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import traceback
from pathlib import Path

BLOCK = re.compile(r"^```pycon\n(.*?)^```", re.S | re.M)


def examples(block: str) -> list[str]:
    """The source of each example in a pycon block (continuation lines joined)."""
    out: list[str] = []
    for line in block.splitlines():
        if line.startswith(">>> "):
            out.append(line[4:])
        elif line.startswith("...") and out and (line == "..." or line.startswith("... ")):
            out[-1] += "\n" + line[4:]
    return out


def run(source: str, namespace: dict[str, object]) -> str:
    buffer = io.StringIO()

    def display(value: object) -> None:
        if value is not None:
            namespace["_"] = value
            print(repr(value))

    old_hook = sys.displayhook
    sys.displayhook = display
    try:
        with contextlib.redirect_stdout(buffer):
            try:
                exec(compile(source + "\n", "<doc>", "single"), namespace)
            except Exception:
                print("Traceback (most recent call last):")
                print(traceback.format_exc().strip().splitlines()[-1])
    finally:
        sys.displayhook = old_hook
    return buffer.getvalue()


def render(source: str, output: str) -> str:
    trailing = [ln for ln in output.rstrip("\n").split("\n") if ln != ln.rstrip()]
    if trailing:
        # The page cannot keep them (editors and linters strip them) and the doctest would fail.
        print(f"warning: output ends a line with whitespace, change the example: {trailing[0]!r}", file=sys.stderr)
    lines = source.rstrip("\n").split("\n")
    text = ">>> " + lines[0] + "".join("\n... " + (ln if ln else "").rstrip() for ln in lines[1:])
    if len(lines) > 1 and lines[0].rstrip().endswith(":"):
        text += "\n..."  # a compound statement ends with an empty continuation line
    out = [ln.rstrip() or "<BLANKLINE>" for ln in output.rstrip("\n").split("\n")] if output.strip() else []
    return text + ("\n" + "\n".join(out) if out else "")


def refresh(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    namespace: dict[str, object] = {"__name__": "__doc__"}

    def replace(match: re.Match[str]) -> str:
        body = "\n".join(render(src, run(src, namespace)) for src in examples(match.group(1)))
        return f"```pycon\n{body}\n```"

    path.write_text(BLOCK.sub(replace, text), encoding="utf-8")
    print(f"refreshed {path}")


if __name__ == "__main__":
    for name in sys.argv[1:]:
        refresh(Path(name))
