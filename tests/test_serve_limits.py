"""The server's pieces without a server: the JSON depth scan, the cost checks, the served model
name, the fair queue's order and its cancellation, and the Prometheus text."""

from __future__ import annotations

import asyncio
import json

import pytest

from nextword.errors import Cancelled
from nextword.serve.bodies import json_depth, parse_json
from nextword.serve.errors import RequestError
from nextword.serve.limits import Limits, display_name
from nextword.serve.metrics import Metrics
from nextword.serve.requests import check_cost, parse_completion
from nextword.serve.scheduling import FairQueue, RequestContext


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("1", 0),
        ("[]", 1),
        ('{"a": [1, [2, {"b": 3}]]}', 4),
        ('{"a": "[[[[[[[[["}', 1),
        ('{"a": "\\"[[[[", "b": [[1]]}', 3),
        ("[" * 1000 + "]" * 1000, 1000),
        ("[[1], [2], [3], [4]]", 2),
    ],
)
def test_json_depth_counts_nesting_not_brackets_in_strings(text: str, depth: int) -> None:
    assert json_depth(text.encode()) == depth
    if depth <= 1:
        assert json.loads(text) is not None


def test_parse_json_refuses_deep_nesting_before_parsing() -> None:
    limits = Limits()
    with pytest.raises(RequestError) as info:
        parse_json(b"[" * 100_000 + b"]" * 100_000, limits)
    assert info.value.status == 400 and info.value.reason == "max_json_depth"
    assert "max_json_depth=32" in info.value.message and "--max-json-depth" in info.value.message
    many = json.dumps({"prompt": [[1, 2]] * 64}).encode()  # 65 brackets, depth 3
    assert parse_json(many, limits)["prompt"][0] == [1, 2]
    with pytest.raises(RequestError, match="not valid JSON"):
        parse_json(b"{", limits)


def test_cost_limits_name_the_limit_and_its_value() -> None:
    limits = Limits()
    check_cost(["hi"] * 64, 1, 128, None, False, limits, 1024)  # 8192 new tokens: at the limit
    with pytest.raises(RequestError) as info:
        check_cost(["hi"] * 64, 16, 16, None, False, limits, 1024)
    assert info.value.reason == "max_request_tokens" and "max_request_tokens=8192" in info.value.message
    with pytest.raises(RequestError) as info:
        check_cost(["x" * 4000] * 8, 16, 1, 20, True, limits, 1024)
    assert info.value.reason == "max_logprob_entries"
    check_cost(["x" * 4000], 1, 16, 20, True, limits, 1024)  # the prompt counts as the context at most
    with pytest.raises(RequestError) as info:
        parse_completion({"prompt": "x", "logprobs": 50257, "echo": True}, limits, max_logprobs=50257)
    assert info.value.param == "logprobs" and "max_logprobs=20" in info.value.message


def test_the_served_name_of_a_local_path_is_its_last_component(tmp_path: object) -> None:
    assert display_name("/srv/models/secret/gpt2.Q8_0.gguf") == "gpt2.Q8_0.gguf"
    assert display_name("/srv/models/tiny-gpt2/") == "tiny-gpt2"
    assert display_name("./models/x.gguf") == "x.gguf"
    assert display_name("gpt2") == "gpt2"
    assert display_name("openai-community/gpt2") == "openai-community/gpt2"  # a hub id stays


def _order(capacity: int, plan: list[tuple[str, int]]) -> list[str]:
    """Grant order of the units of requests (name, units), all queued at once behind a first
    unit that holds every slot; each unit releases right after it is granted."""

    async def run() -> list[str]:
        queue = FairQueue(capacity, max_queue=100)
        blockers = [RequestContext() for _ in range(capacity)]
        for blocker in blockers:
            queue.admit(blocker)
            await queue.acquire(blocker)
        order: list[str] = []

        async def unit(ctx: RequestContext, name: str) -> None:
            await queue.acquire(ctx)
            order.append(name)
            await asyncio.sleep(0)
            queue.release(ctx, 0.0)

        tasks = []
        for name, units in plan:
            ctx = RequestContext()
            queue.admit(ctx)
            tasks += [asyncio.ensure_future(unit(ctx, f"{name}{i}")) for i in range(units)]
        await asyncio.sleep(0)
        for blocker in blockers:
            queue.release(blocker, 0.0)
        await asyncio.gather(*tasks)
        return order

    return asyncio.run(run())


def test_the_fair_queue_serves_waiting_requests_in_turn() -> None:
    # A request of 4 units does not make the later one-unit requests wait for all 4.
    assert _order(1, [("a", 4), ("b", 1), ("c", 1)]) == ["a0", "b0", "c0", "a1", "a2", "a3"]
    assert _order(2, [("a", 3), ("b", 2)]) == ["a0", "b0", "a1", "b1", "a2"]


def test_one_request_leaves_a_slot_for_the_next() -> None:
    async def run() -> None:
        queue = FairQueue(4, max_queue=100)
        big, small = RequestContext(), RequestContext()
        queue.admit(big)
        for _ in range(3):
            await queue.acquire(big)
        fourth = asyncio.ensure_future(queue.acquire(big))
        await asyncio.sleep(0)
        assert queue.running == 3 and not fourth.done()  # the big request holds its share: 3 of 4
        queue.admit(small)
        await queue.acquire(small)  # a request arriving now starts at once
        assert queue.running == 4
        queue.release(small, 0.0)
        await asyncio.sleep(0)
        assert not fourth.done()  # the free slot stays for other requests
        queue.release(big, 0.0)
        await fourth  # the big request's next unit takes the slot its own unit freed
        assert queue.running == 3

    asyncio.run(run())


def test_the_fair_queue_refuses_past_max_queue_and_drops_cancelled_waiters() -> None:
    async def run() -> None:
        queue = FairQueue(1, max_queue=1)
        first, second, third = RequestContext(), RequestContext(), RequestContext(timeout_s=60)
        queue.admit(first)
        await queue.acquire(first)
        queue.admit(second)
        with pytest.raises(RequestError) as info:
            queue.admit(third)
        assert info.value.status == 503 and info.value.code == "queue_full"
        assert int(info.value.headers["Retry-After"]) >= 1
        waiter = asyncio.ensure_future(queue.acquire(second))
        await asyncio.sleep(0)
        assert queue.waiting == 1
        second.cancel("disconnect")
        with pytest.raises(Cancelled):
            await waiter
        queue.leave(second)
        queue.release(first, 0.5)
        assert queue.running == 0 and queue.waiting == 0
        queue.admit(third)
        await queue.acquire(third)  # the slot the cancelled waiter never took
        assert queue.running == 1
        third.finish()

    asyncio.run(run())


def test_metrics_render_prometheus_text() -> None:
    metrics = Metrics(waiting=lambda: 2, running=lambda: 1)
    metrics.count("requests", endpoint="/v1/completions", status="200")
    metrics.count("rejections", reason='a "quoted"\nreason')
    metrics.observe("ttft", 0.2)
    text = metrics.render()
    assert "nextword_requests_waiting 2\n" in text and "nextword_requests_running 1\n" in text
    assert 'nextword_requests_total{endpoint="/v1/completions",status="200"} 1\n' in text
    assert 'nextword_rejections_total{reason="a \\"quoted\\"\\nreason"} 1\n' in text
    assert 'nextword_time_to_first_token_seconds_bucket{le="0.25"} 1\n' in text
    assert 'nextword_time_to_first_token_seconds_bucket{le="0.1"} 0\n' in text
    assert "nextword_generation_tokens_total 0\n" in text
    assert "# TYPE nextword_time_to_first_token_seconds histogram" in text


def test_one_table_maps_openai_fields_both_ways() -> None:
    """``nextword serve`` reads and the ``openai`` backend writes a request's decoding fields by
    the same table: every option the server takes is sent under the name the server reads."""
    from nextword_openai.dialects import DIALECTS

    from nextword.backend import OPENAI_FIELDS
    from nextword.serve.requests import decoding_options

    written = DIALECTS["nextword"].fields
    for spec in OPENAI_FIELDS:
        if spec.option != "max_new_tokens":  # sent on every request, outside the dialect's table
            assert written[spec.option] == spec.name
        if spec.plain:
            value = 3 if spec.kind is int else 0.5
            assert decoding_options({spec.name: value}, 4, 1)[spec.option] == value
            assert spec.option not in decoding_options({spec.name: spec.off}, 4, 1)
    sampled = decoding_options({"temperature": 0.7, "top_k": 5, "n": 2, "seed": 1, "stop": "."}, 4, 2)
    assert sampled == {
        "max_new_tokens": 4,
        "do_sample": True,
        "temperature": 0.7,
        "top_k": 5,
        "seed": 1,
        "stop": (".",),
        "num_return_sequences": 2,
    }
    assert decoding_options({"temperature": 0, "top_k": 0, "n": 2}, 4, 2) == {"max_new_tokens": 4, "do_sample": False}


def test_the_schedule_option_sets_the_backends_batching_and_refuses_a_contradiction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--schedule`` is the backend's ``batching`` load option; given both ways, they must agree
    (checked before anything is loaded)."""
    from click.testing import CliRunner

    from nextword._api import calls
    from nextword.cli.serve import serve

    loads: list[dict[str, object]] = []

    def fake_load(backend: object, model: object, **options: object) -> object:
        loads.append(options)
        raise SystemExit(0)  # stop before serving

    monkeypatch.setattr(calls, "load", fake_load)
    runner = CliRunner()
    bad = runner.invoke(serve, ["-b", "llamacpp", "-m", "x.gguf", "--schedule", "fast", "-o", "batching=exact"])
    assert bad.exit_code == 2 and "--schedule fast contradicts -o batching=exact" in bad.output
    assert loads == []
    for argv, expected in ((["--schedule", "fast"], "fast"), ([], None), (["-o", "batching=fast"], "fast")):
        runner.invoke(serve, ["-b", "llamacpp", "-m", "x.gguf", *argv])
        assert loads.pop().get("batching") == expected
