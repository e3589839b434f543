"""The ``openai`` backend: against ``nextword serve --backend hf`` (same answers as the local hf
backend, the conformance suite) and against a server nobody here wrote, llama-cpp-python's own
(``python -m llama_cpp.server``: same greedy ids as the local llamacpp backend, options it lacks
raise, the conformance suite)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import nextword
from nextword import ModelLoadError, NextwordError, UnsupportedOption
from nextword.serve.app import create_app
from nextword.serve.limits import Limits
from nextword.testing import GeneratorConformance
from nextword.testing.pytest_fixtures import require_module
from tests import servers

require_module("httpx", "install nextword[openai]")
require_module("uvicorn", "install nextword[serve]")

PROMPTS = ("I love cats because", "The weather today is", "Once upon a time")


@pytest.fixture(scope="module")
def nextword_server(hf_gen: nextword.Generator) -> Iterator[str]:
    # A server that lets its clients have the whole vocabulary's log-probabilities (its default
    # is 20 per position, as vLLM's: --max-logprobs raises it).
    limits = Limits(max_logprobs=50257, max_logprob_entries=1 << 26)
    with servers.app_in_thread(create_app(hf_gen, name="tiny", limits=limits)) as base:
        yield base + "/v1"


@pytest.fixture(scope="module")
def remote(nextword_server: str) -> nextword.Generator:
    return nextword.load("openai", "tiny", base_url=nextword_server)


def test_same_answers_as_the_local_backend(remote: nextword.Generator, hf_gen: nextword.Generator) -> None:
    assert remote.capabilities.logits is False and remote.capabilities.max_logprobs == 50257
    for prompt in PROMPTS:
        local = hf_gen.generate(prompt, max_new_tokens=12)
        there = remote.generate(prompt, max_new_tokens=12)
        assert there.token_ids == local.token_ids and there.text == local.text
        assert there.finish_reason == local.finish_reason
        by_ids = remote.generate_tokens(hf_gen.tokenize(prompt), max_new_tokens=12)
        assert by_ids.token_ids == local.token_ids and by_ids.text == local.text
        streamed = remote.stream_tokens(hf_gen.tokenize(prompt), max_new_tokens=12)
        assert streamed.text() == local.text and streamed.result.token_ids == local.token_ids
        local_top = hf_gen.predict_next(prompt, k=5, unit="token")
        top = remote.predict_next(prompt, k=5, unit="token")
        assert [c.token_id for c in top] == [c.token_id for c in local_top]
        assert [c.logprob for c in top] == pytest.approx([c.logprob for c in local_top], abs=1e-5)
        words, local_words = remote.predict_next(prompt, k=3), hf_gen.predict_next(prompt, k=3)
        assert [c.text for c in words] == [c.text for c in local_words]
        assert [c.prob for c in words] == pytest.approx([c.prob for c in local_words], abs=1e-5)
        text = prompt + local.text
        assert remote.score(text).logprobs == pytest.approx(hf_gen.score(text).logprobs, abs=1e-5)
    sampled = remote.generate(PROMPTS[0], max_new_tokens=8, do_sample=True, top_k=20, seed=3)
    assert (
        sampled.token_ids == hf_gen.generate(PROMPTS[0], max_new_tokens=8, do_sample=True, top_k=20, seed=3).token_ids
    )


def test_settings_hide_the_api_key(nextword_server: str) -> None:
    gen = nextword.load("openai", "tiny", base_url=nextword_server, api_key="very-secret")
    assert gen.settings.options["api_key"] == "<hidden>"
    assert "very-secret" not in repr(gen.settings.to_dict())


def test_clear_errors_for_bad_servers(nextword_server: str) -> None:
    with pytest.raises(ModelLoadError, match="no model 'other'"):
        nextword.load("openai", "other", base_url=nextword_server)
    port = servers.free_port()
    with pytest.raises(ModelLoadError, match=f"127.0.0.1:{port}"):
        nextword.load("openai", "tiny", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0, timeout=2.0)
    with pytest.raises(NextwordError, match="base_url"):
        nextword.load("openai", "tiny")


class TestOpenAIOverNextwordServe(GeneratorConformance):
    """The conformance suite through the wire: openai backend -> nextword serve -> hf."""

    new_tokens = 8  # every step is a request: shorter texts keep the suite's time small

    @pytest.fixture
    def generator(self, remote: nextword.Generator) -> nextword.Generator:
        return remote


# ---- llama-cpp-python's own server ----------------------------------------------------------------


@pytest.fixture(scope="module")
def llama_server(tiny_gguf: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    require_module("llama_cpp.server", "install llama-cpp-python[server]")
    path = tiny_gguf("q8_0")
    port = servers.free_port()
    args = [
        "-m",
        "llama_cpp.server",
        "--model",
        str(path),
        "--model_alias",
        "tiny",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "256",
        "--n_threads",
        "1",
        "--seed",
        "1",
        # By default a new request cuts short the stream being served (which then ends with
        # finish_reason "stop"), seen with two concurrent callers: switch that off.
        "--interrupt_requests",
        "False",
    ]
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with servers.process(args, "/v1/models", port, log) as base:
        yield base + "/v1", path


@pytest.fixture(scope="module")
def llama_remote(llama_server: tuple[str, Path]) -> Iterator[nextword.Generator]:
    # Its tokenize endpoint reads special-token names as control tokens: name the local tokenizer.
    gen = nextword.load("openai", "tiny", base_url=llama_server[0], context_length=256, tokenizer=str(llama_server[1]))
    yield gen
    gen.close()  # frees the local llama.cpp vocabulary now, not at interpreter exit


@pytest.mark.slow
def test_llama_cpp_server_greedy_equals_local_llamacpp(
    llama_remote: nextword.Generator, llama_server: tuple[str, Path]
) -> None:
    assert llama_remote.server == "llama-cpp-python"  # type: ignore[attr-defined]
    local = nextword.load("llamacpp", str(llama_server[1]))
    for prompt in PROMPTS:
        assert (
            llama_remote.generate(prompt, max_new_tokens=16).token_ids
            == local.generate(prompt, max_new_tokens=16).token_ids
        )
        there = llama_remote.predict_next(prompt, k=3, unit="token")
        here = local.predict_next(prompt, k=3, unit="token")
        assert [c.token_id for c in there] == [c.token_id for c in here]
        assert [c.logprob for c in there] == pytest.approx([c.logprob for c in here], abs=1e-2)
    # What this server cannot do raises instead of being ignored.
    for option in ({"num_return_sequences": 2, "do_sample": True}, {"min_new_tokens": 2}, {"no_repeat_ngram_size": 2}):
        with pytest.raises(UnsupportedOption):
            llama_remote.generate(PROMPTS[0], max_new_tokens=4, **option)
    words = llama_remote.predict_next(PROMPTS[0], k=3)
    assert 0.0 < words.unexplored_mass <= 1.0 and sum(c.prob for c in words) + words.unexplored_mass <= 1.0 + 1e-9


@pytest.mark.slow
class TestOpenAIOverLlamaCppServer(GeneratorConformance):
    """The conformance suite against llama-cpp-python's server (its own samplers)."""

    logit_tolerance = 1e-2
    new_tokens = 8

    @pytest.fixture
    def generator(self, llama_remote: nextword.Generator) -> nextword.Generator:
        return llama_remote
