"""The async API (nextword._runtime.async_bridge, BaseGenerator.a*, nextword.agenerate ...): same results as the
blocking calls, engine work off the event loop, cancellation that stops the engine and leaves
the generator usable."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

import nextword
from nextword import BaseGenerator, Capabilities, InvalidConfig, Support
from nextword._runtime.scheduler import CancelScope
from nextword.errors import Cancelled
from nextword.testing.pytest_fixtures import require_module

PROMPT = "I love cats because"


class Gate(BaseGenerator):
    """A bigram toy whose engine can be made to wait on an event, and counts its steps."""

    backend_name = "gate"
    capabilities = Capabilities.all(Support.EMULATED)

    def __init__(self) -> None:
        super().__init__("gate")
        self.table = np.random.default_rng(0).normal(0, 2, size=(256, 256)).astype(np.float32)
        self.steps = 0
        self.gate: threading.Event | None = None
        self.engine_threads: set[int] = set()

    @property
    def context_length(self) -> int:
        return 4096

    def tokenize(self, text: str) -> list[int]:
        return list(text.encode())

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return bytes(token_ids).decode(errors="replace")

    def next_token_logits(self, token_ids: Sequence[int]) -> npt.NDArray[np.floating]:
        self.engine_threads.add(threading.get_ident())
        if self.gate is not None:
            assert self.gate.wait(30), "the event loop never got to run while the engine worked"
        self.steps += 1
        return self.table[token_ids[-1]].copy()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# ---- same results as the blocking calls -----------------------------------------------------------


def test_async_methods_equal_the_blocking_ones(byte_gen: nextword.Generator) -> None:
    async def main() -> tuple[Any, ...]:
        chunks = [c async for c in byte_gen.astream(PROMPT, max_new_tokens=30)]
        return (
            await byte_gen.agenerate(PROMPT, max_new_tokens=30, do_sample=True, seed=3),
            await byte_gen.agenerate([PROMPT, "Hello"], max_new_tokens=12),
            chunks,
            await byte_gen.apredict_next(PROMPT, 4),
            await byte_gen.apredict_next(PROMPT, 4, unit="token"),
            await byte_gen.ascore(PROMPT),
        )

    gen1, batch, chunks, words, tokens, score = run(main())
    assert gen1 == byte_gen.generate(PROMPT, max_new_tokens=30, do_sample=True, seed=3)
    assert batch == byte_gen.generate([PROMPT, "Hello"], max_new_tokens=12)
    assert "".join(chunks) == byte_gen.generate(PROMPT, max_new_tokens=30).text and len(chunks) > 1
    assert words == byte_gen.predict_next(PROMPT, 4)
    assert tokens == byte_gen.predict_next(PROMPT, 4, unit="token")
    assert score == byte_gen.score(PROMPT)


def test_module_functions_equal_the_blocking_ones(bytelm_plugin: str) -> None:
    async def main() -> tuple[Any, ...]:
        stream = nextword.astream(PROMPT, backend="bytelm", max_new_tokens=20)
        text = await stream.text()
        return (
            await nextword.agenerate(PROMPT, backend="bytelm", max_new_tokens=20),
            text,
            stream.result,
            await nextword.apredict_next(PROMPT, 3, backend="bytelm", beam_width=4),
            await nextword.ascore(PROMPT, backend="bytelm"),
        )

    generation, text, streamed, prediction, score = run(main())
    assert generation == nextword.generate(PROMPT, backend="bytelm", max_new_tokens=20)
    assert text == generation.text and streamed == generation
    assert prediction == nextword.predict_next(PROMPT, 3, backend="bytelm", beam_width=4)
    assert score == nextword.score(PROMPT, backend="bytelm")


def test_errors_surface_in_the_awaiting_task(byte_gen: nextword.Generator) -> None:
    async def main() -> None:
        with pytest.raises(InvalidConfig, match="temperature"):
            await byte_gen.agenerate(PROMPT, temperature=-1.0)
        stream = byte_gen.astream(PROMPT, top_p=7.0)
        with pytest.raises(InvalidConfig, match="top_p"):
            await stream.__anext__()
        with pytest.raises(StopAsyncIteration):  # a failed stream is closed
            await stream.__anext__()
        with pytest.raises(nextword.InvalidInput):
            await byte_gen.apredict_next("", 3)

    run(main())


def test_a_stream_has_a_result_only_once_read_to_its_end(byte_gen: nextword.Generator) -> None:
    async def main() -> None:
        stream = byte_gen.astream(PROMPT, max_new_tokens=10)
        with pytest.raises(RuntimeError, match="end"):
            stream.result  # noqa: B018
        async with stream:
            text = await stream.text()
        assert stream.result.text == text

    run(main())


# ---- the event loop is never blocked ----------------------------------------------------------


def test_engine_work_runs_off_the_event_loop() -> None:
    gen = Gate()
    gen.gate = threading.Event()

    async def main() -> tuple[Any, ...]:
        loop_thread = threading.get_ident()
        task = asyncio.create_task(gen.agenerate(PROMPT, max_new_tokens=5))
        stream_task = asyncio.create_task(gen.astream(PROMPT, max_new_tokens=5).text())
        predict_task = asyncio.create_task(gen.apredict_next(PROMPT, 2))
        await asyncio.sleep(0)  # the engine waits for this coroutine: it runs only if the loop is free
        assert gen.gate is not None
        gen.gate.set()
        return loop_thread, await task, await stream_task, await predict_task

    loop_thread, generation, text, prediction = run(main())
    assert loop_thread not in gen.engine_threads
    gen.gate = None
    assert generation == gen.generate(PROMPT, max_new_tokens=5) and text == generation.text
    assert prediction == gen.predict_next(PROMPT, 2)


# ---- cancellation ----------------------------------------------------------------------------------


def cancel_after(steps: Callable[[], int], n: int, coro_fn: Callable[[], Any]) -> None:
    """Run ``coro_fn()`` as a task, cancel it once ``steps()`` reaches ``n``; it must raise
    CancelledError."""

    async def main() -> None:
        task = asyncio.create_task(coro_fn())
        for _ in range(6000):
            if steps() >= n or task.done():
                break
            await asyncio.sleep(0.005)
        assert not task.done(), "the call finished before it could be cancelled"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())


def test_cancelling_a_task_stops_the_engine_at_its_next_step() -> None:
    gen = Gate()
    reference = gen.generate(PROMPT, max_new_tokens=40)
    gen.steps = 0

    slow = threading.Event()  # the engine steps slowly, so the cancel lands mid-generation

    def slow_logits(token_ids: Sequence[int]) -> npt.NDArray[np.floating]:
        slow.wait(0.01)
        return Gate.next_token_logits(gen, token_ids)

    gen.next_token_logits = slow_logits  # type: ignore[method-assign]
    cancel_after(lambda: gen.steps, 3, lambda: gen.agenerate(PROMPT, max_new_tokens=2000))
    stopped_at = gen.steps
    assert stopped_at < 100  # far from the 2000 asked for: the engine stopped, not just the task
    cancel_after(lambda: gen.steps - stopped_at, 3, lambda: gen.astream(PROMPT, max_new_tokens=2000).text())
    assert gen.steps - stopped_at < 100
    assert gen.generate(PROMPT, max_new_tokens=40) == reference


def test_a_cancelled_scope_raises_cancelled_in_the_blocking_call(byte_gen: nextword.Generator) -> None:
    expected = byte_gen.generate(PROMPT, max_new_tokens=5)
    scope = CancelScope()
    scope.cancel()
    with scope, pytest.raises(Cancelled):
        byte_gen.generate(PROMPT, max_new_tokens=5)
    assert byte_gen.generate(PROMPT, max_new_tokens=5) == expected  # usable afterwards, and unchanged


@pytest.mark.slow
def test_cancelling_on_hf_stops_the_engine_and_the_next_call_equals_a_fresh_generator(
    hf_gen: nextword.Generator, tiny_gpt2_dir: Path
) -> None:
    model = hf_gen.hf_model  # type: ignore[attr-defined]
    calls = [0]
    forward = model.forward

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return forward(*args, **kwargs)

    model.forward = counting
    try:
        cancel_after(lambda: calls[0], 3, lambda: hf_gen.agenerate(PROMPT, max_new_tokens=200, min_new_tokens=200))
        assert calls[0] < 150
        before = calls[0]

        async def read_then_cancel() -> None:
            stream = hf_gen.astream(PROMPT, max_new_tokens=200, min_new_tokens=200)
            task = asyncio.create_task(stream.text())
            while calls[0] < before + 3:
                await asyncio.sleep(0.005)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            with pytest.raises(StopAsyncIteration):
                await stream.__anext__()  # closed

        run(read_then_cancel())
        assert calls[0] - before < 150
        cancel_after(lambda: calls[0], calls[0] + 2, lambda: hf_gen.apredict_next(PROMPT, 40))
    finally:
        del model.forward
    from nextword_hf.plugin import SPEC as HF

    fresh = HF.load(str(tiny_gpt2_dir), device="cpu")  # not the cached generator
    try:
        for kwargs in ({"max_new_tokens": 20}, {"max_new_tokens": 20, "do_sample": True, "seed": 5}):
            assert hf_gen.generate(PROMPT, **kwargs).sequences == fresh.generate(PROMPT, **kwargs).sequences
        # Word predictions: the same words and token paths; the probabilities within hf's float
        # bound, since the cancelled search's rows stay in the generator's kept word-search tree
        # and hf rows depend on the batch they were evaluated in (docs/typing.md).
        got, want = hf_gen.predict_next(PROMPT, 5).candidates, fresh.predict_next(PROMPT, 5).candidates
        assert [(c.text, c.token_ids) for c in got] == [(c.text, c.token_ids) for c in want]
        assert max(abs(c.prob - d.prob) for c, d in zip(got, want, strict=True)) <= 1e-6
    finally:
        fresh.close()


@pytest.mark.slow
def test_cancelling_on_llamacpp_stops_the_engine_and_the_next_call_equals_a_fresh_generator(
    tiny_gguf: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    llama_cpp = require_module("llama_cpp", "install nextword[llamacpp]")
    from nextword_llamacpp.plugin import SPEC as LLAMACPP

    path = str(tiny_gguf("q8_0"))
    fresh = LLAMACPP.load(path)
    expected = [
        fresh.generate(PROMPT, max_new_tokens=20),
        fresh.generate(PROMPT, max_new_tokens=20, do_sample=True, seed=5),
        fresh.predict_next(PROMPT, 5),
    ]
    fresh.close()
    gen = LLAMACPP.load(path)
    calls = [0]
    decode = llama_cpp.llama_decode

    def counting(*args: Any) -> Any:
        calls[0] += 1
        return decode(*args)

    monkeypatch.setattr(llama_cpp, "llama_decode", counting)
    try:
        cancel_after(lambda: calls[0], 3, lambda: gen.agenerate(PROMPT, max_new_tokens=200, min_new_tokens=200))
        assert calls[0] < 150  # the engine stopped, far from the 200 steps asked for
        before = calls[0]
        cancel_after(
            lambda: calls[0] - before, 3, lambda: gen.astream(PROMPT, max_new_tokens=200, min_new_tokens=200).text()
        )
        assert calls[0] - before < 150
        nextword._words.search.clear_cache()
        assert [
            gen.generate(PROMPT, max_new_tokens=20),
            gen.generate(PROMPT, max_new_tokens=20, do_sample=True, seed=5),
            gen.predict_next(PROMPT, 5),
        ] == expected
    finally:
        gen.close()
