"""The conformance suite's interface checks: the generator's identity and tokens, prediction and
scoring, errors before the engine runs, and the lifecycle."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from nextword._contract.protocol import Generator
from nextword._types.decoding_config import DecodingConfig
from nextword.errors import (
    ContextLengthExceeded,
    InvalidConfig,
    InvalidInput,
    InvalidState,
    NextwordError,
    UnsupportedOption,
)
from nextword.testing._suite import SAMPLE_VALUES, SuiteBase

__all__ = ["InterfaceChecks"]


class InterfaceChecks(SuiteBase):
    """The interface around generation behaves the same on every backend."""

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
            try:
                call()
            except InvalidState:
                assert gen.closed, name
                continue
            raise AssertionError(f"{name} ran on a closed generator instead of raising InvalidState")
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
