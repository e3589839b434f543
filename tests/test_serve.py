"""``nextword serve``: the official ``openai`` client against it, its own endpoints, errors, bounds,
the API key, 16 concurrent clients, and a client that leaves mid-stream."""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import nextword
from nextword.serve.app import create_app
from nextword.serve.requests import Limits
from nextword.testing.pytest_fixtures import require_module
from tests import servers

openai = require_module("openai", "install nextword[test]")
require_module("uvicorn", "install nextword[serve]")

PROMPT = "I love cats because"


@pytest.fixture(scope="module")
def served(hf_gen: nextword.Generator) -> Iterator[tuple[str, Any]]:
    app = create_app(hf_gen, name="tiny", limits=Limits(max_body_bytes=64 * 1024, max_tokens=256))
    with servers.app_in_thread(app) as base:
        yield base, app


@pytest.fixture(scope="module")
def client(served: tuple[str, Any]) -> Any:
    return openai.OpenAI(base_url=served[0] + "/v1", api_key="unused", max_retries=0, timeout=60)


def test_completion_equals_local_greedy(client: Any, hf_gen: nextword.Generator) -> None:
    local = hf_gen.generate(PROMPT, max_new_tokens=8)
    out = client.completions.create(
        model="tiny", prompt=PROMPT, max_tokens=8, temperature=0, extra_body={"return_token_ids": True}
    )
    choice = out.choices[0]
    assert choice.text == local.text
    assert tuple(choice.model_extra["token_ids"]) == local.token_ids
    assert choice.finish_reason == "length"
    assert out.usage.prompt_tokens == local.prompt_tokens and out.usage.completion_tokens == 8
    # A list prompt, token-id prompts, and n > 1 with a seed.
    ids = hf_gen.tokenize(PROMPT)
    many = client.completions.create(model="tiny", prompt=[PROMPT, ids], max_tokens=8, temperature=0)
    assert [c.text for c in many.choices] == [local.text, local.text]
    sampled = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=6, n=3, seed=4, temperature=1.0)
    again = hf_gen.generate(PROMPT, max_new_tokens=6, do_sample=True, num_return_sequences=3, seed=4)
    assert [c.text for c in sampled.choices] == again.texts


def test_stream_joins_to_the_completion(client: Any, hf_gen: nextword.Generator) -> None:
    local = hf_gen.generate(PROMPT, max_new_tokens=12, stop=[" the"])
    events = list(
        client.completions.create(model="tiny", prompt=PROMPT, max_tokens=12, temperature=0, stop=[" the"], stream=True)
    )
    assert "".join(e.choices[0].text for e in events) == local.text
    assert events[-1].choices[0].finish_reason == ("length" if local.finish_reason == "length" else "stop")
    assert all(e.choices[0].text for e in events[:-1])


def test_logprobs_and_echo_equal_local_prediction_and_score(client: Any, hf_gen: nextword.Generator) -> None:
    out = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=1, temperature=0, logprobs=5)
    top = out.choices[0].logprobs.top_logprobs[0]
    local = hf_gen.predict_next(PROMPT, k=5, unit="token")
    assert list(top) == [c.text for c in local]
    for c in local:
        assert top[c.text] == pytest.approx(c.logprob, abs=1e-5)
    echo = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=0, echo=True, logprobs=0)
    lp = echo.choices[0].logprobs
    assert echo.choices[0].text == PROMPT
    assert lp.token_logprobs[0] is None
    assert lp.token_logprobs[1:] == pytest.approx(hf_gen.score(PROMPT).logprobs, abs=1e-5)
    assert "".join(lp.tokens) == PROMPT


def test_errors_are_openai_errors(client: Any, served: tuple[str, Any]) -> None:
    with pytest.raises(openai.BadRequestError, match="unknown field"):
        client.completions.create(model="tiny", prompt=PROMPT, extra_body={"no_such_option": 1})
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.completions.create(model="tiny", prompt=PROMPT, temperature=-1)
    with pytest.raises(openai.BadRequestError, match="presence_penalty"):
        client.completions.create(model="tiny", prompt=PROMPT, presence_penalty=0.5)
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="tiny", prompt=" word" * 400, max_tokens=1)
    assert info.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.completions.create(model="tiny", prompt=PROMPT, max_tokens=100_000)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="other", prompt=PROMPT)
    base = served[0]
    big = httpx.post(base + "/v1/completions", content=b"{" + b" " * (70 * 1024) + b"}")
    assert big.status_code == 413 and "error" in big.json()
    bad = httpx.post(base + "/v1/completions", content=b"{not json")
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    assert httpx.get(base + "/v1/nothing").status_code == 404
    assert httpx.get(base + "/v1/completions").status_code == 405


def test_models_health_tokenize_and_nextword_endpoints(served: tuple[str, Any], hf_gen: nextword.Generator) -> None:
    base = served[0]
    assert httpx.get(base + "/health").json() == {"status": "ok"}
    model = httpx.get(base + "/v1/models").json()["data"][0]
    assert model["id"] == "tiny" and model["max_model_len"] == hf_gen.context_length
    assert model["nextword"]["capabilities"]["logits"] is True
    tokens = httpx.post(base + "/tokenize", json={"prompt": PROMPT}).json()
    assert tokens["tokens"] == hf_gen.tokenize(PROMPT) and tokens["count"] == len(tokens["tokens"])
    assert httpx.post(base + "/detokenize", json={"tokens": tokens["tokens"]}).json() == {"prompt": PROMPT}
    words = httpx.post(base + "/v1/next_words", json={"prompt": PROMPT, "k": 3}).json()
    local = hf_gen.predict_next(PROMPT, k=3)
    assert [c["text"] for c in words["candidates"]] == [c.text for c in local]
    assert [c["prob"] for c in words["candidates"]] == pytest.approx([c.prob for c in local], abs=1e-9)
    explained = httpx.post(base + "/v1/explain", json={"text": PROMPT, "top": 2}).json()
    assert [t["token_id"] for t in explained["tokens"]] == hf_gen.tokenize(PROMPT)
    completed = httpx.post(base + "/v1/explain", json={"text": "The cat sat on the ma", "top": 2, "complete": "word"})
    local_completion = hf_gen.predict_next("The cat sat on the ma", k=2, complete="word")
    assert completed.json()["completion"]["typed"] == local_completion.typed == " ma"
    assert [c["text"] for c in completed.json()["completion"]["candidates"]] == [c.text for c in local_completion]
    bad_complete = httpx.post(base + "/v1/explain", json={"text": PROMPT, "complete": "always"})
    assert bad_complete.status_code == 400 and bad_complete.json()["error"]["param"] == "complete"
    assert httpx.post(base + "/detokenize", json={"tokens": [10**9]}).status_code == 400


def test_api_key(hf_gen: nextword.Generator) -> None:
    with servers.app_in_thread(create_app(hf_gen, name="tiny", api_key="s3cret")) as base:
        assert httpx.get(base + "/health").status_code == 200
        assert httpx.get(base + "/v1/models").status_code == 401
        wrong = httpx.post(base + "/tokenize", json={"prompt": "x"}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
        ok = openai.OpenAI(base_url=base + "/v1", api_key="s3cret", max_retries=0)
        answer = ok.completions.create(model="tiny", prompt=PROMPT, max_tokens=2, temperature=0).choices[0].text
        assert answer == hf_gen.generate(PROMPT, max_new_tokens=2).text  # the key let the request through


@pytest.mark.slow
@pytest.mark.parametrize("parallel", [1, 8])
def test_sixteen_concurrent_clients_and_a_malformed_burst(hf_gen: nextword.Generator, parallel: int) -> None:
    app = create_app(hf_gen, name="tiny", limits=Limits(parallel=parallel))
    with servers.app_in_thread(app) as base:
        _sixteen_clients(base)


def _sixteen_clients(base: str) -> None:
    bodies = [
        {"model": "tiny", "prompt": f"{PROMPT} {i}", "max_tokens": 6, "temperature": 0.0 if i % 2 else 0.9, "seed": i}
        for i in range(16)
    ]
    with httpx.Client(timeout=120) as http:
        sequential = [http.post(base + "/v1/completions", json=b).json()["choices"][0]["text"] for b in bodies]

    def one(i: int) -> Any:
        with httpx.Client(timeout=120) as http:
            if i >= 16:  # malformed requests, mixed in
                bad = [b"{", b"[]", json.dumps({"prompt": 3}).encode(), json.dumps({"prompt": "x", "n": 0}).encode()]
                return http.post(base + "/v1/completions", content=bad[i % 4]).status_code
            return http.post(base + "/v1/completions", json=bodies[i]).json()["choices"][0]["text"]

    with concurrent.futures.ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(one, range(32)))
    assert results[:16] == sequential
    assert all(400 <= code < 500 for code in results[16:])
    assert httpx.get(base + "/health").status_code == 200


@pytest.mark.slow
def test_disconnect_mid_stream_frees_the_slot(served: tuple[str, Any]) -> None:
    base, app = served
    queue = app.state.server.queue
    body = {"model": "tiny", "prompt": PROMPT, "max_tokens": 200, "temperature": 0, "stream": True}
    with httpx.Client(timeout=60) as http, http.stream("POST", base + "/v1/completions", json=body) as response:
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith("data:"))
        assert json.loads(first[5:])["choices"][0]["text"]
        assert queue.running == 1
    # The client is gone: the slot frees (bounded wait) and the next request is served.
    import time

    end = time.monotonic() + 30
    while queue.running and time.monotonic() < end:
        time.sleep(0.05)
    assert not queue.running, "the abandoned stream still holds the model"
    ok = httpx.post(base + "/v1/completions", json={"model": "tiny", "prompt": PROMPT, "max_tokens": 2}, timeout=60)
    assert ok.status_code == 200


@pytest.mark.slow
def test_command_line_serves_on_loopback(tiny_gguf: Any, tmp_path: Path) -> None:
    port = servers.free_port()
    args = [
        "-m",
        "nextword",
        "serve",
        "--backend",
        "llamacpp",
        "--model",
        str(tiny_gguf("q8_0")),
        "--port",
        str(port),
        "--api-key",
        "k3y",
        "--served-model-name",
        "tiny-q8",
    ]
    with servers.process(args, "/health", port, tmp_path / "serve.log") as base:
        assert httpx.get(base + "/v1/models").status_code == 401
        out = openai.OpenAI(base_url=base + "/v1", api_key="k3y", max_retries=0).completions.create(
            model="tiny-q8", prompt=PROMPT, max_tokens=4, temperature=0
        )
        local = nextword.load("llamacpp", str(tiny_gguf("q8_0"))).generate(PROMPT, max_new_tokens=4)
        assert out.choices[0].text == local.text
    assert "k3y" not in (tmp_path / "serve.log").read_text()


def test_a_client_sending_its_growing_text_gets_the_kept_state(
    served: tuple[str, Any], hf_gen: nextword.Generator, tiny_gpt2_dir: Path
) -> None:
    """/v1/next_words for a text that grows word by word, as a keyboard client sends it: the
    server reads only what each request adds to the text it read before (the generator's kept
    prompt states), and every answer is a fresh generator's (within hf's 1e-6 bound)."""
    from nextword_hf.plugin import SPEC

    words = (
        "Once upon a time there was a small cat that loved to sleep in the warm sun all day, and every "
        "evening it walked along the river to watch the boats come home with their nets full of fish. "
        "The fishermen knew the cat well and always kept a little of the catch for it"
    ).split()
    prompts = [" ".join(words[:n]) for n in range(30, len(words) + 1)]  # past the first 32-token block
    fresh = SPEC.load(str(tiny_gpt2_dir), device="cpu")
    expected = [fresh.predict_next(p, k=3) for p in prompts]
    fresh.close()
    gen: Any = hf_gen
    gen.reset_cache()
    before = gen.prompt_states.evaluated_tokens
    with httpx.Client(base_url=served[0], timeout=60) as http:
        for prompt, want in zip(prompts, expected, strict=True):
            got = http.post("/v1/next_words", json={"prompt": prompt, "k": 3}).json()
            assert [c["text"] for c in got["candidates"]] == [c.text for c in want]
            assert [c["prob"] for c in got["candidates"]] == pytest.approx([c.prob for c in want], abs=1e-6)
    read = gen.prompt_states.evaluated_tokens - before
    total = sum(len(hf_gen.tokenize(p)) for p in prompts)
    assert 2 * read < total, (read, total)  # 386 of 1,148 here: the tails after 32-token block ends
