"""hf: concurrent generations as one left-padded batch (``batching="fast"``) or one by one (``exact``)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from nextword_hf.batching import GenerationRequest, plan_batches

import nextword
from nextword import InvalidConfig
from nextword._runtime.scheduler import CancelScope
from nextword._types.decoding_config import DecodingConfig
from nextword.errors import Cancelled

PROMPTS = ["I love cats because", "Once upon a time", "The weather today is", "My favourite food is, of course,"]

#: Largest |logit difference| between a prompt in a batch and the prompt alone that the docs
#: promise for ``batching="fast"`` on CPU (measured: under 1e-5 on the tiny and 124M GPT-2).
LOGIT_BOUND = 1e-4


@pytest.fixture(scope="module")
def fast(tiny_gpt2_dir: Path) -> Iterator[nextword.Generator]:
    gen = nextword.load("hf", str(tiny_gpt2_dir), device="cpu", batching="fast")
    yield gen
    gen.close()


@pytest.fixture(scope="module")
def exact(tiny_gpt2_dir: Path) -> Iterator[nextword.Generator]:
    gen = nextword.load("hf", str(tiny_gpt2_dir), device="cpu", batching="exact")
    yield gen
    gen.close()


def _ids(result: nextword.Generation) -> list[tuple[int, ...]]:
    return [s.token_ids for s in result.sequences]


def _together(gen: Any, calls: Sequence[Callable[[], Any]]) -> list[Any]:
    """Run ``calls`` in threads that all queue while the model is busy, so that the fast mode
    must batch them: the model lock is held until every call has been submitted."""
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            results[i] = calls[i]()
        except BaseException as exc:  # returned to the test, which checks it
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    with gen.holding_engine():
        for t in threads:
            t.start()
        sched = gen.scheduler
        for _ in range(2000):  # until every call is queued or waits in the engine (<= 2 s)
            waiting = sched.queued + (1 if sched.busy else 0)
            if gen.batching == "exact" or waiting >= len(calls):
                break
            threading.Event().wait(0.001)
    for t in threads:
        t.join(timeout=120)
    return results


def test_batching_option_is_declared_and_validated(tiny_gpt2_dir: Path, fast: nextword.Generator) -> None:
    assert fast.settings.options["batching"] == "fast"
    assert nextword.load("hf", str(tiny_gpt2_dir), device="cpu").settings.options["batching"] == "exact"
    with pytest.raises(InvalidConfig, match="batching"):
        nextword.load("hf", str(tiny_gpt2_dir), device="cpu", batching="fastest")


def test_four_concurrent_prompts_fast_equal_one_by_one(fast: nextword.Generator) -> None:
    greedy = {"max_new_tokens": 12}
    alone = [_ids(fast.generate(p, **greedy)) for p in PROMPTS]
    groups, requests = fast.scheduler.stats  # type: ignore[attr-defined]
    results = _together(fast, [partial(fast.generate, p, **greedy) for p in PROMPTS])
    assert [_ids(r) for r in results] == alone
    groups2, requests2 = fast.scheduler.stats  # type: ignore[attr-defined]
    # 4 requests, batched: those queued while the first group waited for the engine run together.
    assert requests2 - requests == 4 and groups2 - groups <= 2
    assert [_ids(g) for g in fast.generate(PROMPTS, **greedy)] == alone


def test_seeded_sampling_in_a_batch_draws_as_alone(fast: nextword.Generator) -> None:
    sampling = {"max_new_tokens": 6, "do_sample": True, "top_k": 40, "temperature": 0.9, "num_return_sequences": 2}
    calls = [(p, seed) for p in PROMPTS[:3] for seed in (1, 2)]
    alone = [_ids(fast.generate(p, seed=s, **sampling)) for p, s in calls]
    results = _together(fast, [partial(fast.generate, p, seed=s, **sampling) for p, s in calls])
    assert [_ids(r) for r in results] == alone


def test_different_budgets_and_stop_strings_share_a_batch(fast: nextword.Generator) -> None:
    calls: list[dict[str, Any]] = [{"max_new_tokens": 3 + 5 * i} for i in range(4)]
    calls[1]["stop"] = ("e",)
    alone = [fast.generate(p, **kw) for p, kw in zip(PROMPTS, calls, strict=True)]
    results = _together(fast, [partial(fast.generate, p, **kw) for p, kw in zip(PROMPTS, calls, strict=True)])
    assert [r.sequences for r in results] == [a.sequences for a in alone]


def test_batched_logits_within_the_documented_bound(fast: nextword.Generator) -> None:
    """The divergence the docs publish: a prompt's logits in a left-padded batch against alone."""
    gen: Any = fast
    batch = [gen.tokenize(p) for p in PROMPTS]

    def record(rows: list[list[int]]) -> list[np.ndarray]:
        return list(gen.batch_step_logits(rows, 8))

    together = record(batch)
    for i, ids in enumerate(batch):
        alone = record([ids])
        diff = max(float(np.abs(a[0] - t[i]).max()) for a, t in zip(alone, together, strict=True))
        assert diff < LOGIT_BOUND
        assert [int(a[0].argmax()) for a in alone] == [int(t[i].argmax()) for t in together]


def test_exact_mode_runs_each_prompt_alone(exact: nextword.Generator) -> None:
    greedy = {"max_new_tokens": 8}
    sampled = {"max_new_tokens": 6, "do_sample": True, "seed": 4, "top_p": 0.9}
    alone = [_ids(exact.generate(p, **kw)) for p in PROMPTS for kw in (greedy, sampled)]
    calls = [partial(exact.generate, p, **kw) for p in PROMPTS for kw in (greedy, sampled)]
    assert [_ids(r) for r in _together(exact, calls)] == alone
    assert [_ids(g) for g in exact.generate(PROMPTS, **greedy)] == alone[::2]
    assert exact.scheduler.stats == (0, 0)  # type: ignore[attr-defined]


class _CancelAfter(CancelScope):
    """A scope that reads as cancelled from its ``n``-th check on (the checks are: before queueing,
    before the batch runs, then one per generated token)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.checks = 0
        self.n = n

    @property
    def cancelled(self) -> bool:
        self.checks += 1
        return self.checks >= self.n


def test_a_cancelled_caller_stops_alone_and_the_batch_goes_on(fast: nextword.Generator) -> None:
    long = {"max_new_tokens": 40}
    expected = _ids(fast.generate(PROMPTS[1], **long))

    def cancelled_call() -> Any:
        with _CancelAfter(6):
            return fast.generate(PROMPTS[0], **long)

    results = _together(
        fast,
        [
            lambda: fast.generate(PROMPTS[2], max_new_tokens=2),
            cancelled_call,
            lambda: fast.generate(PROMPTS[1], **long),
        ],
    )
    assert isinstance(results[1], Cancelled)
    assert _ids(results[2]) == expected
    assert _ids(fast.generate(PROMPTS[1], **long)) == expected


def test_plan_batches_keeps_penalised_prompts_of_other_lengths_apart() -> None:
    plain = DecodingConfig(max_new_tokens=4)
    penalised = DecodingConfig(max_new_tokens=4, repetition_penalty=1.3)
    requests = [
        GenerationRequest([[1, 2], [1, 2, 3]], plain, [4, 4]),
        GenerationRequest([[5, 6, 7]], plain.replace(max_new_tokens=9), [9]),
        GenerationRequest([[1, 2], [1, 2, 3]], penalised, [4, 4]),
        GenerationRequest([[4, 4, 4]], penalised.replace(seed=3), [4]),
        GenerationRequest([[4]], plain.replace(do_sample=True), [4]),
    ]
    shapes = [[len(p.ids) for _, p in batch] for batch in plan_batches(requests)]
    assert shapes == [[2, 3, 3], [2], [3, 3], [1]]
    assert [len(b) for b in plan_batches(requests[:2], max_rows=2)] == [2, 1]
