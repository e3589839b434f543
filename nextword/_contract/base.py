"""``BaseGenerator``: the public behaviour of a backend, built on a few engine primitives.

A backend subclasses :class:`BaseGenerator` and implements tokenization, the context length and
next-token logits (:meth:`~BaseGenerator.next_token_logits`); it may override the faster paths
(:meth:`~BaseGenerator.open_session`, :meth:`~BaseGenerator.token_stream`,
:meth:`~BaseGenerator.generate_ids`, :meth:`~BaseGenerator.token_logprobs`) where its engine
does better. Everything the user sees — validation, capability checks, context-length checks,
stop strings, UTF-8-safe streaming, finish reasons, results — is done here, once, for all.
"""

from __future__ import annotations

import abc
import contextlib
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal, overload

import numpy as np
import numpy.typing as npt

from nextword._contract.capabilities import Capabilities, Support
from nextword._contract.checks import check_length, check_min_new, encode_text, prompt_list
from nextword._contract.lifecycle import GUARDED, marking_closed, refusing_when_closed
from nextword._contract.text_stream import CompletionStream, LazyTokens, SequenceState, TextStream
from nextword._decoding.branches import Branches, SessionBranches
from nextword._decoding.detok import IncrementalDetokenizer, context_for, piece_text
from nextword._decoding.logprobs import TopLogprobs, top_logprobs
from nextword._decoding.loop import RecomputeSession, Session, sample_tokens
from nextword._decoding.processors import log_softmax
from nextword._decoding.stop import StopMatcher
from nextword._runtime.async_bridge import AsyncTextStream, run_in_worker
from nextword._runtime.scheduler import check_cancelled
from nextword._types.decoding_config import DecodingConfig
from nextword._types.results import (
    Candidate,
    Completion,
    Generation,
    Prediction,
    Score,
    Settings,
    TokenScore,
)
from nextword._words.complete import CompleteMode, predict_or_complete
from nextword._words.search import DEFAULT_MAX_TOKENS
from nextword.errors import InvalidConfig, InvalidInput, InvalidState

if TYPE_CHECKING:
    from nextword._contract.spec import BackendSpec
    from nextword._words.trees import Trees
    from nextword._words.typing_session import TypingSession

__all__ = ["BaseGenerator"]


class BaseGenerator(abc.ABC):
    """Base class for backends: implement the abstract primitives, get the whole public API.

    A registered backend declares its name and capabilities once, on its
    :class:`~nextword._contract.spec.BackendSpec`, and passes that spec here (``spec=``): the
    generator reports exactly what the spec declares, and nextword checks the two agree when it
    loads a model. The class attributes :attr:`backend_name` and :attr:`capabilities` are only the
    defaults of a generator made without a spec (in a test, say): every decoding option emulated
    by nextword's shared helpers on top of :meth:`next_token_logits`.
    """

    backend_name: ClassVar[str] = "base"
    """The name reported when no spec is given."""
    capabilities: Capabilities = Capabilities.all(Support.EMULATED)
    """What the backend supports: the spec's declaration, or by default every option emulated."""

    _nextword_closed: bool = False
    _vocab_size_read: int | None = None
    _word_trees: Trees | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Make the lifecycle part of the contract: a subclass's engine methods and its public
        overrides refuse to run after :meth:`close` (with :class:`~nextword.errors.InvalidState`),
        and its ``close`` marks the generator closed, so that no backend can forget either."""
        super().__init_subclass__(**kwargs)
        for name in GUARDED:
            method = cls.__dict__.get(name)
            if callable(method):
                setattr(cls, name, refusing_when_closed(method))
        close = cls.__dict__.get("close")
        if callable(close):
            cls.close = marking_closed(close)  # type: ignore[method-assign]

    def __init__(self, model: str, options: dict[str, Any] | None = None, *, spec: BackendSpec | None = None) -> None:
        """Record ``model`` and the load ``options`` (for :attr:`settings`), and take the
        backend's name and capabilities from ``spec`` when given."""
        self._model = model
        self._backend = type(self).backend_name if spec is None else spec.name
        if spec is not None:
            self.capabilities = spec.capabilities
        self._settings = Settings(backend=self._backend, model=model, options=dict(options or {}))

    # ---- identity ---------------------------------------------------------------------------

    @property
    def backend(self) -> str:
        """The backend's registered name (its spec's ``name``)."""
        return self._backend

    @property
    def model(self) -> str:
        """The model as it was given when loading."""
        return self._model

    @property
    def settings(self) -> Settings:
        """Backend, model, options (and where they came from) this generator was loaded with."""
        return self._settings

    def __repr__(self) -> str:
        return f"<{type(self).__name__} backend={self.backend!r} model={self.model!r}>"

    # ---- primitives a backend implements ----------------------------------------------------

    @property
    @abc.abstractmethod
    def context_length(self) -> int:
        """Most tokens (prompt plus generated) the model can attend to."""

    @property
    def eos_token_ids(self) -> frozenset[int]:
        """Token ids that end generation (empty if the model has none)."""
        return frozenset()

    @abc.abstractmethod
    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` as the model reads it: with a BOS token where the model's
        tokenizer adds one (GPT-2 adds none), and special-token names in the text (such as
        ``<|endoftext|>``) read as plain text, never as control tokens."""

    @abc.abstractmethod
    def detokenize(self, token_ids: Sequence[int]) -> str:
        """The text of ``token_ids`` (special tokens rendered as text)."""

    @abc.abstractmethod
    def next_token_logits(self, token_ids: Sequence[int]) -> npt.NDArray[np.floating]:
        """Raw logits (1-D, vocabulary size) for the token following ``token_ids``."""

    # ---- faster paths a backend may override ------------------------------------------------

    def open_session(self, prompt_ids: Sequence[int]) -> Session:
        """A state that has read ``prompt_ids``; override to reuse the engine's KV cache."""
        return RecomputeSession(self, prompt_ids)

    def token_stream(
        self, prompt_ids: Sequence[int], config: DecodingConfig, n_new: int, rng: np.random.Generator
    ) -> Iterator[int]:
        """Generated token ids one by one (at most ``n_new``; an EOS token ends it).

        The default runs nextword's decoding loop over :meth:`open_session`, so every decoding
        option is honoured with Hugging Face semantics.
        """
        return sample_tokens(self.open_session(prompt_ids), prompt_ids, config, n_new, rng, self.eos_token_ids)

    def generate_ids(
        self, prompts_ids: Sequence[Sequence[int]], config: DecodingConfig, n_new: Sequence[int]
    ) -> list[list[Iterable[int]]]:
        """For each prompt, ``num_return_sequences`` token-id sequences (lazy iterables allowed).

        A sequence may run past a stop string; it must end at its first EOS token. The default
        draws them one at a time from :meth:`token_stream`, with one random generator per prompt
        seeded by ``config.seed``, so a batch equals the prompts run one by one.
        """
        out: list[list[Iterable[int]]] = []
        for ids, n in zip(prompts_ids, n_new, strict=True):
            rng = np.random.default_rng(config.seed)
            out.append([LazyTokens(self.token_stream, ids, config, n, rng) for _ in range(config.num_return_sequences)])
        return out

    def generate_completions(
        self, prompts_ids: Sequence[Sequence[int]], config: DecodingConfig, n_new: Sequence[int]
    ) -> list[list[Completion]]:
        """For each prompt, its ``num_return_sequences`` finished completions (text, token ids,
        finish reason). The inputs are checked already (lengths, ``min_new_tokens``, options).

        The default decodes :meth:`generate_ids` here, applying EOS, stop strings and UTF-8-safe
        text once for every backend. Override it only where the engine returns finished text
        itself (a remote server that applies stop strings on its side).
        """
        raw = self.generate_ids(prompts_ids, config, n_new)
        return [[self._complete(seq, config, ids) for seq in seqs] for ids, seqs in zip(prompts_ids, raw, strict=True)]

    def completion_stream(self, prompt_ids: Sequence[int], config: DecodingConfig, n_new: int) -> CompletionStream:
        """One sequence as text chunks (never an empty one, never a split character), then its
        :class:`~nextword.Completion`. The inputs are checked already.

        The default decodes :meth:`token_stream` here, with one random generator seeded by
        ``config.seed``. Override it only where the engine streams finished text itself.
        """
        rng = np.random.default_rng(config.seed)
        state = SequenceState()
        chunks = self._decode_text(self.token_stream(prompt_ids, config, n_new, rng), config, state, prompt_ids)

        def finish() -> Completion:
            return Completion("".join(state.text), tuple(state.token_ids), state.finish_reason)

        return CompletionStream(chunks, finish, lambda: len(state.token_ids))

    def native_word_prediction(self, prompt: str, k: int, complete: CompleteMode) -> Prediction | None:
        """The ``k`` next words as the engine itself finds them, or None (the default) to let
        nextword's word search answer. Override it only where the engine runs that same search
        (a remote ``nextword serve``); ``k`` is checked already."""
        return None

    def open_branches(self, prompt_ids: Sequence[int]) -> Branches:
        """The state after ``prompt_ids`` from which several continuations are evaluated (the
        word search's paths; see :mod:`nextword._decoding.branches`). The default evaluates them
        one by one through :meth:`open_session`; override it where the engine evaluates several
        sequences in one call over the prompt's KV cache."""
        return SessionBranches(self, self.check_token_ids(prompt_ids))

    def sequence_logits(self, token_ids: Sequence[int]) -> npt.NDArray[np.floating]:
        """Raw logits after every prefix of ``token_ids``: row ``i`` is the distribution after
        ``token_ids[: i + 1]`` (shape ``(len(token_ids), vocabulary size)``). The default steps
        one :meth:`open_session` through the tokens; override it where the engine reads a whole
        sequence in one pass."""
        ids = self.check_token_ids(token_ids)
        session = self.open_session(ids[:1])
        rows = []
        for i in range(1, len(ids) + 1):
            rows.append(np.array(session.logits(), copy=True))  # a session may reuse its buffer
            if i < len(ids):
                session.feed(ids[i])
        return np.stack(rows)

    def token_bytes(self, token_id: int) -> bytes | None:
        """The bytes ``token_id`` adds to a text (a split character's share included; ``b""`` for
        a control token such as EOS), or None when the backend does not know them (the default):
        nextword then reads each token's text instead, and cannot follow a character that the
        tokenizer splits across tokens. Byte-level tokenizers know them; override this."""
        return None

    def next_token_top_logprobs(self, token_ids: Sequence[int], n: int) -> TopLogprobs:
        """The ``n`` most likely tokens after ``token_ids`` with their log-probabilities.

        The default takes them from :meth:`next_token_logits`. A backend without full logits
        (``capabilities.logits`` False) overrides this instead and declares ``max_logprobs``.
        """
        return TopLogprobs.from_logits(self.next_token_logits(token_ids), n)

    def token_logprobs(self, token_ids: Sequence[int]) -> list[float]:
        """Log-probability of each token after the first, given the tokens before it."""
        session = self.open_session(token_ids[:1])
        out: list[float] = []
        for i in range(1, len(token_ids)):
            out.append(float(log_softmax(session.logits())[token_ids[i]]))
            if i + 1 < len(token_ids):
                session.feed(token_ids[i])
        return out

    def close(self) -> None:
        """Release engine resources; override when the engine holds any. Afterwards every call
        raises :class:`~nextword.errors.InvalidState` (the base enforces it, also for overrides)
        and :attr:`closed` is True. Closing twice is harmless."""
        self._nextword_closed = True

    @property
    def model_files(self) -> tuple[str, ...]:
        """Paths of the files the model was read from, beyond :attr:`model` itself (a model
        converted into a cache, say), so that a server can keep every one of them out of what it
        shows to clients. The default names none."""
        return ()

    def _shared_word_trees(self) -> Trees:
        """The word-search trees this generator's stateless word predictions share (see
        :mod:`nextword._words.trees`): a word prediction on a text whose context was searched
        recently replays that search's steps instead of asking the engine again (bounded by
        :data:`~nextword._words.trees.SHARED_BUDGET` bytes)."""
        if self._word_trees is None:
            from nextword._words.trees import SHARED_BUDGET, SHARED_CONTEXTS, Trees

            self._word_trees = Trees(self, budget_bytes=SHARED_BUDGET, contexts=SHARED_CONTEXTS)
        return self._word_trees

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (calls then raise :class:`~nextword.errors.InvalidState`).
        :func:`nextword.load` never hands out a closed generator: it loads the model again."""
        return self._nextword_closed

    def _refuse_closed(self) -> None:
        raise InvalidState(f"this {self.backend} generator for {self.model!r} was closed; load the model again")

    def _check_open(self) -> None:
        if self._nextword_closed:
            self._refuse_closed()

    # ---- the async API (engine work in worker threads; see nextword._runtime.async_bridge) ----------------------

    @overload
    async def agenerate(self, prompt: str, config: DecodingConfig | None = None, /, **decoding: Any) -> Generation: ...

    @overload
    async def agenerate(
        self, prompt: Sequence[str], config: DecodingConfig | None = None, /, **decoding: Any
    ) -> list[Generation]: ...

    async def agenerate(
        self, prompt: str | Sequence[str], config: DecodingConfig | None = None, /, **decoding: Any
    ) -> Generation | list[Generation]:
        """:meth:`generate` without blocking the event loop. Cancelling the task stops the
        engine at its next step; the generator stays usable."""
        return await run_in_worker(self.generate, prompt, config, **decoding)

    def astream(self, prompt: str, config: DecodingConfig | None = None, /, **decoding: Any) -> AsyncTextStream:
        """:meth:`stream` for ``async for`` (see :class:`nextword._runtime.async_bridge.AsyncTextStream`):
        cancelling the task or closing the stream stops the engine and frees its slot."""
        return AsyncTextStream(lambda: self.stream(prompt, config, **decoding))

    async def apredict_next(self, prompt: str, k: int = 5, *, unit: Literal["word", "token"] = "word") -> Prediction:
        """:meth:`predict_next` without blocking the event loop."""
        return await run_in_worker(self.predict_next, prompt, k, unit=unit)

    async def ascore(self, text: str) -> Score:
        """:meth:`score` without blocking the event loop."""
        return await run_in_worker(self.score, text)

    # ---- the public API ---------------------------------------------------------------------

    @overload
    def generate(self, prompt: str, config: DecodingConfig | None = None, /, **decoding: Any) -> Generation: ...

    @overload
    def generate(
        self, prompt: Sequence[str], config: DecodingConfig | None = None, /, **decoding: Any
    ) -> list[Generation]: ...

    def generate(
        self, prompt: str | Sequence[str], config: DecodingConfig | None = None, /, **decoding: Any
    ) -> Generation | list[Generation]:
        """Continue one prompt (returns a :class:`Generation`) or each of a list of prompts
        (returns a list, in order). Options are validated before the engine runs."""
        self._check_open()
        cfg = self._config(config, decoding)
        single = isinstance(prompt, str)
        prompts = [prompt] if isinstance(prompt, str) else prompt_list(prompt)
        if not single:
            self.capabilities.require("batch", self.backend)
        prompts_ids = [self._encode_prompt(p) for p in prompts]
        results = self._generate(prompts, prompts_ids, cfg)
        return results[0] if single else results

    def generate_tokens(
        self, prompt_ids: Sequence[int], config: DecodingConfig | None = None, /, **decoding: Any
    ) -> Generation:
        """Continue a prompt given as token ids (as a server's token-id prompts are); otherwise
        the same as :meth:`generate` for one prompt. ``result.prompt`` is the ids' text."""
        self._check_open()
        cfg = self._config(config, decoding)
        ids = self.check_token_ids(prompt_ids, what="prompt ids")
        return self._generate([self.detokenize(ids)], [ids], cfg)[0]

    def _generate(self, prompts: list[str], prompts_ids: list[list[int]], cfg: DecodingConfig) -> list[Generation]:
        n_new = [cfg.new_tokens_for(len(ids)) for ids in prompts_ids]
        for ids, n in zip(prompts_ids, n_new, strict=True):
            self._check_length(len(ids), n)
            check_min_new(cfg, n)
        completions = self.generate_completions(prompts_ids, cfg, n_new)
        return [
            Generation(
                prompt=p,
                prompt_token_ids=tuple(ids),
                sequences=tuple(seqs),
                settings=self._settings.with_decoding(cfg),
            )
            for p, ids, seqs in zip(prompts, prompts_ids, completions, strict=True)
        ]

    def stream(self, prompt: str, config: DecodingConfig | None = None, /, **decoding: Any) -> TextStream:
        """Continue ``prompt``, yielding text chunks as they are generated.

        Chunks never split a character, and joined they equal what :meth:`generate` returns
        for the same prompt and options. ``num_return_sequences`` must be 1.
        """
        self._check_open()
        cfg = self._config(config, decoding)
        self.capabilities.require("stream", self.backend)
        if cfg.num_return_sequences != 1:
            raise InvalidConfig("stream() produces one sequence; num_return_sequences must be 1")
        if not isinstance(prompt, str):
            raise InvalidInput(f"stream() takes one prompt string, got {type(prompt).__name__}")
        return self._stream(prompt, self._encode_prompt(prompt), cfg)

    def stream_tokens(
        self, prompt_ids: Sequence[int], config: DecodingConfig | None = None, /, **decoding: Any
    ) -> TextStream:
        """:meth:`stream` for a prompt given as token ids."""
        self._check_open()
        cfg = self._config(config, decoding)
        self.capabilities.require("stream", self.backend)
        if cfg.num_return_sequences != 1:
            raise InvalidConfig("stream() produces one sequence; num_return_sequences must be 1")
        ids = self.check_token_ids(prompt_ids, what="prompt ids")
        return self._stream(self.detokenize(ids), ids, cfg)

    def _stream(self, prompt: str, ids: list[int], cfg: DecodingConfig) -> TextStream:
        n_new = cfg.new_tokens_for(len(ids))
        self._check_length(len(ids), n_new)
        check_min_new(cfg, n_new)
        stream = self.completion_stream(ids, cfg, n_new)

        def finish() -> Generation:
            return Generation(
                prompt=prompt,
                prompt_token_ids=tuple(ids),
                sequences=(stream.finish(),),
                settings=self._settings.with_decoding(cfg),
            )

        return TextStream(stream.chunks, finish, stream.progress)

    def predict_next(
        self, prompt: str, k: int = 5, *, unit: Literal["word", "token"] = "word", complete: CompleteMode = "auto"
    ) -> Prediction:
        """The ``k`` most likely next words (``unit="word"``, see :func:`nextword._words.search.predict_words`)
        or tokens (``unit="token"``) after ``prompt``, most likely first, with their probabilities
        and log-probabilities under the raw model (no decoding options). For words, a prompt that
        ends inside a word gets that word's completions (``complete``, see
        :func:`nextword._words.complete.predict_or_complete`)."""
        self._check_open()
        self.capabilities.require("predict_next", self.backend)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InvalidInput(f"k must be a positive integer, got {k!r}")
        if unit == "word":
            native = self.native_word_prediction(prompt, k, complete)
            return native if native is not None else predict_or_complete(self, prompt, k, complete=complete)
        if unit != "token":
            raise InvalidInput(f"unit must be 'word' or 'token', got {unit!r}")
        self.capabilities.check_logprobs(k, self.backend)
        ids = self._encode_prompt(prompt)
        self._check_length(len(ids), 0)
        top = top_logprobs(self, ids, k)
        context = context_for(self.detokenize, ids)
        candidates = tuple(
            Candidate(
                text=piece_text(self.detokenize, context, t),
                token_ids=(t,),
                prob=math.exp(lp),
                logprob=lp,
            )
            for t, lp in zip(top.token_ids, top.logprobs, strict=True)
        )
        return Prediction(prompt=prompt, candidates=candidates, settings=self._settings)

    def typing_session(
        self,
        k: int = 5,
        *,
        complete: CompleteMode = "auto",
        beam_width: int | None = None,
        min_prob: float = 0.0,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        text: str = "",
        prefetch: bool = False,
    ) -> TypingSession:
        """A :class:`~nextword._words.typing_session.TypingSession` on this generator: type,
        delete, accept and replace text, and ask for ``suggestions()`` after any edit; each
        answer is what :meth:`predict_next` gives for the text with these options, computed
        from the state of the text before the word being typed and the search tree of that word."""
        from nextword._words.typing_session import TypingSession

        self._check_open()
        return TypingSession(
            self,
            k=k,
            complete=complete,
            beam_width=beam_width,
            min_prob=min_prob,
            max_tokens=max_tokens,
            text=text,
            prefetch=prefetch,
        )

    def score(self, text: str) -> Score:
        """Log-likelihood of ``text``: every token after the first, given the tokens before it."""
        self._check_open()
        self.capabilities.require("score", self.backend)
        ids = self._encode_prompt(text, what="text")
        self._check_length(len(ids), 0, what="text")
        logprobs = self.token_logprobs(ids) if len(ids) > 1 else []
        tokens = tuple(
            TokenScore(token_id=t, text=piece_text(self.detokenize, ids[i : i + 1], t), logprob=lp)
            for i, (t, lp) in enumerate(zip(ids[1:], logprobs, strict=True))
        )
        return Score(text=text, first_token_id=ids[0], tokens=tokens, settings=self._settings)

    # ---- internals ----------------------------------------------------------------------------

    def _config(self, config: DecodingConfig | None, decoding: dict[str, Any]) -> DecodingConfig:
        if config is not None and not isinstance(config, DecodingConfig):
            raise InvalidConfig(f"config must be a DecodingConfig, got {type(config).__name__}")
        cfg = DecodingConfig.from_options(config, **decoding) if decoding else (config or DecodingConfig())
        self.capabilities.check(cfg, self.backend)
        return cfg

    def check_token_ids(self, token_ids: object, *, room: int = 0, what: str = "token ids") -> list[int]:
        """``token_ids`` as a list of ints, after checking that it is a non-empty sequence of
        integers, each within the vocabulary (0 to :attr:`vocab_size` - 1), and that ``room`` more
        tokens still fit the context window. Otherwise :class:`~nextword.errors.InvalidInput` (or
        :class:`~nextword.errors.ContextLengthExceeded`) naming ``what`` and what was wrong.

        The one check of token ids that come from outside: the public API calls it, and a backend
        calls it before its engine reads ids (an id past the vocabulary can crash an engine)."""
        if isinstance(token_ids, (str, bytes)) or not isinstance(token_ids, (Sequence, np.ndarray)):
            raise InvalidInput(f"the {what} must be a list of integers, got {type(token_ids).__name__}")
        if len(token_ids) == 0:
            raise InvalidInput(f"the {what} are empty; give at least one token id")
        if any(isinstance(t, (bool, np.bool_)) or not isinstance(t, (int, np.integer)) for t in token_ids):
            raise InvalidInput(f"the {what} must all be integers")
        ids = [int(t) for t in token_ids]
        vocab = self.vocab_size
        bad = [t for t in ids if t < 0 or (vocab is not None and t >= vocab)]
        if bad:
            limit = f"0 to {vocab - 1}" if vocab is not None else "non-negative"
            raise InvalidInput(f"token id {bad[0]} is outside the vocabulary ({limit})")
        check_length(len(ids), room, self.context_length)
        return ids

    @property
    def vocab_size(self) -> int | None:
        """Number of token ids the model knows: the length of a :meth:`next_token_logits` row.

        The default reads it off one :meth:`next_token_logits` call, once; a backend overrides it
        where the engine knows it. None only on a backend without full logits
        (``capabilities.logits`` False) that cannot tell."""
        if self._vocab_size_read is None and self.capabilities.logits:
            probe = self.tokenize("a")[:1] or sorted(self.eos_token_ids)[:1] or [0]
            self._vocab_size_read = int(np.asarray(self.next_token_logits(probe)).shape[-1])
        return self._vocab_size_read

    def _encode_prompt(self, prompt: object, what: str = "prompt") -> list[int]:
        return encode_text(self, prompt, what)

    def _check_length(self, n_prompt: int, n_new: int, what: str = "prompt") -> None:
        check_length(n_prompt, n_new, self.context_length, what)

    def _complete(self, token_ids: Iterable[int], cfg: DecodingConfig, prompt_ids: Sequence[int]) -> Completion:
        state = SequenceState()
        for _ in self._decode_text(token_ids, cfg, state, prompt_ids):
            pass
        return Completion("".join(state.text), tuple(state.token_ids), state.finish_reason)

    def _decode_text(
        self, token_ids: Iterable[int], cfg: DecodingConfig, state: SequenceState, prompt_ids: Sequence[int]
    ) -> Iterator[str]:
        """Turn token ids into text chunks, applying EOS and stop strings; record the outcome in
        ``state``. Both :meth:`generate` and :meth:`stream` go through here. Text is decoded
        after the end of the prompt, so the first token keeps its leading space."""
        detok = IncrementalDetokenizer(self.detokenize, context_for(self.detokenize, prompt_ids))
        stopper = StopMatcher(cfg.stop)
        eos = self.eos_token_ids

        def emit(text: str) -> Iterator[str]:
            out = stopper.feed(text)
            if out:
                state.text.append(out)
                yield out

        iterator = iter(token_ids)
        with contextlib.ExitStack() as cleanup:
            close = getattr(iterator, "close", None)
            if close is not None:
                cleanup.callback(close)
            for token in iterator:
                check_cancelled()  # before the engine is asked for another token
                state.token_ids.append(token)
                if token in eos:
                    state.finish_reason = "eos"
                    break
                yield from emit(detok.add(token))
                if stopper.stopped:
                    state.finish_reason = "stop"
                    return
        yield from emit(detok.flush())
        if stopper.stopped:
            state.finish_reason = "stop"
            return
        tail = stopper.flush()
        if tail:
            state.text.append(tail)
            yield tail


# The base's own defaults refuse to run after close() too (a backend's overrides are wrapped as
# its class is defined, in __init_subclass__).
for _name in GUARDED:
    if callable(BaseGenerator.__dict__.get(_name)):
        setattr(BaseGenerator, _name, refusing_when_closed(BaseGenerator.__dict__[_name]))
del _name
