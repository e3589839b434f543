"""The conformance suite every nextword backend is held to.

Subclass :class:`GeneratorConformance` in a test module and provide a ``generator`` fixture
that returns a loaded :class:`~nextword._contract.protocol.Generator`::

    import pytest
    import nextword
    from nextword.testing import GeneratorConformance

    class TestMyBackend(GeneratorConformance):
        @pytest.fixture(scope="class")
        def generator(self):
            return nextword.load("mybackend", "my-model")

The backend's capability declaration decides what each test checks: an option the backend
supports is checked for its behaviour, an option it declares unsupported is checked to raise
:class:`~nextword.errors.UnsupportedOption`. No test is skipped. A backend that returns only the
top N log-probabilities (``capabilities.logits`` False, a remote server) is checked against those:
a sampled or greedy token must be listed where the rule says it is among the most likely, and
the checks that need the full logits (the repetition-penalty rule on raw logits) check what can
be seen from outside instead.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import pytest

from nextword._contract.protocol import Generator
from nextword._decoding.logprobs import top_logprobs
from nextword._decoding.processors import apply_repetition_penalty, log_softmax, top_p_filter
from nextword._types.decoding_config import DecodingConfig
from nextword.errors import (
    ContextLengthExceeded,
    InvalidConfig,
    InvalidInput,
    InvalidState,
    NextwordError,
    UnsupportedOption,
)

__all__ = ["GeneratorConformance", "SAMPLE_VALUES"]

SAMPLE_VALUES: dict[str, dict[str, Any]] = {
    "max_new_tokens": {"max_new_tokens": 3},
    "max_length": {"max_length": 12},
    "min_new_tokens": {"min_new_tokens": 2},
    "do_sample": {"do_sample": True, "seed": 1},
    "temperature": {"temperature": 0.7, "seed": 1},
    "top_k": {"top_k": 5, "seed": 1},
    "top_p": {"top_p": 0.9, "seed": 1},
    "min_p": {"min_p": 0.05, "seed": 1},
    "typical_p": {"typical_p": 0.9, "seed": 1},
    "repetition_penalty": {"repetition_penalty": 1.3},
    "no_repeat_ngram_size": {"no_repeat_ngram_size": 2},
    "num_return_sequences": {"num_return_sequences": 2, "do_sample": True, "seed": 1},
    "stop": {"stop": ["."]},
    "seed": {"seed": 3, "do_sample": True},
}
"""A non-default value for each decoding option, used to check that unsupported options raise."""


class _Distribution:
    """Next-token log-probabilities as a test can see them: the whole vocabulary for a backend with
    full logits, the listed top N (every other token reads -inf) for one without."""

    def __init__(self, generator: Generator, ids: Sequence[int], n: int = 20) -> None:
        self.full = generator.capabilities.logits
        if self.full:
            self._logits = np.array(generator.next_token_logits(list(ids)), dtype=np.float64)
            self._logp = log_softmax(self._logits)
            self._listed: dict[int, float] = {}
        else:
            limit = generator.capabilities.max_logprobs
            top = top_logprobs(generator, ids, n if limit is None else min(n, limit))
            self._listed = top.as_dict()
            self._sorted = list(top.logprobs)

    def __getitem__(self, token: int) -> float:
        if self.full:
            return float(self._logp[token])
        return self._listed.get(int(token), -math.inf)

    def snapshot(self) -> tuple[Any, ...]:
        """Everything visible, for exact comparisons."""
        return tuple(self._logits.tolist()) if self.full else tuple(sorted(self._listed.items()))

    def best(self) -> float:
        return float(np.max(self._logp)) if self.full else self._sorted[0]

    def kth(self, k: int) -> float:
        """The ``k``-th largest log-probability."""
        return float(np.sort(self._logp)[-k]) if self.full else self._sorted[k - 1]

    def nucleus_floor(self, top_p: float) -> float:
        """The smallest log-probability inside the ``top_p`` nucleus (-inf when the listed tokens
        do not reach ``top_p``: the nucleus then reaches past what the backend shows)."""
        if self.full:
            kept = top_p_filter(self._logits.copy(), top_p)
            return float(self._logp[np.isfinite(kept)].min())
        total = 0.0
        for lp in self._sorted:
            total += math.exp(lp)
            if total >= top_p:
                return lp
        return -math.inf


class GeneratorConformance:
    """Shared behaviour tests. Subclasses provide the ``generator`` fixture and may tune the knobs.

    Knobs (class attributes):

    * ``prompts``: prompts the tests use (plain English by default).
    * ``new_tokens``: tokens generated per test.
    * ``logit_tolerance``: how far two logits may differ and still count as a tie, for engines
      whose incremental and full-sequence evaluations differ by float noise.
    """

    prompts: ClassVar[tuple[str, ...]] = ("I love cats because", "The weather today is", "Once upon a time")
    new_tokens: ClassVar[int] = 16
    logit_tolerance: ClassVar[float] = 1e-4

    @pytest.fixture
    def generator(self) -> Generator:
        """Override in the subclass: return the loaded generator under test."""
        raise NotImplementedError("provide a `generator` fixture in your GeneratorConformance subclass")

    # ---- helpers -------------------------------------------------------------------------------

    def _supports(self, generator: Generator, option: str) -> bool:
        return generator.capabilities.supports(option)

    def _expect_unsupported(self, generator: Generator, option: str) -> None:
        with pytest.raises(UnsupportedOption):
            generator.generate(self.prompts[0], max_new_tokens=2, **SAMPLE_VALUES[option])

    def _dist(self, generator: Generator, ids: Sequence[int]) -> _Distribution:
        return _Distribution(generator, ids)

    def _clear_winner(self, logits: np.ndarray) -> bool:
        top2 = np.sort(np.asarray(logits, dtype=np.float64))[-2:]
        return bool(top2[1] - top2[0] > self.logit_tolerance)

    # ---- protocol ----------------------------------------------------------------------------

    def test_is_a_generator(self, generator: Generator) -> None:
        assert isinstance(generator, Generator)
        assert generator.backend and generator.model
        assert generator.context_length > 0
        assert generator.settings.backend == generator.backend

    def test_result_carries_counts_and_settings(self, generator: Generator) -> None:
        result = generator.generate(self.prompts[0], max_new_tokens=5)
        assert result.prompt == self.prompts[0]
        assert list(result.prompt_token_ids) == generator.tokenize(self.prompts[0])
        assert result.prompt_tokens == len(result.prompt_token_ids)
        assert result.completion_tokens == len(result.token_ids) <= 5
        assert result.finish_reason in ("length", "stop", "eos")
        assert result.settings.decoding.max_new_tokens == 5
        assert result.settings.backend == generator.backend

    # ---- tokenizer contract ------------------------------------------------------------------

    def _added_prefix(self, generator: Generator, ids: list[int], text: str) -> int:
        """How many leading ids the tokenizer added before ``text`` (0, or 1 for a BOS token)."""
        if generator.detokenize(ids) == text:
            return 0
        assert generator.detokenize(ids[1:]) == text, f"tokenize/detokenize do not round-trip {text!r}"
        return 1

    def test_special_tokens_render_as_text(self, generator: Generator) -> None:
        """``detokenize`` of a special (end-of-text) token gives its text, not nothing."""
        for token in sorted(generator.eos_token_ids):
            assert generator.detokenize([token]) != "", f"end-of-text token {token} renders as an empty string"

    def test_special_token_names_in_a_prompt_are_plain_text(self, generator: Generator) -> None:
        """A prompt that spells a special token's name is text: it never becomes the control
        token, and it reads back unchanged."""
        names = {generator.detokenize([t]) for t in generator.eos_token_ids} | {"<|endoftext|>", "</s>", "<eos>"}
        for name in sorted(n for n in names if n.strip()):
            text = f"Say {name} twice: {name}."
            ids = generator.tokenize(text)
            added = self._added_prefix(generator, ids, text)
            assert not set(ids[added:]) & set(generator.eos_token_ids), f"{name!r} in the text became a control token"

    def test_bos_only_where_the_model_adds_it(self, generator: Generator) -> None:
        """A tokenizer that adds a BOS token adds the same one, once, at the start of every text,
        and never one inside a text; one that adds none adds nothing."""
        first: set[int] = set()
        added_counts = set()
        for prompt in self.prompts:
            ids = generator.tokenize(prompt)
            added = self._added_prefix(generator, ids, prompt)
            added_counts.add(added)
            if added:
                first.add(ids[0])
                assert generator.tokenize(prompt + " " + prompt).count(ids[0]) == 1
        assert len(added_counts) == 1, "a BOS token is added to some prompts and not to others"
        assert len(first) <= 1, "different prompts got different BOS tokens"

    # ---- greedy -----------------------------------------------------------------------------

    def test_greedy_is_deterministic(self, generator: Generator) -> None:
        for prompt in self.prompts:
            first = generator.generate(prompt, max_new_tokens=self.new_tokens)
            second = generator.generate(prompt, max_new_tokens=self.new_tokens)
            assert first.token_ids == second.token_ids
            assert first.text == second.text

    def test_results_do_not_depend_on_earlier_calls(self, generator: Generator) -> None:
        prompt = self.prompts[0]
        ids = generator.tokenize(prompt)
        before = self._dist(generator, ids).snapshot()
        text = generator.generate(prompt, max_new_tokens=self.new_tokens)
        # Calls that share a prefix with the prompt, or not, in between.
        generator.generate(prompt + " and then", max_new_tokens=4)
        generator.predict_next(self.prompts[1], k=3, unit="token")
        self._dist(generator, ids[:-1])  # leaves a prefix of the prompt behind, if cached
        assert self._dist(generator, ids).snapshot() == before
        assert generator.generate(prompt, max_new_tokens=self.new_tokens).token_ids == text.token_ids

    def test_greedy_follows_the_argmax(self, generator: Generator) -> None:
        prompt = self.prompts[0]
        result = generator.generate(prompt, max_new_tokens=self.new_tokens)
        assert result.token_ids, "greedy generated no token"  # an EOS is reported as a token too
        ids = generator.tokenize(prompt)
        for token in result.token_ids:
            dist = self._dist(generator, ids)
            assert dist[token] >= dist.best() - self.logit_tolerance, "greedy chose a token that is not the argmax"
            ids.append(token)

    def test_temperature_zero_and_top_k_one_agree_with_greedy(self, generator: Generator) -> None:
        prompt = self.prompts[1]
        greedy = generator.generate(prompt, max_new_tokens=self.new_tokens)
        if self._supports(generator, "temperature"):
            assert generator.generate(prompt, max_new_tokens=self.new_tokens, temperature=0.0).token_ids == (
                greedy.token_ids
            )
        else:
            self._expect_unsupported(generator, "temperature")
        if self._supports(generator, "top_k"):
            top1 = generator.generate(prompt, max_new_tokens=self.new_tokens, do_sample=True, top_k=1, seed=7)
            assert top1.token_ids == greedy.token_ids
        else:
            self._expect_unsupported(generator, "top_k")

    # ---- sampling ---------------------------------------------------------------------------

    def test_same_seed_same_sample(self, generator: Generator) -> None:
        if not (self._supports(generator, "seed") and self._supports(generator, "do_sample")):
            self._expect_unsupported(generator, "seed")
            return
        prompt = self.prompts[0]
        runs = [generator.generate(prompt, max_new_tokens=self.new_tokens, do_sample=True, seed=s) for s in (1, 1, 2)]
        assert runs[0].token_ids == runs[1].token_ids
        others = [generator.generate(prompt, max_new_tokens=self.new_tokens, do_sample=True, seed=s) for s in (2, 3, 4)]
        assert any(o.token_ids != runs[0].token_ids for o in others), "different seeds never changed the sample"

    def _assert_samples_within(self, generator: Generator, option: str, value: Any, floor: Any) -> None:
        """Sample with ``option=value`` under three seeds; at every step the chosen token's
        log-probability must reach ``floor(distribution)`` (the smallest of the allowed set), less
        the tolerance (tokens tied with the set's last member count as in it)."""
        prompt = self.prompts[2]
        for seed in (1, 2, 3):
            result = generator.generate(
                prompt, max_new_tokens=self.new_tokens, do_sample=True, seed=seed, **{option: value}
            )
            ids = generator.tokenize(prompt)
            for token in result.token_ids:
                dist = self._dist(generator, ids)
                assert dist[token] >= floor(dist) - self.logit_tolerance, (
                    f"a token sampled with {option}={value} lies outside the allowed set"
                )
                ids.append(token)

    def test_sampled_tokens_lie_in_the_top_k_set(self, generator: Generator) -> None:
        if not self._supports(generator, "top_k"):
            self._expect_unsupported(generator, "top_k")
            return
        self._assert_samples_within(generator, "top_k", 3, lambda dist: dist.kth(3))

    def test_sampled_tokens_lie_in_the_top_p_set(self, generator: Generator) -> None:
        if not self._supports(generator, "top_p"):
            self._expect_unsupported(generator, "top_p")
            return
        self._assert_samples_within(generator, "top_p", 0.5, lambda dist: dist.nucleus_floor(0.5))

    def test_num_return_sequences(self, generator: Generator) -> None:
        if not self._supports(generator, "num_return_sequences"):
            self._expect_unsupported(generator, "num_return_sequences")
            return
        result = generator.generate(
            self.prompts[0], max_new_tokens=self.new_tokens, do_sample=True, num_return_sequences=3, seed=5
        )
        assert len(result.sequences) == 3
        assert len({s.token_ids for s in result.sequences}) > 1, "three samples were identical"
        again = generator.generate(
            self.prompts[0], max_new_tokens=self.new_tokens, do_sample=True, num_return_sequences=3, seed=5
        )
        assert [s.token_ids for s in again.sequences] == [s.token_ids for s in result.sequences]

    # ---- lengths and endings ----------------------------------------------------------------

    def test_max_new_tokens_is_exact_unless_eos(self, generator: Generator) -> None:
        for n in (1, 7, self.new_tokens):
            for prompt in self.prompts:
                result = generator.generate(prompt, max_new_tokens=n)
                if result.finish_reason == "length":
                    assert len(result.token_ids) == n
                else:
                    assert result.finish_reason == "eos"
                    assert len(result.token_ids) <= n

    def test_zero_new_tokens(self, generator: Generator) -> None:
        result = generator.generate(self.prompts[0], max_new_tokens=0)
        assert result.token_ids == () and result.text == "" and result.finish_reason == "length"

    def test_max_length_counts_the_prompt(self, generator: Generator) -> None:
        if not self._supports(generator, "max_length"):
            self._expect_unsupported(generator, "max_length")
            return
        prompt = self.prompts[0]
        n_prompt = len(generator.tokenize(prompt))
        result = generator.generate(prompt, max_length=n_prompt + 5)
        assert result.finish_reason == "eos" or len(result.token_ids) == 5
        same = generator.generate(prompt, max_new_tokens=5)
        assert result.token_ids == same.token_ids

    def test_min_new_tokens_forbids_early_eos(self, generator: Generator) -> None:
        if not self._supports(generator, "min_new_tokens"):
            self._expect_unsupported(generator, "min_new_tokens")
            return
        for prompt in self.prompts:
            result = generator.generate(prompt, max_new_tokens=self.new_tokens, min_new_tokens=self.new_tokens)
            assert len(result.token_ids) == self.new_tokens
            assert result.finish_reason in ("length", "stop")

    def test_eos_ends_the_text(self, generator: Generator) -> None:
        for prompt in self.prompts:
            result = generator.generate(prompt, max_new_tokens=self.new_tokens)
            if result.finish_reason == "eos":
                # The EOS token is reported in token_ids but is not part of the text.
                assert generator.detokenize(list(result.token_ids[:-1])) == result.text

    # ---- stop strings -----------------------------------------------------------------------

    def test_stop_strings_cut_exactly_across_token_boundaries(self, generator: Generator) -> None:
        if not self._supports(generator, "stop"):
            self._expect_unsupported(generator, "stop")
            return
        checked = 0
        for prompt in self.prompts:
            full = generator.generate(prompt, max_new_tokens=self.new_tokens)
            pieces = [generator.detokenize([t]) for t in full.token_ids]
            if len(pieces) < 4 or "".join(pieces) != full.text:
                continue
            # A stop string made of the end of token 2 and the start of token 3.
            left, right = pieces[1], pieces[2]
            if not left or not right:
                continue
            stop = left[-2:] + right[:2]
            expected = full.text[: full.text.find(stop)]
            result = generator.generate(prompt, max_new_tokens=self.new_tokens, stop=[stop, "\x00never\x00"])
            assert result.text == expected
            assert result.finish_reason == "stop"
            assert stop not in result.text
            checked += 1
        assert checked, "no prompt gave enough text to place a stop string across tokens"

    def test_stop_string_absent_changes_nothing(self, generator: Generator) -> None:
        if not self._supports(generator, "stop"):
            self._expect_unsupported(generator, "stop")
            return
        full = generator.generate(self.prompts[0], max_new_tokens=self.new_tokens)
        same = generator.generate(self.prompts[0], max_new_tokens=self.new_tokens, stop=["\x00never\x00"])
        assert same.token_ids == full.token_ids and same.text == full.text

    # ---- processors with Hugging Face semantics ---------------------------------------------

    def test_no_repeat_ngram_size(self, generator: Generator) -> None:
        if not self._supports(generator, "no_repeat_ngram_size"):
            self._expect_unsupported(generator, "no_repeat_ngram_size")
            return
        for n in (2, 3):
            for prompt in self.prompts:
                result = generator.generate(prompt, max_new_tokens=self.new_tokens * 2, no_repeat_ngram_size=n)
                ids = list(result.prompt_token_ids) + list(result.token_ids)
                grams = [tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)]
                new_grams = grams[max(0, len(result.prompt_token_ids) - n + 1) :]
                for gram in new_grams:
                    assert grams.count(gram) == 1, f"the {n}-gram {gram} occurs twice"

    def test_repetition_penalty_follows_the_hugging_face_rule(self, generator: Generator) -> None:
        if not self._supports(generator, "repetition_penalty"):
            self._expect_unsupported(generator, "repetition_penalty")
            return
        for penalty in (1.8, 0.6):
            prompt = self.prompts[0]
            result = generator.generate(prompt, max_new_tokens=8, repetition_penalty=penalty)
            assert result.finish_reason == "eos" or len(result.token_ids) == 8
            if not generator.capabilities.logits:
                continue  # the rule acts on raw logits, which this backend does not show
            ids = generator.tokenize(prompt)
            for token in result.token_ids:
                logits = np.array(generator.next_token_logits(ids), dtype=np.float64)
                apply_repetition_penalty(logits, ids, penalty)
                if self._clear_winner(logits):
                    assert token == int(np.argmax(logits)), "repetition_penalty differs from the HF rule"
                ids.append(token)

    # ---- streaming --------------------------------------------------------------------------

    def test_stream_joins_to_the_generated_text(self, generator: Generator) -> None:
        if not generator.capabilities.stream:
            with pytest.raises(UnsupportedOption):
                generator.stream(self.prompts[0], max_new_tokens=4)
            return
        settings: list[dict[str, Any]] = [{}]
        if self._supports(generator, "do_sample") and self._supports(generator, "seed"):
            settings += [{"do_sample": True, "temperature": 1.5, "seed": s} for s in (1, 2)]
        if self._supports(generator, "stop"):
            settings.append({"stop": [" the", "."]})
        for extra in settings:
            for prompt in self.prompts:
                whole = generator.generate(prompt, max_new_tokens=self.new_tokens, **extra)
                stream = generator.stream(prompt, max_new_tokens=self.new_tokens, **extra)
                chunks = list(stream)
                assert "".join(chunks) == whole.text
                assert stream.result.token_ids == whole.token_ids
                assert stream.result.finish_reason == whole.finish_reason
                assert all(chunks), "empty chunk"
                bad = sum(c.count("\ufffd") for c in chunks)
                assert bad == whole.text.count("\ufffd"), "a chunk split a character"

    def test_stream_can_be_abandoned(self, generator: Generator) -> None:
        if not generator.capabilities.stream:
            return
        before = generator.generate(self.prompts[0], max_new_tokens=4)
        stream = generator.stream(self.prompts[0], max_new_tokens=self.new_tokens)
        iterator = iter(stream)
        assert next(iterator, None) is not None, "the stream gave no chunk"
        stream.close()
        # The generator works afterwards, and as if the abandoned stream had never run.
        assert generator.generate(self.prompts[0], max_new_tokens=4) == before

    # ---- asyncio -----------------------------------------------------------------------------

    def test_async_calls_equal_the_blocking_ones(self, generator: Generator) -> None:
        prompt = self.prompts[0]
        n = self.new_tokens

        async def main() -> list[Any]:
            stream = generator.astream(prompt, max_new_tokens=n) if generator.capabilities.stream else None
            tasks = [
                generator.agenerate(prompt, max_new_tokens=n),
                generator.apredict_next(prompt, 3, unit="token"),
                generator.apredict_next(prompt, 2, unit="word"),
                generator.ascore(prompt) if generator.capabilities.score else asyncio.sleep(0),
                generator.agenerate(self.prompts[1], max_new_tokens=n),
            ]
            results: list[Any] = list(await asyncio.gather(*tasks))  # concurrent: each must equal its blocking result
            if stream is not None:
                results.append("".join([chunk async for chunk in stream]))
            return results

        results = asyncio.run(main())
        assert results[0] == generator.generate(prompt, max_new_tokens=n)
        assert results[1] == generator.predict_next(prompt, 3, unit="token")
        assert results[2] == generator.predict_next(prompt, 2, unit="word")
        if generator.capabilities.score:
            assert results[3] == generator.score(prompt)
        assert results[4] == generator.generate(self.prompts[1], max_new_tokens=n)
        if generator.capabilities.stream:
            assert results[5] == results[0].text

    def test_cancelling_an_async_stream_leaves_the_generator_usable(self, generator: Generator) -> None:
        if not generator.capabilities.stream:
            return
        prompt = self.prompts[0]
        expected = generator.generate(prompt, max_new_tokens=self.new_tokens)

        async def main() -> None:
            stream = generator.astream(prompt, max_new_tokens=self.new_tokens)
            first = asyncio.Event()

            async def read() -> None:
                async for _ in stream:
                    first.set()
                    await asyncio.sleep(3600)

            task = asyncio.create_task(read())
            await asyncio.wait_for(first.wait(), 60)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await stream.aclose()

        asyncio.run(main())
        assert generator.generate(prompt, max_new_tokens=self.new_tokens) == expected

    def test_batched_continuations_equal_sessions(self, generator: Generator) -> None:
        """A backend's ``open_branches`` gives the logits a session fed the same path gives."""
        prompt = generator.tokenize(self.prompts[0])
        first = [int(t) for t in np.argsort(-np.asarray(generator.next_token_logits(prompt)))[:3]]
        paths: list[tuple[int, ...]] = [(), (first[0],), (first[1], first[0]), (first[2],), (first[0], first[1])]
        branches = generator.open_branches(prompt)
        try:
            rows = np.asarray(branches.logits(paths))
            again = np.asarray(branches.logits(paths[:2]))
        finally:
            branches.close()
        assert rows.shape[0] == len(paths)
        for path, row in zip(paths, rows, strict=True):
            session = generator.open_session(prompt)
            for t in path:
                session.feed(t)
            np.testing.assert_allclose(row, session.logits(), rtol=0, atol=self.logit_tolerance)
        np.testing.assert_allclose(again, rows[:2], rtol=0, atol=self.logit_tolerance)

    # ---- batches ----------------------------------------------------------------------------

    def test_batch_equals_one_by_one(self, generator: Generator) -> None:
        if not generator.capabilities.batch:
            with pytest.raises(UnsupportedOption):
                generator.generate(list(self.prompts), max_new_tokens=2)
            return
        variants: list[dict[str, Any]] = [{}]
        if self._supports(generator, "do_sample") and self._supports(generator, "seed"):
            variants.append({"do_sample": True, "seed": 11})
        for extra in variants:
            batch = generator.generate(list(self.prompts), max_new_tokens=self.new_tokens, **extra)
            assert isinstance(batch, list) and len(batch) == len(self.prompts)
            for prompt, result in zip(self.prompts, batch, strict=True):
                single = generator.generate(prompt, max_new_tokens=self.new_tokens, **extra)
                assert result.prompt == prompt
                assert result.token_ids == single.token_ids
                assert result.text == single.text

    # ---- prediction and scoring -------------------------------------------------------------

    def test_predict_next_is_a_sorted_distribution(self, generator: Generator) -> None:
        limit = generator.capabilities.max_logprobs
        k = 10 if limit is None else min(10, limit)
        for prompt in self.prompts:
            prediction = generator.predict_next(prompt, k=k, unit="token")
            probs = [c.prob for c in prediction]
            assert len(probs) == k
            assert probs == sorted(probs, reverse=True)
            assert all(0.0 <= p <= 1.0 for p in probs)
            assert sum(probs) <= 1.0 + 1e-6
            ids = generator.tokenize(prompt)
            for c in prediction:
                assert math.isclose(math.exp(c.logprob), c.prob, rel_tol=1e-6, abs_tol=1e-12)
                # A candidate's text is what it adds after the prompt.
                assert generator.detokenize([*ids, *c.token_ids]) == generator.detokenize(ids) + c.text

    def test_predict_next_top_is_greedy_first_token(self, generator: Generator) -> None:
        for prompt in self.prompts:
            top = generator.predict_next(prompt, k=2, unit="token")
            first = generator.generate(prompt, max_new_tokens=1)
            if top[0].logprob - top[1].logprob > self.logit_tolerance:
                assert first.token_ids[0] == top[0].token_id

    def test_predict_next_matches_the_logits(self, generator: Generator) -> None:
        prompt = self.prompts[0]
        dist = self._dist(generator, generator.tokenize(prompt))
        for c in generator.predict_next(prompt, k=5, unit="token"):
            assert c.logprob == pytest.approx(dist[c.token_id], abs=1e-4)

    def test_score_agrees_with_the_chain_of_predictions(self, generator: Generator) -> None:
        if not generator.capabilities.score:
            with pytest.raises(UnsupportedOption):
                generator.score(self.prompts[0])
            return
        for prompt in self.prompts:
            text = prompt + generator.generate(prompt, max_new_tokens=6).text
            score = generator.score(text)
            ids = generator.tokenize(text)
            assert score.first_token_id == ids[0]
            assert [t.token_id for t in score.tokens] == ids[1:]
            compared = 0
            for i, tok in enumerate(score.tokens, start=1):
                expected = self._dist(generator, ids[:i])[ids[i]]
                if expected == -math.inf and not generator.capabilities.logits:
                    assert tok.logprob < 0.0
                    continue  # not in the backend's top N: its exact value is not visible
                assert tok.logprob == pytest.approx(expected, abs=max(1e-3, 10 * self.logit_tolerance))
                compared += 1
            assert compared, "no scored token could be compared with the predictions"
            assert score.logprob == pytest.approx(sum(t.logprob for t in score.tokens))
            assert score.perplexity == pytest.approx(math.exp(-score.logprob / len(score.tokens)))
        # The top candidate's log-prob is the last token's score of prompt + candidate.
        prompt = self.prompts[0]
        cand = generator.predict_next(prompt, k=1, unit="token")[0]
        ids = generator.tokenize(prompt)
        if generator.tokenize(prompt + cand.text) == ids + [cand.token_id]:
            last = generator.score(prompt + cand.text).tokens[-1]
            assert last.logprob == pytest.approx(cand.logprob, abs=max(1e-3, 10 * self.logit_tolerance))

    # ---- errors -----------------------------------------------------------------------------

    def test_prompt_past_the_context_window_raises(self, generator: Generator) -> None:
        before = generator.generate(self.prompts[0], max_new_tokens=1)
        long_prompt = " word" * (generator.context_length + 10)
        with pytest.raises(ContextLengthExceeded):
            generator.generate(long_prompt, max_new_tokens=1)
        with pytest.raises(ContextLengthExceeded):
            generator.predict_next(long_prompt)
        with pytest.raises(ContextLengthExceeded if generator.capabilities.score else UnsupportedOption):
            generator.score(long_prompt)
        n = len(generator.tokenize(self.prompts[0]))
        with pytest.raises(ContextLengthExceeded):
            generator.generate(self.prompts[0], max_new_tokens=generator.context_length - n + 1)
        # Still usable afterwards, with the same result as before.
        assert generator.generate(self.prompts[0], max_new_tokens=1) == before

    def test_bad_input_raises_clear_errors(self, generator: Generator) -> None:
        with pytest.raises(InvalidInput):
            generator.generate("", max_new_tokens=1)
        with pytest.raises(InvalidInput):
            generator.generate(123, max_new_tokens=1)  # type: ignore[call-overload]
        with pytest.raises(InvalidInput):
            generator.generate([], max_new_tokens=1)
        with pytest.raises(InvalidInput):
            generator.predict_next(self.prompts[0], k=0)
        with pytest.raises(InvalidInput if generator.capabilities.score else UnsupportedOption):
            generator.score("")

    @pytest.fixture
    def fresh_generator(self, generator: Generator) -> Generator:
        """Another generator like ``generator``, for the tests that close one (``generator`` is
        shared and must stay open). The default loads ``generator.model`` again through the
        backend's registered spec, with the same load options; override this fixture when the
        backend is not registered or loads differently."""
        from nextword._plugins.registry import get_backend

        spec = get_backend(generator.backend)
        fresh: Generator = spec.load(generator.model, **dict(generator.settings.options))
        return fresh

    def test_every_call_after_close_raises_invalid_state(self, fresh_generator: Generator) -> None:
        """The lifecycle: once closed, a generator says so and refuses every call with
        :class:`~nextword.errors.InvalidState` (it never generates on a released engine)."""
        gen = fresh_generator
        ids = gen.tokenize(self.prompts[0])
        assert not gen.closed
        gen.close()
        assert gen.closed
        calls: list[tuple[str, Any]] = [
            ("generate", lambda: gen.generate(self.prompts[0], max_new_tokens=2)),
            ("stream", lambda: "".join(gen.stream(self.prompts[0], max_new_tokens=2))),
            ("predict_next", lambda: gen.predict_next(self.prompts[0], k=2, unit="token")),
            ("predict_next words", lambda: gen.predict_next(self.prompts[0], k=2)),
            ("score", lambda: gen.score(self.prompts[0])),
            ("tokenize", lambda: gen.tokenize(self.prompts[0])),
            ("detokenize", lambda: gen.detokenize(ids)),
            ("next_token_logits", lambda: gen.next_token_logits(ids)),
            ("generate_tokens", lambda: gen.generate_tokens(ids, max_new_tokens=2)),
            ("open_session", lambda: gen.open_session(ids)),
            ("agenerate", lambda: asyncio.run(gen.agenerate(self.prompts[0], max_new_tokens=2))),
        ]
        for name, call in calls:
            with pytest.raises(InvalidState):
                call()
            assert gen.closed, name
        gen.close()  # closing again is harmless

    def test_invalid_options_raise_before_the_engine_runs(self, generator: Generator, monkeypatch: Any) -> None:
        def boom(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("the engine was called despite an invalid option")

        for name in ("next_token_logits", "next_token_top_logprobs", "generate_ids", "token_stream", "open_session"):
            monkeypatch.setattr(generator, name, boom, raising=False)
        bad: list[dict[str, Any]] = [
            {"temperature": -1.0},
            {"top_p": 0.0},
            {"top_p": 1.5},
            {"top_k": -3},
            {"max_new_tokens": -1},
            {"repetition_penalty": 0.0},
            {"no_repeat_ngram_size": -2},
            {"num_return_sequences": 2},  # needs sampling
            {"do_sample": False, "temperature": 0.5},
            {"max_new_tokens": 3, "max_length": 9},
            {"stop": [""]},
            {"seed": -1},
            {"not_an_option": 1},
            {"temprature": 0.5},
        ]
        for options in bad:
            with pytest.raises(InvalidConfig):
                generator.generate(self.prompts[0], **options)
        for option, values in SAMPLE_VALUES.items():
            if not self._supports(generator, option):
                with pytest.raises(UnsupportedOption):
                    generator.generate(self.prompts[0], **values)
        with pytest.raises(NextwordError):
            generator.stream(self.prompts[0], temperature=-1.0)

    def test_unsupported_options_raise(self, generator: Generator) -> None:
        declared = generator.capabilities
        for option in DecodingConfig.field_names():
            if not declared.supports(option):
                self._expect_unsupported(generator, option)
        # An option the backend supports never raises UnsupportedOption.
        for option, values in SAMPLE_VALUES.items():
            if declared.supports(option) and all(declared.supports(k) for k in values):
                options = {k: v for k, v in values.items() if k not in ("max_new_tokens", "max_length")}
                generator.generate(self.prompts[0], max_new_tokens=2, **options)
