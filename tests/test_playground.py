"""The browser playground served by ``nextword serve`` at ``/``.

The route tests check what the server sends (the page without the key, content types, 404 for
anything unlisted, no way out of the asset folder). The browser tests drive the page in the
system's headless Chromium through Playwright against a real ``nextword serve`` process on the
tiny GPT-2, and compare what the page shows with what the API answers for the same text: the
suggestions while typing (English and Korean), the explain view, a seeded generation, the API-key
flow, keyboard-only use and a phone-sized screen. No test may leave a console error or a page
error, and the page may reach nothing but the server. A screenshot of each view is written to
``$NEXTWORD_ARTIFACT_DIR`` (default: ``playground-artifacts`` under pytest's base temp folder).

Without Playwright or Chromium the browser tests are skipped, and fail with
``NEXTWORD_REQUIRE_ASSETS=1``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import nextword
from nextword.testing.pytest_fixtures import require_module, unavailable
from tests import servers

require_module("uvicorn", "install nextword[serve]")
require_module("starlette", "install nextword[serve]")

from starlette.testclient import TestClient  # noqa: E402

from nextword.serve.app import create_app  # noqa: E402
from nextword.serve.static import ASSETS, CONTENT_SECURITY_POLICY  # noqa: E402

PROMPT = "I love cats because"
KEY = "s3cret-key"
TIMEOUT_MS = 90_000
CHROMIUM_NAMES = ("chromium-headless-shell", "chromium", "chromium-browser")


# ---- the routes ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed_client(byte_gen: nextword.Generator) -> Iterator[TestClient]:
    with TestClient(create_app(byte_gen, name="bytes", api_key=KEY)) as client:
        yield client


def test_the_page_is_served_without_the_key(keyed_client: TestClient) -> None:
    page = keyed_client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert page.headers["x-content-type-options"] == "nosniff"
    assert '<script src="/playground/playground.js" defer></script>' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing from elsewhere
    # the data still needs the key
    assert keyed_client.get("/v1/models").status_code == 401
    assert keyed_client.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200


@pytest.mark.parametrize("name", sorted(ASSETS))
def test_assets_have_their_content_types(keyed_client: TestClient, name: str) -> None:
    response = keyed_client.get(f"/playground/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"] == ASSETS[name]
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert len(response.content) < 64 * 1024  # small and dependency-free
    assert "https://" not in response.text and "http://" not in response.text
    assert keyed_client.head(f"/playground/{name}").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/playground/nothing.js",
        "/playground/",
        "/playground",
        "/index.html",
        "/playground/static.py",
        "/playground/__init__.py",
        "/playground/..%2Fstatic.py",
        "/playground/%2e%2e/static.py",
        "/playground/..%2F..%2Fserve%2Fapp.py",
        "/playground/%2e%2e%2f%2e%2e%2fpyproject.toml",
        "/playground/playground.js%00.html",
        "/playground/INDEX.HTML",
    ],
)
def test_unknown_paths_are_404_and_nothing_escapes_the_folder(keyed_client: TestClient, path: str) -> None:
    response = keyed_client.get(path)
    assert response.status_code == 404, path
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "import" not in response.text  # no Python source leaked


def _raw_get(base: str, target: str) -> tuple[int, bytes]:
    """Send ``GET target`` byte for byte (no client normalizes it); the status and the body."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_dot_segments_sent_raw_do_not_escape(byte_gen: nextword.Generator) -> None:
    """A client that sends ``..`` unnormalized (httpx and browsers would remove it) to a real
    server gets a 404, and never a file's content."""
    with servers.app_in_thread(create_app(byte_gen, name="bytes", api_key=KEY)) as base:
        assert _raw_get(base, "/playground/playground.css")[0] == 200
        for target in (
            "/playground/../static.py",
            "/playground/../../serve/app.py",
            "/playground/./index.html/../app.py",
            "/playground/..%2f..%2fapp.py",
            "/playground/%2e%2e%2fstatic.py",
            "/playground/..\\static.py",
        ):
            status, body = _raw_get(base, target)
            assert status in (400, 404), target
            assert b"import" not in body, target


def test_the_page_routes_take_only_get(keyed_client: TestClient) -> None:
    assert keyed_client.post("/").status_code == 405
    assert keyed_client.put("/playground/playground.js").status_code == 405


def test_next_words_says_what_is_typed_and_what_remains(hf_gen: nextword.Generator) -> None:
    """The page shows the characters still to type: the API gives them to every client
    (``typed`` on the answer, ``remaining`` on each candidate; both null for next words)."""
    with TestClient(create_app(hf_gen, name="tiny")) as client:
        partial = client.post("/v1/next_words", json={"prompt": "I love ca", "k": 3, "complete": "word"}).json()
        local = hf_gen.predict_next("I love ca", k=3, complete="word")
        assert partial["typed"] == local.typed == " ca"
        assert [c["remaining"] for c in partial["candidates"]] == [c.remaining for c in local]
        for c in partial["candidates"]:
            assert c["text"] == partial["typed"] + c["remaining"]
        following = client.post("/v1/next_words", json={"prompt": PROMPT, "k": 3, "complete": "next"}).json()
        assert following["typed"] is None
        assert all(c["remaining"] is None for c in following["candidates"])


# ---- the command ------------------------------------------------------------------------------------


def test_announce_prints_the_address_and_opens_a_browser_only_where_one_can_be_opened(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from nextword.cli import playground

    lines: list[str] = []
    opened: list[str] = []

    def opener(url: str) -> bool:
        opened.append(url)
        return True

    monkeypatch.setattr(playground, "can_open_browser", lambda: True)
    assert playground.announce("http://127.0.0.1:9/", open_browser=True, opener=opener, echo=lines.append)
    assert opened == ["http://127.0.0.1:9/"] and lines == ["nextword playground: http://127.0.0.1:9/"]

    lines.clear()
    assert not playground.announce("http://x/", open_browser=True, opener=lambda url: False, echo=lines.append)
    assert lines[0] == "nextword playground: http://x/" and "open the address above" in lines[1]

    monkeypatch.setattr(playground, "can_open_browser", lambda: False)  # headless: never tries
    lines.clear()
    assert not playground.announce("http://x/", open_browser=True, opener=opener, echo=lines.append)
    assert len(opened) == 1 and "no display" in lines[1]


def test_a_browser_needs_a_display_on_linux() -> None:
    from nextword.cli.playground import can_open_browser

    assert not can_open_browser({}, "linux")
    assert can_open_browser({"DISPLAY": ":0"}, "linux")
    assert can_open_browser({"WAYLAND_DISPLAY": "wayland-0"}, "linux")
    assert can_open_browser({}, "darwin") and can_open_browser({}, "win32")


@pytest.mark.slow
def test_playground_command_serves_the_page_headless(
    tiny_gpt2_dir: Path, tmp_path: Path, byte_gen: nextword.Generator
) -> None:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("NEXTWORD_") and k not in ("DISPLAY", "WAYLAND_DISPLAY")
    }
    env["PYTHONUNBUFFERED"] = "1"
    args = [sys.executable, "-m", "nextword", "playground", "-b", "hf", "-m", str(tiny_gpt2_dir), "-o", "device=cpu"]
    log = tmp_path / "playground.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([*args, "--port", "0"], stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            url = None
            end = time.monotonic() + servers.STARTUP_S
            while url is None and time.monotonic() < end and proc.poll() is None:
                for line in log.read_text(errors="replace").splitlines():
                    if line.startswith("nextword playground: http://"):
                        url = line.split(": ", 1)[1].strip()
                time.sleep(0.2)
            assert url is not None, log.read_text(errors="replace")
            text = log.read_text(errors="replace")
            assert "no display here to open a browser on" in text  # headless: says so, opens nothing
            page = httpx.get(url, timeout=30)
            assert page.status_code == 200 and "playground.js" in page.text
            assert httpx.get(url + "v1/models", timeout=30).json()["data"][0]["nextword"]["backend"] == "hf"
        finally:
            servers.stop(proc, 15)
    # a taken port is a one-line error before any model loads
    with servers.app_in_thread(create_app(byte_gen, name="x")) as base:
        taken = base.rsplit(":", 1)[1]
        busy = subprocess.run(
            [*args, "--port", taken, "--no-browser"], capture_output=True, text=True, env=env, timeout=120
        )
    assert busy.returncode == 1 and "cannot listen on" in busy.stderr and "Traceback" not in busy.stderr


# ---- the browser ----------------------------------------------------------------------------------


def find_chromium() -> str:
    """The system's headless Chromium (``apt-get install chromium-headless-shell``)."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
        if path:
            return path
    unavailable("no headless Chromium for the playground tests (apt-get install chromium-headless-shell)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the whole module, driven by Playwright (no browser download)."""
    sync_api = require_module("playwright.sync_api", "pip install playwright (in nextword[test])")
    executable = find_chromium()
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def artifacts(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go: ``$NEXTWORD_ARTIFACT_DIR`` or a folder under pytest's base temp."""
    configured = os.environ.get("NEXTWORD_ARTIFACT_DIR", "").strip()
    folder = Path(configured) if configured else tmp_path_factory.getbasetemp() / "playground-artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"playground screenshots: {folder}")
    return folder


def _serve(tiny_gpt2_dir: Path, log: Path, *extra: str) -> contextlib.AbstractContextManager[str]:
    port = servers.free_port()
    args = ["-m", "nextword", "serve", "-b", "hf", "-m", str(tiny_gpt2_dir), "-o", "device=cpu"]
    args += ["--port", str(port), "--served-model-name", "tiny", *extra]
    return servers.process(args, "/health", port, log)


@pytest.fixture(scope="module")
def server(tiny_gpt2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``nextword serve`` on the tiny GPT-2 (no key); stopped however the tests end."""
    with _serve(tiny_gpt2_dir, tmp_path_factory.mktemp("serve") / "serve.log") as base:
        yield base


@pytest.fixture(scope="module")
def keyed_server(tiny_gpt2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The same, with an API key."""
    with _serve(tiny_gpt2_dir, tmp_path_factory.mktemp("serve-key") / "serve.log", "--api-key", KEY) as base:
        yield base


class Page:
    """A page of the playground in its own browser context, with every console error, page error
    and request to anywhere but the server recorded (and that request refused)."""

    def __init__(self, browser: Any, base: str, **context: Any) -> None:
        self.base = base
        self.problems: list[str] = []
        self.api_requests: list[tuple[str, str | None]] = []
        self.context = browser.new_context(**{"viewport": {"width": 1100, "height": 860}, **context})
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        self.page.on("request", self._request)

    def _route(self, route: Any) -> None:
        url = route.request.url
        if url.startswith(self.base + "/") or url.startswith("data:"):
            route.continue_()
        else:
            self.problems.append(f"request outside the server: {url}")
            route.abort()

    def _console(self, message: Any) -> None:
        if message.type in ("error", "warning"):
            self.problems.append(f"console {message.type}: {message.text}")

    def _request(self, request: Any) -> None:
        path = request.url[len(self.base) :]
        if path.startswith("/v1/"):
            self.api_requests.append((path, request.headers.get("authorization")))

    def open(self) -> Any:
        self.page.goto(self.base + "/")
        return self.page

    def close(self, allowed: tuple[str, ...] = ()) -> None:
        self.context.close()
        unexpected = [p for p in self.problems if not any(a in p for a in allowed)]
        assert not unexpected, "\n".join(unexpected)


@contextlib.contextmanager
def playground_page(browser: Any, base: str, allowed: tuple[str, ...] = (), **context: Any) -> Iterator[Page]:
    """Open the playground; on leaving, close it and fail on any console error, page error or
    outside request (those containing one of ``allowed`` excepted)."""
    page = Page(browser, base, **context)
    try:
        page.open()
        yield page
    except BaseException:
        page.context.close()
        raise
    page.close(allowed)


# ---- helpers reading the page -----------------------------------------------------------------


# Waits go through Playwright's selector engine (``expect``), never ``wait_for_function``: a
# polled predicate is compiled in the page, which its Content-Security-Policy (no eval) refuses.


def expect(locator: Any) -> Any:
    return require_module("playwright.sync_api").expect(locator)


def wait_ready(page: Any) -> None:
    page.wait_for_selector("#work:not([hidden])", timeout=TIMEOUT_MS)
    expect(page.locator("#text")).to_be_focused(timeout=TIMEOUT_MS)


def wait_suggestions(page: Any, text: str) -> None:
    """Until the suggestions shown are those for ``text``."""
    suggestions = page.locator("#suggestions")
    expect(suggestions).to_have_attribute("data-prompt", text, timeout=TIMEOUT_MS)
    expect(suggestions).to_have_attribute("data-state", "ready", timeout=TIMEOUT_MS)
    assert suggestions.get_attribute("data-prompt") == text


def shown_suggestions(page: Any) -> list[dict[str, Any]]:
    return page.eval_on_selector_all(
        "#suggestions li",
        "els => els.map(e => ({text: e.dataset.text, prob: Number(e.dataset.prob), remaining: e.dataset.remaining,"
        " word: e.querySelector('.word').textContent, pct: e.querySelector('.pct').textContent,"
        " rest: e.querySelector('.rest').textContent, bar: e.querySelector('.fill').style.width}))",
    )


def pct(p: float) -> str:
    """What the page writes for a probability."""
    return f"{p * 100:.2f}%" if p >= 0.0001 else f"{p:.1e}".replace("e-0", "e-")


def api(base: str, path: str, body: dict[str, Any], key: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = httpx.post(base + path, json=body, headers=headers, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()


def assert_suggestions_equal_the_api(page: Any, base: str, text: str, key: str | None = None) -> list[dict[str, Any]]:
    wait_suggestions(page, text)
    shown = shown_suggestions(page)
    complete = page.locator("#suggestions").get_attribute("data-complete")
    expected = api(base, "/v1/next_words", {"prompt": text, "k": 5, "complete": complete}, key)
    assert [s["text"] for s in shown] == [c["text"] for c in expected["candidates"]]
    assert [s["prob"] for s in shown] == pytest.approx([c["prob"] for c in expected["candidates"]], abs=1e-12)
    assert [s["pct"] for s in shown] == [pct(c["prob"]) for c in expected["candidates"]]
    for s, c in zip(shown, expected["candidates"], strict=True):
        # the characters still to type, in bold (a next word without its leading space)
        rest = c["remaining"] if c["remaining"] is not None else c["text"].lstrip()
        assert s["rest"] == rest.replace("\n", "\u21b5").replace("\t", "\u21e5")
        assert s["bar"].endswith("%")
    return shown


def type_slowly(page: Any, text: str) -> None:
    """Type ``text`` key by key (each keystroke its own input event and request)."""
    page.keyboard.type(text, delay=15)


def screenshot(page: Any, artifacts: Path, name: str) -> None:
    path = artifacts / f"playground-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000


# ---- browser tests --------------------------------------------------------------------------------


@pytest.mark.slow
def test_suggestions_while_typing_equal_the_api(browser: Any, server: str, artifacts: Path) -> None:
    with playground_page(browser, server, locale="en-US") as p:
        page = p.page
        wait_ready(page)
        assert page.locator("h1").inner_text() == "nextword playground"
        assert "tiny" in page.locator("#model").inner_text()
        typed = "I love ca"
        type_slowly(page, typed)
        shown = assert_suggestions_equal_the_api(page, server, typed)
        # inside a word: completions of " ca", with what is left to type
        assert page.locator("#suggestions").get_attribute("data-complete") == "word"
        assert all(s["text"].startswith(" ca") and s["text"] == " ca" + s["remaining"] for s in shown)
        assert "Completing “ca”" in page.locator("#suggest-heading").inner_text()
        # ↓ selects the second, Tab accepts it: the text gets exactly what was left to type
        page.keyboard.press("ArrowDown")
        assert page.locator("#suggestions li[aria-selected=true]").get_attribute("data-index") == "1"
        page.keyboard.press("Tab")
        accepted = typed + shown[1]["remaining"]
        assert page.input_value("#text") == accepted
        assert page.evaluate("document.activeElement.id") == "text"
        # the next words after the accepted one, then a whole prompt typed key by key
        assert_suggestions_equal_the_api(page, server, accepted)
        page.fill("#text", "")
        type_slowly(page, PROMPT)
        assert_suggestions_equal_the_api(page, server, PROMPT)
        # after a space: the next words (the space healed into them)
        type_slowly(page, " ")
        shown = assert_suggestions_equal_the_api(page, server, PROMPT + " ")
        assert page.locator("#suggest-heading").inner_text() == "The next word"
        assert all(s["text"] == " " + s["remaining"] for s in shown)
        screenshot(page, artifacts, "suggest")
        page.keyboard.press("Tab")
        assert page.input_value("#text") == PROMPT + " " + shown[0]["remaining"]
        # Esc dismisses; the next keystroke brings suggestions back
        text = page.input_value("#text")
        wait_suggestions(page, text)
        page.keyboard.press("Escape")
        assert page.locator("#suggestions").get_attribute("data-state") == "dismissed"
        assert page.locator("#suggestions li").count() == 0
        assert page.input_value("#text") == text
        type_slowly(page, " a")
        shown = assert_suggestions_equal_the_api(page, server, text + " a")
        # a click accepts too, and leaves the caret in the text
        page.click("#suggestions li >> nth=1")
        assert page.input_value("#text") == text + " a" + shown[1]["remaining"]
        assert page.evaluate("document.activeElement.id") == "text"
        text = page.input_value("#text")
        page.keyboard.type(" a")
        assert_suggestions_equal_the_api(page, server, text + " a")
        # the last word read as the model decides, or never completed
        for mode in ("auto", "next"):
            page.select_option("#complete", mode)
            wait_suggestions(page, text + " a")
            page.wait_for_selector(f"#suggestions[data-complete={mode}]")
            assert_suggestions_equal_the_api(page, server, text + " a")
        page.focus("#text")
        # every keystroke made a request; those overtaken by the next keystroke were aborted
        requests = [path for path, _ in p.api_requests if path == "/v1/next_words"]
        assert len(requests) >= len(PROMPT)
        painted = page.evaluate("window.nextwordPlayground.painted")
        assert painted and all(entry["ms"] is not None and entry["ms"] >= 0 for entry in painted)


@pytest.mark.slow
def test_explain_view_equals_the_api(browser: Any, server: str, artifacts: Path) -> None:
    text = "I love cats because they are cute"
    with playground_page(browser, server) as p:
        page = p.page
        wait_ready(page)
        page.fill("#text", text)
        page.click("#tab-explain")
        expect(page.locator("#explain-text")).to_have_attribute("data-text", text, timeout=TIMEOUT_MS)
        expect(page.locator("#explain-text")).to_have_attribute("data-state", "ready", timeout=TIMEOUT_MS)
        expected = api(server, "/v1/explain", {"text": text, "top": 5})
        tokens = page.eval_on_selector_all(
            "#explain-text .tok",
            "els => els.map(e => ({id: Number(e.dataset.tokenId), text: e.querySelector('.t').textContent,"
            " prob: e.dataset.prob, rank: e.dataset.rank, tip: e.querySelector('.tip').textContent}))",
        )
        assert [t["id"] for t in tokens] == [t["token_id"] for t in expected["tokens"]]
        assert [t["text"] for t in tokens] == [t["text"] for t in expected["tokens"]]
        assert "".join(t["text"] for t in tokens) == text
        for shown, want in zip(tokens, expected["tokens"], strict=True):
            if want["prob"] is None:
                assert shown["prob"] == "" and "not predicted" in shown["tip"]
                continue
            assert float(shown["prob"]) == pytest.approx(want["prob"], abs=1e-12)
            assert int(shown["rank"]) == want["rank"]
            assert pct(want["prob"]) in shown["tip"]
            for alt in want["alternatives"]:
                assert json.dumps(alt["text"], ensure_ascii=False) in shown["tip"] and pct(alt["prob"]) in shown["tip"]
        # the tooltip shows on hover
        third = page.locator("#explain-text .tok").nth(2)
        third.hover()
        assert third.locator(".tip").is_visible()
        summary = page.locator("#explain-summary").inner_text()
        assert f"perplexity {expected['perplexity']:.2f}" in summary
        screenshot(page, artifacts, "explain")
        # colour by rank, then the word-level view
        page.select_option("#explain-colour", "rank")
        assert "first choice" in page.locator("#explain-legend").inner_text()
        page.select_option("#explain-unit", "words")
        words = page.eval_on_selector_all(
            "#explain-text .tok", "els => els.map(e => [e.querySelector('.t').textContent, e.dataset.prob])"
        )
        assert [w[0] for w in words] == [w["text"] for w in expected["words"]]
        for (_, prob), want in zip(words, expected["words"], strict=True):
            assert (prob == "") if want["prob"] is None else float(prob) == pytest.approx(want["prob"], abs=1e-12)


@pytest.mark.slow
def test_generate_with_a_seed_equals_the_api_and_nextword_generate(
    browser: Any, server: str, artifacts: Path, hf_gen: nextword.Generator
) -> None:
    settings = {"max_tokens": 16, "temperature": 0.9, "top_k": 40, "top_p": 0.95, "no_repeat_ngram_size": 2, "seed": 7}
    with playground_page(browser, server) as p:
        page = p.page
        wait_ready(page)
        page.fill("#text", PROMPT)
        page.click("#tab-generate")
        for field, value in [
            ("#gen-max", 16),
            ("#gen-temp", 0.9),
            ("#gen-topk", 40),
            ("#gen-topp", 0.95),
            ("#gen-ngram", 2),
            ("#gen-seed", 7),
        ]:
            page.fill(field, str(value))
        page.check("#gen-probs")
        page.click("#gen-run")
        page.wait_for_selector("#gen-output[data-state=done]")
        shown = page.locator("#gen-output").get_attribute("data-text")
        expected = api(server, "/v1/completions", {"prompt": PROMPT, **settings, "logprobs": 5})["choices"][0]
        assert shown == expected["text"]
        local = hf_gen.generate(
            PROMPT,
            max_new_tokens=16,
            do_sample=True,
            temperature=0.9,
            top_k=40,
            top_p=0.95,
            no_repeat_ngram_size=2,
            seed=7,
        )
        assert shown == local.text
        assert page.locator("#gen-output .prompt").inner_text() == PROMPT
        # show probabilities: one span per generated token, with the API's probability
        spans = page.eval_on_selector_all(
            "#gen-output .generated .tok", "els => els.map(e => [e.querySelector('.t').textContent, e.dataset.prob])"
        )
        lp = expected["logprobs"]
        assert [s[0] for s in spans] == lp["tokens"]
        assert [float(s[1]) for s in spans] == pytest.approx([math.exp(x) for x in lp["token_logprobs"]], abs=1e-9)
        page.locator("#gen-output .generated .tok").first.hover()
        screenshot(page, artifacts, "generate")
        page.uncheck("#gen-probs")
        assert page.locator("#gen-output .generated .tok").count() == 0
        assert page.locator("#gen-output .generated").inner_text() == shown
        # greedy (temperature 0) equals greedy
        page.fill("#gen-temp", "0")
        page.fill("#gen-seed", "")
        page.click("#gen-run")
        page.wait_for_selector("#gen-output[data-state=done]")
        greedy = hf_gen.generate(PROMPT, max_new_tokens=16, no_repeat_ngram_size=2).text
        assert page.locator("#gen-output").get_attribute("data-text") == greedy
        # bad input is a clear message, not a request
        page.fill("#gen-max", "0")
        before = len(p.api_requests)
        page.click("#gen-run")
        assert "Max new tokens" in page.locator("#gen-status").inner_text()
        assert len(p.api_requests) == before
        # Append to my text
        page.fill("#gen-max", "16")
        page.click("#gen-append")
        assert page.input_value("#text") == PROMPT + greedy


@pytest.mark.slow
def test_api_key_is_asked_once_and_sent_with_every_call(browser: Any, keyed_server: str) -> None:
    # the browser logs each 401 answer as a failed resource: the only console errors allowed here
    allowed = ("status of 401",)
    with playground_page(browser, keyed_server, allowed=allowed) as p:
        page = p.page
        page.wait_for_selector("#key-panel:not([hidden])")
        assert page.locator("#work").is_hidden()
        assert page.evaluate("document.activeElement.id") == "key-input"
        page.keyboard.type("wrong-key")
        page.keyboard.press("Enter")
        expect(page.locator("#key-error")).to_contain_text("rejected", timeout=TIMEOUT_MS)
        assert page.locator("#work").is_hidden()
        assert page.evaluate("sessionStorage.length") == 0
        page.keyboard.press("Enter")  # an empty key is refused before any request
        assert "Enter the key" in page.locator("#key-error").inner_text()
        page.keyboard.type(KEY)
        page.keyboard.press("Enter")
        wait_ready(page)
        assert page.locator("#key-error").inner_text() == ""
        type_slowly(page, PROMPT)
        assert_suggestions_equal_the_api(page, keyed_server, PROMPT, KEY)
        # kept in sessionStorage only, and sent as a bearer token with every API call after it was accepted
        assert page.evaluate("Object.values(sessionStorage)").count(KEY) == 1
        assert page.evaluate("localStorage.length") == 0
        calls = p.api_requests
        after = calls[[i for i, (_, auth) in enumerate(calls) if auth == f"Bearer {KEY}"][0] :]
        assert after and all(auth == f"Bearer {KEY}" for _, auth in after)
        # a reload keeps the key for the tab: no question asked again
        page.reload()
        wait_ready(page)
        assert page.locator("#key-panel").is_hidden()
        # forgetting it asks again
        page.click("#key-forget")
        page.wait_for_selector("#key-panel:not([hidden])")
        assert page.evaluate("sessionStorage.length") == 0


@pytest.mark.slow
def test_korean_input_and_korean_page(browser: Any, server: str, artifacts: Path) -> None:
    with playground_page(browser, server, locale="ko-KR") as p:
        page = p.page
        wait_ready(page)
        assert page.evaluate("document.documentElement.lang") == "ko"
        assert page.locator("h1").inner_text() == "nextword 플레이그라운드"
        assert page.locator("#tab-suggest").inner_text() == "제안"
        assert page.locator("#tab-explain").inner_text() == "설명"
        assert page.locator("#tab-generate").inner_text() == "생성"
        assert page.locator("#lang").input_value() == "ko"
        text = "나는 고양이를 좋아한다. 왜냐하면"
        type_slowly(page, text)
        shown = assert_suggestions_equal_the_api(page, server, text)
        assert shown
        heading = page.locator("#suggest-heading").inner_text()
        assert heading == "다음 단어" or heading.endswith("더 입력할 나머지 글자")  # next words, or completions
        type_slowly(page, " 고양")
        assert_suggestions_equal_the_api(page, server, text + " 고양")
        screenshot(page, artifacts, "korean")
        # switch the page to English and back, with the keyboard-reachable selector
        page.select_option("#lang", "en")
        assert page.locator("h1").inner_text() == "nextword playground"
        assert page.evaluate("document.documentElement.lang") == "en"
        page.select_option("#lang", "ko")
        assert page.locator("#tab-suggest").inner_text() == "제안"


@pytest.mark.slow
def test_every_action_is_reachable_with_the_keyboard(browser: Any, server: str) -> None:
    with playground_page(browser, server) as p:
        page = p.page
        wait_ready(page)  # the text has the focus on arrival

        def focused() -> str:
            return str(page.evaluate("document.activeElement.id || document.activeElement.className"))

        def tab_to(target: str, shift: bool = False, limit: int = 40) -> None:
            for _ in range(limit):
                if focused() == target:
                    return
                page.keyboard.press("Shift+Tab" if shift else "Tab")
            assert focused() == target, f"{target} cannot be reached with the keyboard"

        type_slowly(page, "I love ca")
        wait_suggestions(page, "I love ca")
        page.keyboard.press("Tab")  # accept
        accepted = page.input_value("#text")
        assert accepted.startswith("I love ca") and len(accepted) > len("I love ca")
        wait_suggestions(page, accepted)
        page.keyboard.press("Escape")  # dismiss, then Tab leaves the text
        tab_to("tab-suggest")
        page.keyboard.press("ArrowRight")
        assert focused() == "tab-explain" and page.locator("#panel-explain").is_visible()
        page.wait_for_selector("#explain-text[data-state=ready]")
        tab_to("tok")  # the tokens take the focus, and show their tooltip when focused
        assert page.locator("#explain-text .tok:focus .tip").is_visible()
        tab_to("tab-explain", shift=True)
        page.keyboard.press("ArrowRight")
        assert focused() == "tab-generate"
        tab_to("gen-max")
        page.keyboard.press("Control+a")
        page.keyboard.type("6")
        page.keyboard.press("Enter")  # submits the form
        page.wait_for_selector("#gen-output[data-state=done]")
        generated = page.locator("#gen-output").get_attribute("data-text")
        assert generated
        tab_to("gen-probs")
        page.keyboard.press("Space")
        assert page.locator("#gen-output .generated .tok").count() >= 1
        tab_to("gen-append")
        page.keyboard.press("Enter")
        assert page.input_value("#text") == accepted + generated
        tab_to("lang", shift=True, limit=60)
        page.keyboard.press("ArrowDown")  # a select changes with the arrows
        assert page.evaluate("document.documentElement.lang") == "ko"


@pytest.mark.slow
def test_phone_sized_screen(browser: Any, server: str, artifacts: Path) -> None:
    phone = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}
    with playground_page(browser, server, locale="en-US", **phone) as p:
        page = p.page
        wait_ready(page)
        type_slowly(page, PROMPT)
        assert_suggestions_equal_the_api(page, server, PROMPT)
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], f"the page scrolls sideways on a phone: {width}"
        for tab in ("#tab-suggest", "#tab-explain", "#tab-generate"):
            box = page.locator(tab).bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
        first = page.locator("#suggestions li").first.bounding_box()
        assert first is not None and first["x"] + first["width"] <= 390
        screenshot(page, artifacts, "phone")
        page.tap("#tab-explain")
        page.wait_for_selector("#explain-text[data-state=ready]")
        page.locator("#explain-text .tok").nth(1).tap()
        assert page.locator("#explain-text .tok:focus .tip").is_visible()
