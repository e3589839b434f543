"""The conformance suite's generation checks: decoding options with Hugging Face semantics, stop
strings, streaming, the async API and batches."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from nextword._contract.protocol import Generator
from nextword._decoding.processors import apply_repetition_penalty
from nextword.errors import (
    UnsupportedOption,
)
from nextword.testing._suite import SuiteBase

__all__ = ["GenerationChecks"]


class GenerationChecks(SuiteBase):
    """Generation behaves the same on every backend."""

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

    def test_same_seed_same_sample(self, generator: Generator) -> None:
        if not (self._supports(generator, "seed") and self._supports(generator, "do_sample")):
            self._expect_unsupported(generator, "seed")
            return
        prompt = self.prompts[0]
        runs = [generator.generate(prompt, max_new_tokens=self.new_tokens, do_sample=True, seed=s) for s in (1, 1, 2)]
        assert runs[0].token_ids == runs[1].token_ids
        others = [generator.generate(prompt, max_new_tokens=self.new_tokens, do_sample=True, seed=s) for s in (2, 3, 4)]
        assert any(o.token_ids != runs[0].token_ids for o in others), "different seeds never changed the sample"

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
        """A backend's ``open_branches`` gives the logits a session fed the same path gives; a
        backend without full logits refuses both with ``UnsupportedOption``."""
        prompt = generator.tokenize(self.prompts[0])
        if not generator.capabilities.logits:
            with pytest.raises(UnsupportedOption):
                generator.open_branches(prompt).logits([()])
            with pytest.raises(UnsupportedOption):
                generator.open_session(prompt).logits()
            return
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
