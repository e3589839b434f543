"""``nextword serve`` under hostile and greedy clients (issue 23), against a real server process
on 127.0.0.1: a battery of malformed and over-limit requests (each with its status and error),
the six defects found by the first battery as regression tests, fairness between a long request
and short ones, cancellation of requests whose client leaves or whose time runs out (measured by
the tokens the engine generated, read from ``/metrics``), a graceful SIGTERM, and ``/metrics``
counts that match the requests made.

Every loop here is bounded in count and time; no assertion is about speed. The model is a tiny
random GPT-2 (real vocabulary) with a 2048-token context, so that a long generation is long next
to a short one whatever the machine's load.
"""

from __future__ import annotations

import concurrent.futures
import json
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from nextword.testing.pytest_fixtures import require_module
from tests import servers
from tests.serve_process import ServeProcess, serve_process

require_module("uvicorn", "install nextword[serve]")
require_module("llama_cpp", "install nextword[llamacpp]")

PROMPT = "I love cats because"
LONG = 1900  # new tokens of a long generation (the context holds 2048)
WAIT_S = 60.0  # the bound of every polling loop


@pytest.fixture(scope="module")
def long_gguf(gpt2_vocab: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random GPT-2 (real vocabulary) with a 2048-token context, as Q8_0 GGUF."""
    require_module("transformers", "install nextword[hf]")
    from nextword_llamacpp.convert import convert

    from nextword.testing.models import build_tiny_gpt2

    folder = build_tiny_gpt2(tmp_path_factory.mktemp("tiny-long"), tokenizer=gpt2_vocab, n_positions=2048)
    return Path(convert(folder, folder / "tiny-long.Q8_0.gguf", type="q8_0"))


@pytest.fixture(scope="module")
def server(long_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """One server for the tests that need no fresh one: default limits, metrics on, an API key."""
    with serve_process(long_gguf, tmp_path_factory.mktemp("serve-shared")) as proc:
        yield proc


def _post(srv: ServeProcess, path: str, body: Any = None, *, content: bytes | None = None, **kw: Any) -> httpx.Response:
    headers = {**srv.headers, **kw.pop("headers", {})}
    if content is not None:
        return httpx.post(srv.base + path, content=content, headers=headers, timeout=120, **kw)
    return httpx.post(srv.base + path, json=body, headers=headers, timeout=120, **kw)


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + WAIT_S
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"not within {WAIT_S} s: {what}")


def _nested(depth: int) -> bytes:
    return b'{"prompt": ' + b"[" * depth + b"1" + b"]" * depth + b"}"


C = "/v1/completions"
OK = {"prompt": PROMPT, "max_tokens": 2}


def _case(
    name: str,
    path: str,
    body: Any,
    status: int,
    code: str | None,
    param: str | None,
    kind: str = "invalid_request_error",
) -> Any:
    return pytest.param(path, body, status, kind, code, param, id=name)


# (id, path, JSON body or raw bytes, expected status, error code or None, param or None); all of them are
# invalid_request_error
BATTERY = [
    _case("not-json", C, b"{not json", 400, "invalid_json", None),
    _case("empty-body", C, b"", 400, "invalid_json", None),
    _case("not-utf8", C, b'{"prompt": "\xff\xfe"}', 400, "invalid_json", None),
    _case("integer-5000-digits", C, b'{"prompt": "x", "max_tokens": 1' + b"0" * 5000 + b"}", 400, "invalid_json", None),
    _case("duplicate-keys-last-wins", C, b'{"prompt": "x", "n": 1, "n": 0}', 400, None, "n"),
    _case("array-body", C, [], 400, None, None),
    _case("string-body", C, "hello", 400, None, None),
    _case("no-prompt", C, {"max_tokens": 2}, 400, None, "prompt"),
    _case("prompt-number", C, {"prompt": 3}, 400, None, "prompt"),
    _case("prompt-empty-list", C, {"prompt": []}, 400, None, "prompt"),
    _case("prompt-empty-ids", C, {"prompt": [[]]}, 400, None, "prompt"),
    _case("prompt-float-ids", C, {"prompt": [1.5]}, 400, None, "prompt"),
    _case("prompt-bool-ids", C, {"prompt": [True]}, 400, None, "prompt"),
    _case("unknown-field", C, {**OK, "bogus": 1}, 400, None, "bogus"),
    _case("n-zero", C, {**OK, "n": 0}, 400, None, "n"),
    _case("n-over-limit", C, {**OK, "n": 17}, 400, "limit_exceeded", "n"),
    _case("max-tokens-negative", C, {**OK, "max_tokens": -1}, 400, None, "max_tokens"),
    _case("max-tokens-over-limit", C, {**OK, "max_tokens": 5000}, 400, "limit_exceeded", "max_tokens"),
    _case("max-tokens-string", C, {**OK, "max_tokens": "5"}, 400, None, "max_tokens"),
    _case("temperature-nan", C, b'{"prompt": "x", "temperature": NaN}', 400, None, None),
    _case("temperature-negative", C, {**OK, "temperature": -1}, 400, None, None),
    _case("temperature-string", C, {**OK, "temperature": "hot"}, 400, None, "temperature"),
    _case("top-p-two", C, {**OK, "top_p": 2}, 400, None, None),
    _case("seed-huge", C, {**OK, "seed": 2**70}, 400, None, None),
    _case("seed-negative", C, {**OK, "seed": -1}, 400, None, None),
    _case("logprobs-21", C, {**OK, "logprobs": 21}, 400, "limit_exceeded", "logprobs"),
    _case(
        "logprobs-vocab-echo",
        C,
        {"prompt": PROMPT * 12, "max_tokens": 1, "logprobs": 50257, "echo": True},
        400,
        "limit_exceeded",
        "logprobs",
    ),
    _case("logprobs-negative", C, {**OK, "logprobs": -1}, 400, None, "logprobs"),
    _case("stream-n-2", C, {**OK, "stream": True, "n": 2}, 400, None, "stream"),
    _case("stream-string", C, {**OK, "stream": "yes"}, 400, None, "stream"),
    _case("stream-options-unknown", C, {**OK, "stream_options": {"x": 1}}, 400, None, "stream_options"),
    _case("stop-17", C, {**OK, "stop": ["a"] * 17}, 400, None, "stop"),
    _case("stop-number", C, {**OK, "stop": 5}, 400, None, "stop"),
    _case("presence-penalty", C, {**OK, "presence_penalty": 0.5}, 400, None, "presence_penalty"),
    _case("logit-bias", C, {**OK, "logit_bias": {"1": 5}}, 400, None, "logit_bias"),
    _case("best-of", C, {**OK, "best_of": 3}, 400, None, "best_of"),
    _case("suffix", C, {**OK, "suffix": "x"}, 400, None, "suffix"),
    _case("min-tokens-over-max", C, {**OK, "min_tokens": 5}, 400, None, None),
    _case("foreign-model", C, {**OK, "model": "other"}, 404, "model_not_found", "model"),
    _case("path-model", C, {**OK, "model": "../../etc/passwd"}, 404, "model_not_found", "model"),
    _case("hub-model", C, {**OK, "model": "hf:gpt2"}, 404, "model_not_found", "model"),
    _case(
        "work-64x16",
        C,
        {"prompt": ["hi"] * 64, "n": 16, "max_tokens": 16, "temperature": 1},
        400,
        "limit_exceeded",
        "max_tokens",
    ),
    _case("prompts-65", C, {"prompt": ["hi"] * 65, "max_tokens": 1}, 400, "limit_exceeded", "prompt"),
    _case(
        "echo-logprob-entries",
        C,
        {"prompt": [PROMPT * 10] * 8, "n": 16, "max_tokens": 16, "echo": True, "logprobs": 20, "temperature": 1},
        400,
        "limit_exceeded",
        "logprobs",
    ),
    _case("token-id-huge", C, {"prompt": [10**9], "max_tokens": 1}, 400, None, "prompt"),
    _case("token-id-negative", C, {"prompt": [-1], "max_tokens": 1}, 400, None, "prompt"),
    _case("context-exceeded", C, {"prompt": " word" * 2100, "max_tokens": 1}, 400, "context_length_exceeded", "prompt"),
    _case(
        "stream-context-exceeded",
        C,
        {"prompt": " word" * 2100, "stream": True},
        400,
        "context_length_exceeded",
        "prompt",
    ),
    _case("nested-100000", C, _nested(100_000), 400, "limit_exceeded", None),
    _case("nested-33", C, _nested(33), 400, "limit_exceeded", None),
    _case("body-2mb", C, b'{"prompt": "' + b"a" * (2 << 20) + b'"}', 413, "limit_exceeded", None),
    _case("tokenize-unknown-field", "/tokenize", {"prompt": "x", "bogus": 1}, 400, None, "bogus"),
    _case("tokenize-no-prompt", "/tokenize", {}, 400, None, "prompt"),
    _case("tokenize-too-long", "/tokenize", {"prompt": "a" * 70_000}, 400, "limit_exceeded", "prompt"),
    _case(
        "tokenize-no-special",
        "/tokenize",
        {"prompt": "x", "add_special_tokens": False},
        400,
        None,
        "add_special_tokens",
    ),
    _case("detokenize-unknown-field", "/detokenize", {"tokens": [1], "bogus": 1}, 400, None, "bogus"),
    _case("detokenize-strings", "/detokenize", {"tokens": ["a"]}, 400, None, "tokens"),
    _case("detokenize-huge-id", "/detokenize", {"tokens": [10**9]}, 400, None, "tokens"),
    _case("detokenize-too-many", "/detokenize", {"tokens": [1] * 70_000}, 400, "limit_exceeded", "tokens"),
    _case("next-words-k-0", "/v1/next_words", {"prompt": PROMPT, "k": 0}, 400, None, "k"),
    _case("next-words-k-101", "/v1/next_words", {"prompt": PROMPT, "k": 101}, 400, None, "k"),
    _case("next-words-unit", "/v1/next_words", {"prompt": PROMPT, "unit": "char"}, 400, None, "unit"),
    _case("next-words-beam", "/v1/next_words", {"prompt": PROMPT, "beam_width": 1000}, 400, None, "beam_width"),
    _case("next-words-unknown", "/v1/next_words", {"prompt": PROMPT, "bogus": 1}, 400, None, "bogus"),
    _case("explain-top-21", "/v1/explain", {"text": PROMPT, "top": 21}, 400, "limit_exceeded", "top"),
    _case("explain-too-long", "/v1/explain", {"text": "a" * 9000}, 400, "limit_exceeded", "text"),
    _case("explain-complete", "/v1/explain", {"text": PROMPT, "complete": "always"}, 400, None, "complete"),
    _case("explain-no-text", "/v1/explain", {}, 400, None, "text"),
]


@pytest.mark.parametrize(
    ("path", "body", "status", "kind", "code", "param"),
    BATTERY,
)
def test_hostile_request_gets_its_error(
    server: ServeProcess, path: str, body: Any, status: int, kind: str, code: str | None, param: str | None
) -> None:
    response = _post(server, path, content=body) if isinstance(body, bytes) else _post(server, path, body)
    assert response.status_code == status, response.text[:500]
    error = response.json()["error"]
    assert error["type"] == kind
    if code is not None:
        assert error["code"] == code
    if param is not None:
        assert error["param"] == param
    if code == "limit_exceeded":  # the message names the limit and its value
        assert "over the server's limit max_" in error["message"] and "=" in error["message"]


def test_keys_methods_and_paths(server: ServeProcess) -> None:
    base = server.base
    assert httpx.get(base + "/health").status_code == 200  # the one endpoint without the key
    for path in ("/v1/models", "/metrics"):
        assert httpx.get(base + path).status_code == 401
    wrong = httpx.post(base + C, json=OK, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    assert httpx.post(base + C, json=OK).status_code == 401
    assert httpx.get(base + C, headers=server.headers).status_code == 405
    assert httpx.get(base + "/v1/nothing", headers=server.headers).status_code == 404
    # The server still answers well-formed requests after all of the above.
    assert _post(server, C, {**OK, "temperature": 0}).status_code == 200


# ---- the six defects of the first battery ------------------------------------------------------


def test_regression_logprobs_are_capped_by_max_logprobs(server: ServeProcess) -> None:
    before = server.metric("nextword_generation_tokens_total")
    big = _post(server, C, {"prompt": PROMPT * 12, "max_tokens": 1, "logprobs": 50257, "echo": True})
    assert big.status_code == 400 and "max_logprobs=20" in big.json()["error"]["message"]
    assert server.metric("nextword_rejections_total", reason="max_logprobs") >= 1
    assert server.metric("nextword_generation_tokens_total") == before  # refused before any engine work
    ok = _post(server, C, {"prompt": PROMPT, "max_tokens": 1, "logprobs": 20, "echo": True, "temperature": 0})
    assert ok.status_code == 200 and len(ok.json()["choices"][0]["logprobs"]["top_logprobs"][-1]) <= 20
    model = httpx.get(server.base + "/v1/models", headers=server.headers).json()["data"][0]
    assert model["nextword"]["max_logprobs"] == 20 and model["nextword"]["limits"]["max_request_tokens"] == 8192


def test_regression_greedy_work_is_capped(server: ServeProcess) -> None:
    greedy = _post(server, C, {"prompt": ["hi"] * 64, "n": 16, "max_tokens": 16, "temperature": 1})
    assert greedy.status_code == 400
    assert "max_request_tokens=8192" in greedy.json()["error"]["message"]


def test_regression_deeply_nested_json_is_a_400(server: ServeProcess) -> None:
    response = _post(server, C, content=_nested(100_000))
    assert response.status_code == 400
    assert "max_json_depth=32" in response.json()["error"]["message"]
    # Nesting inside strings does not count; a prompt of token-id lists (depth 3) is fine.
    fine = _post(server, C, {"prompt": ["[[[[" * 20, [50, 51]], "max_tokens": 1, "temperature": 0})
    assert fine.status_code == 200, fine.text


def test_regression_tokenize_refuses_unknown_fields_and_long_texts(server: ServeProcess) -> None:
    assert _post(server, "/tokenize", {"prompt": "x", "bogus": 1}).status_code == 400
    assert _post(server, "/detokenize", {"tokens": [1], "bogus": 1}).status_code == 400
    too_long = _post(server, "/tokenize", {"prompt": "a" * 1_000_000})
    assert too_long.status_code == 400 and "max_tokenize_chars=65536" in too_long.json()["error"]["message"]
    tokens = _post(server, "/tokenize", {"prompt": PROMPT}).json()["tokens"]
    assert _post(server, "/detokenize", {"tokens": tokens}).json() == {"prompt": PROMPT}


def test_regression_the_model_path_is_never_shown(server: ServeProcess, long_gguf: Path) -> None:
    folder = str(long_gguf.parent)
    models = httpx.get(server.base + "/v1/models", headers=server.headers)
    assert models.json()["data"][0]["id"] == long_gguf.name
    completion = _post(server, C, {**OK, "model": long_gguf.name})
    by_path = _post(server, C, {**OK, "model": str(long_gguf)})  # the path the operator gave works too
    foreign = _post(server, C, {**OK, "model": "other"})
    too_long = _post(server, C, {"prompt": " word" * 2100, "max_tokens": 1})
    assert completion.status_code == by_path.status_code == 200
    for response in (models, completion, by_path, foreign, too_long):
        assert folder not in response.text
    assert long_gguf.name in foreign.json()["error"]["message"]


def test_regression_non_streamed_work_stops_when_its_client_disconnects(server: ServeProcess) -> None:
    _cancelled_on_disconnect(server, stream=False)


def test_regression_sigterm_mid_stream_ends_it_cleanly(long_gguf: Path, tmp_path: Path) -> None:
    with serve_process(long_gguf, tmp_path, "--shutdown-grace", "0.2") as srv:
        body = {"prompt": PROMPT, "max_tokens": LONG, "temperature": 0, "stream": True}
        with httpx.Client(timeout=120) as http, http.stream("POST", srv.base + C, json=body, headers=srv.headers) as r:
            lines = r.iter_lines()
            first = next(line for line in lines if line.startswith("data:"))
            assert json.loads(first[5:])["choices"][0]["text"] is not None
            srv.proc.send_signal(signal.SIGTERM)
            events = [line[5:].strip() for line in lines if line.startswith("data:")]
        assert srv.proc.wait(60) == 0
        assert events[-1] == "[DONE]"
        error = json.loads(events[-2])["error"]
        assert error["code"] == "server_shutting_down" and error["type"] == "server_error"
        assert len(events) < LONG  # cut short: the grace period was over long before the end
        stderr = srv.stderr.read_text()
        assert stderr.startswith("nextword serve: ") and len(stderr.strip().splitlines()) == 1, stderr
        assert srv.stdout.read_text() == ""


def test_sigterm_lets_a_running_stream_finish_within_the_grace(long_gguf: Path, tmp_path: Path) -> None:
    with serve_process(long_gguf, tmp_path, "--shutdown-grace", "120") as srv:
        body = {"prompt": PROMPT, "max_tokens": 64, "temperature": 0, "stream": True}
        with httpx.Client(timeout=120) as http, http.stream("POST", srv.base + C, json=body, headers=srv.headers) as r:
            lines = r.iter_lines()
            next(line for line in lines if line.startswith("data:"))
            srv.proc.send_signal(signal.SIGTERM)
            events = [line[5:].strip() for line in lines if line.startswith("data:")]
        assert srv.proc.wait(60) == 0
        assert events[-1] == "[DONE]" and json.loads(events[-2])["choices"][0]["finish_reason"] in ("length", "stop")
        assert len(srv.stderr.read_text().strip().splitlines()) == 1


# ---- cancellation ------------------------------------------------------------------------------


def _raw_request(srv: ServeProcess, body: dict[str, Any]) -> socket.socket:
    """Send a POST to /v1/completions on a raw socket (to be closed by the caller, unread)."""
    data = json.dumps(body).encode()
    host, port = srv.base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    head = (
        f"POST {C} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\nAuthorization: {srv.headers['Authorization']}\r\n\r\n"
    )
    sock.sendall(head.encode() + data)
    return sock


def _cancelled_on_disconnect(srv: ServeProcess, *, stream: bool) -> None:
    prompts = 1 if stream else 4
    body = {"prompt": PROMPT if stream else [PROMPT] * prompts, "max_tokens": LONG, "temperature": 0, "stream": stream}
    tokens_before = srv.metric("nextword_generation_tokens_total")
    cancelled_before = srv.metric("nextword_cancellations_total", reason="disconnect")
    sock = _raw_request(srv, body)
    _wait_until(lambda: srv.metric("nextword_generation_tokens_total") > tokens_before, "the request generates")
    sock.close()
    _wait_until(
        lambda: srv.metric("nextword_cancellations_total", reason="disconnect") > cancelled_before,
        "the request is cancelled",
    )
    assert srv.metric("nextword_requests_running") == 0
    generated = srv.metric("nextword_generation_tokens_total") - tokens_before
    assert 0 < generated < prompts * LONG  # the engine stopped early
    # Nothing runs on in the background: a 3-token request adds exactly its 3 tokens.
    after = srv.metric("nextword_generation_tokens_total")
    assert _post(srv, C, {"prompt": PROMPT, "max_tokens": 3, "temperature": 0}).status_code == 200
    assert srv.metric("nextword_generation_tokens_total") - after == 3


def test_streamed_work_stops_when_its_client_disconnects(server: ServeProcess) -> None:
    _cancelled_on_disconnect(server, stream=True)


@pytest.fixture(scope="module")
def timeout_server(
    server: ServeProcess, long_gguf: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServeProcess, str]]:
    """A server whose requests time out after a quarter of the time a long generation takes on
    this machine (timed first on the shared server), and that limit as the server prints it."""
    start = time.monotonic()
    assert _post(server, C, {"prompt": PROMPT, "max_tokens": LONG, "temperature": 0}).status_code == 200
    limit = f"{max(0.05, (time.monotonic() - start) / 4):.2f}"
    with serve_process(long_gguf, tmp_path_factory.mktemp("serve-timeout"), "--request-timeout", limit) as proc:
        yield proc, f"{float(limit):g}"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_request_past_its_timeout_is_cancelled(timeout_server: tuple[ServeProcess, str], stream: bool) -> None:
    srv, limit = timeout_server
    before = srv.metric("nextword_generation_tokens_total")
    body = {"prompt": PROMPT, "max_tokens": LONG, "temperature": 0, "stream": stream}
    if stream:
        with httpx.Client(timeout=120) as http, http.stream("POST", srv.base + C, json=body, headers=srv.headers) as r:
            events = [line[5:].strip() for line in r.iter_lines() if line.startswith("data:")]
        assert events[-1] == "[DONE]"
        error = json.loads(events[-2])["error"]
    else:
        response = _post(srv, C, body)
        assert response.status_code == 504
        error = response.json()["error"]
    assert error["code"] == "request_timeout" and f"request_timeout_s={limit} " in error["message"]
    assert srv.metric("nextword_requests_running") == 0
    assert srv.metric("nextword_generation_tokens_total") - before < LONG  # stopped before its end


# ---- fairness and the queue ----------------------------------------------------------------------


def test_short_requests_are_answered_while_a_long_one_runs(server: ServeProcess) -> None:
    """With the default --parallel (the llamacpp backend's 8 sequence slots), 8 short requests
    sent while a long stream runs are all answered before that stream ends."""
    model = httpx.get(server.base + "/v1/models", headers=server.headers).json()["data"][0]
    assert model["nextword"]["limits"]["parallel"] == 8
    order: list[str] = []
    lock = threading.Lock()
    started = threading.Event()

    def long() -> int:
        body = {"prompt": PROMPT, "max_tokens": LONG, "temperature": 0, "stream": True}
        n = 0
        with (
            httpx.Client(timeout=300) as http,
            http.stream("POST", server.base + C, json=body, headers=server.headers) as r,
        ):
            for line in r.iter_lines():
                if line.startswith("data:"):
                    n += 1
                    started.set()
        with lock:
            order.append("long")
        return n

    def short(i: int) -> str:
        response = _post(server, C, {"prompt": f"{PROMPT} {i}", "max_tokens": 4, "temperature": 0})
        assert response.status_code == 200
        with lock:
            order.append(f"short-{i}")
        return str(response.json()["choices"][0]["text"])

    with concurrent.futures.ThreadPoolExecutor(max_workers=9) as pool:
        long_future = pool.submit(long)
        assert started.wait(WAIT_S)
        shorts = [pool.submit(short, i) for i in range(8)]
        for future in shorts:
            future.result(timeout=WAIT_S)
        with lock:
            answered_while_running = "long" not in order
        assert long_future.result(timeout=300) > 8
    assert answered_while_running, order
    assert order[-1] == "long"


def test_a_full_queue_answers_503_with_retry_after(long_gguf: Path, tmp_path: Path) -> None:
    with serve_process(long_gguf, tmp_path, "--parallel", "1", "--max-queue", "1") as srv:
        body = {"prompt": PROMPT, "max_tokens": LONG, "temperature": 0}
        running = _raw_request(srv, body)  # holds the one slot
        _wait_until(lambda: srv.metric("nextword_requests_running") == 1, "the first request runs")
        waiting = _raw_request(srv, body)  # the one place in the queue
        _wait_until(lambda: srv.metric("nextword_requests_waiting") == 1, "the second request waits")
        refused = _post(srv, C, {**OK, "temperature": 0})
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "queue_full"
        assert "max_queue=1" in refused.json()["error"]["message"]
        assert int(refused.headers["retry-after"]) >= 1
        assert srv.metric("nextword_rejections_total", reason="queue_full") == 1
        running.close()
        waiting.close()
        _wait_until(lambda: srv.metric("nextword_requests_running") == 0, "both are cancelled")
        assert _post(srv, C, {**OK, "temperature": 0}).status_code == 200


# ---- metrics -----------------------------------------------------------------------------------


def test_metrics_count_the_requests_made(server: ServeProcess) -> None:
    before = server.metrics()

    def delta(name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        return server.metrics().get(key, 0.0) - before.get(key, 0.0)

    usage = {"prompt": 0, "completion": 0}
    for i in range(3):
        out = _post(server, C, {"prompt": f"{PROMPT} {i}", "max_tokens": 5, "temperature": 0}).json()
        usage["prompt"] += out["usage"]["prompt_tokens"]
        usage["completion"] += out["usage"]["completion_tokens"]
    body = {
        "prompt": PROMPT,
        "max_tokens": 4,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with httpx.Client(timeout=60) as http, http.stream("POST", server.base + C, json=body, headers=server.headers) as r:
        chunks = [json.loads(line[5:]) for line in r.iter_lines() if line.startswith("data:") and "[DONE]" not in line]
    usage["prompt"] += chunks[-1]["usage"]["prompt_tokens"]
    usage["completion"] += chunks[-1]["usage"]["completion_tokens"]
    for _ in range(2):
        assert _post(server, C, {**OK, "logprobs": 99}).status_code == 400
    assert _post(server, "/tokenize", {"prompt": PROMPT}).status_code == 200

    assert delta("nextword_requests_total", endpoint=C, status="200") == 4
    assert delta("nextword_requests_total", endpoint=C, status="400") == 2
    assert delta("nextword_requests_total", endpoint="/tokenize", status="200") == 1
    assert delta("nextword_rejections_total", reason="max_logprobs") == 2
    assert delta("nextword_prompt_tokens_total") == usage["prompt"]
    assert delta("nextword_generation_tokens_total") == usage["completion"]
    assert delta("nextword_time_to_first_token_seconds_count") == 4
    assert delta("nextword_sequences_total", outcome="finished") == 4
    after = server.metrics()
    assert after[("nextword_requests_waiting", frozenset())] == 0
    assert after[("nextword_requests_running", frozenset())] == 0


def test_metrics_are_off_by_default(long_gguf: Path, tmp_path: Path) -> None:
    port = servers.free_port()
    args = ["-m", "nextword", "serve", "--backend", "llamacpp", "--model", str(long_gguf), "--port", str(port)]
    with servers.process(args, "/health", port, tmp_path / "serve.log") as base:
        assert httpx.get(base + "/metrics").status_code == 404
