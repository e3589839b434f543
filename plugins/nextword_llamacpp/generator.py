"""``LlamaCppGenerator``: nextword's Generator on llama.cpp (through llama-cpp-python).

Every decoding option runs through nextword's shared decoding loop on top of llama.cpp's
next-token logits, so the results follow Hugging Face semantics exactly like every other backend.
Every request is evaluated the same canonical way (its prompt in blocks on a fixed grid from
position 0, then one token at a time: ``multiseq.prompt_blocks``), and the KV cache is reused
only where it holds such an evaluation: llama.cpp's numbers depend on how tokens were batched,
and a result must not depend on the calls before it. Within a session, or across sessions that
extend the same prompt, a step costs one token; a prompt that extends another by a few tokens
costs one short decode.

What ``model`` names is found (or converted) by :mod:`nextword_llamacpp.locate` and checked by
:mod:`nextword_llamacpp.gguf_check` before llama.cpp loads it.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
import numpy.typing as npt

from nextword import BackendSpec, BaseGenerator
from nextword.backend import (
    DecodingConfig,
    EngineThread,
    StepScheduler,
    log_softmax,
    run_concurrently,
    sample_tokens,
    utf8_bytes,
)
from nextword.errors import ContextLengthExceeded, InvalidInput, InvalidState, NextwordError
from nextword_llamacpp.gguf_check import GGUFInfo
from nextword_llamacpp.loading import default_threads, open_model
from nextword_llamacpp.multiseq import Job, Need, Needs, Request, RowsNeed, SeqPool

__all__ = ["LlamaCppGenerator", "default_threads"]

# How long a generation waits for one of the `parallel` slots before running without a lease.
_LEASE_WAIT_S = 30.0


class LlamaCppGenerator(BaseGenerator):
    """A GGUF model on llama.cpp behind nextword's API.

    One llama.cpp context holds ``parallel`` sequences, each with its own KV cells
    (:class:`~nextword_llamacpp.multiseq.SeqPool`). Calls from any number of threads are queued
    by a :class:`~nextword._runtime.scheduler.StepScheduler`: the one-token steps of concurrent
    generations are evaluated together, one ``llama_decode`` for all of them (continuous
    batching), and a sequence whose prefix some slot already holds costs only its new tokens.
    A list of prompts and ``num_return_sequences`` run as concurrent generations too.

    :attr:`llama` is the underlying ``llama_cpp.Llama``, for read-only queries (metadata,
    vocabulary); nextword evaluates tokens in a context of its own.
    """

    def __init__(
        self,
        model: str,
        llama: Any,
        info: GGUFInfo,
        pool: SeqPool,
        n_ctx: int,
        options: dict[str, Any],
        *,
        spec: BackendSpec,
    ) -> None:
        """Wrap a loaded ``llama_cpp.Llama`` and a sequence pool (use :meth:`load` to make them);
        ``spec`` is the backend's declaration (:data:`nextword_llamacpp.plugin.SPEC`)."""
        super().__init__(model, options, spec=spec)
        self.llama = llama
        self.gguf = info
        self._lock = threading.RLock()
        self._closed = False
        self._n_ctx = n_ctx
        self._pool = pool
        # Every engine call runs on one thread, the same for every OpenMP engine of the process
        # (one OpenMP team): see nextword._runtime.engine_thread for why.
        engine = self._engine = EngineThread("nextword-llamacpp", shared="openmp")
        self._scheduler: StepScheduler[Request] = StepScheduler(
            lambda requests: engine.call(lambda: pool.execute(requests)), max_group=pool.n_slots
        )
        self._generations = threading.BoundedSemaphore(pool.n_slots)
        self._leases_held = 0
        self._lease_lock = threading.Lock()
        self._n_vocab = int(llama.n_vocab())
        vocab = llama_cpp.llama_model_get_vocab(llama.model)
        self._vocab = vocab
        self._add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab))
        eos = {int(llama_cpp.llama_vocab_eos(vocab)), int(llama_cpp.llama_vocab_eot(vocab))}
        self._eos = frozenset(t for t in eos if 0 <= t < self._n_vocab)
        self._pieces: dict[int, bytes] = {}

    @classmethod
    def load(cls, model: str, *, spec: BackendSpec, **options: Any) -> LlamaCppGenerator:
        """Load ``model`` (a .gguf file, a Hugging Face GPT-2 folder or hub id; see
        :func:`~nextword_llamacpp.locate.locate_gguf`) with the plugin's load options (documented
        in :mod:`nextword_llamacpp.plugin`), through the steps of :func:`~nextword_llamacpp.loading.open_model`.
        ``spec`` is the backend's declaration the generator reports: the plugin passes its own
        (:data:`nextword_llamacpp.plugin.SPEC`; ``SPEC.load(model, **options)`` loads a generator
        without nextword's cache). This module never imports the plugin module.

        Raises:
            ModelLoadError: the model cannot be found, converted, validated or loaded by llama.cpp.
            InvalidConfig: an option value cannot work with this model or this llama.cpp build.
        """
        opened = open_model(model, **options)
        generator = cls(model, opened.llama, opened.info, opened.pool, opened.context_length, opened.options, spec=spec)
        # The exact mode's group size is measured now, on the engine thread, rather than by the
        # first concurrent call (the measurement clears every sequence the pool holds).
        _ = generator.batch_group_size
        return generator

    # ---- primitives -------------------------------------------------------------------------

    @property
    def context_length(self) -> int:
        """Tokens the context holds: ``n_ctx``, never more than a learned position table."""
        return self._n_ctx

    @property
    def eos_token_ids(self) -> frozenset[int]:
        """The model's end-of-sequence and end-of-turn tokens."""
        return self._eos

    @property
    def gguf_path(self) -> Path:
        """The GGUF file that was loaded (for a converted folder, the cached file)."""
        return self.gguf.path

    @property
    def model_files(self) -> tuple[str, ...]:
        """The GGUF file that was loaded."""
        return (str(self.gguf.path),)

    @property
    def vocab_size(self) -> int:
        """Vocabulary size (the length of every logits vector)."""
        return self._n_vocab

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text``; a BOS token comes first when the model asks for one (GPT-2 does
        not), and special-token text such as ``<|endoftext|>`` is tokenized as plain text."""
        data = utf8_bytes(text)
        with self._lock:
            self._require_open()
            return [int(t) for t in self.llama.tokenize(data, add_bos=self._add_bos, special=False)]

    def detokenize(self, token_ids: Sequence[int]) -> str:
        """The text of ``token_ids``: their bytes joined, then decoded as UTF-8 (an incomplete
        character becomes U+FFFD). Special tokens are rendered as their text. Decoding a list in
        pieces and joining the bytes gives exactly the bytes of the whole."""
        pieces = self._pieces
        try:
            data = b"".join([pieces[t] for t in token_ids])
        except KeyError:
            data = b"".join([self._piece(int(t)) for t in token_ids])
        return data.decode("utf-8", errors="replace")

    def token_bytes(self, token_id: int) -> bytes | None:
        """The bytes ``token_id`` adds to a text (a split character's share included); ``b""``
        for a control token (BOS, EOS, ...)."""
        token = int(token_id)
        piece = self._piece(token)
        if llama_cpp.llama_vocab_is_control(self._vocab, token):
            return b""
        return piece

    def next_token_logits(self, token_ids: Sequence[int]) -> npt.NDArray[np.floating]:
        """Raw float32 logits for the token after ``token_ids`` (a fresh array the caller owns);
        always evaluated the same way (in the canonical blocks from position 0), so the result
        does not depend on earlier or concurrent calls."""
        ids = self.check_token_ids(token_ids)
        return self._logits(Need(ids, len(ids)))

    def open_session(self, prompt_ids: Sequence[int]) -> _PoolSession:
        """A session on the sequence pool: nothing runs until the first
        :meth:`~_PoolSession.logits`; then each :meth:`~_PoolSession.feed` costs one token,
        evaluated together with the steps of concurrent sessions."""
        ids = self.check_token_ids(prompt_ids)
        return _PoolSession(self, ids, len(ids))

    def open_branches(self, prompt_ids: Sequence[int]) -> _PoolBranches:
        """Continuations of one prompt evaluated together (see ``nextword._decoding.branches``):
        row i of :meth:`~_PoolBranches.logits` equals a session of ``prompt_ids`` fed with
        ``paths[i]``; the prompt's cells are copied between sequences rather than recomputed."""
        return _PoolBranches(self, self.check_token_ids(prompt_ids))

    def token_stream(
        self, prompt_ids: Sequence[int], config: DecodingConfig, n_new: int, rng: np.random.Generator
    ) -> Iterator[int]:
        """The shared decoding loop over a pool session (what ``stream`` reads). The stream
        leases a slot and counts as a caller worth waiting for only while it computes a token:
        a stream suspended between tokens (read slowly, left unread, or interrupted by Ctrl-C
        in the reader and not closed yet) holds nothing that other calls wait for."""
        return self._tokens(prompt_ids, config, n_new, rng, hold=False)

    def _tokens(
        self, prompt_ids: Sequence[int], config: DecodingConfig, n_new: int, rng: np.random.Generator, *, hold: bool
    ) -> Iterator[int]:
        """Sampled tokens; with ``hold``, the slot lease is held from the first token to the
        last (a generation read to its end at once); without, only during each token's step."""
        session = self.open_session(prompt_ids)
        steps = sample_tokens(session, prompt_ids, config, n_new, rng, self.eos_token_ids)
        try:
            if hold:
                with self._lease(session, _LEASE_WAIT_S):
                    yield from steps
                return
            wait = _LEASE_WAIT_S  # the first step waits for a slot; later ones take one if free
            while True:
                with self._lease(session, wait):
                    token = next(steps, None)
                if token is None:
                    return
                yield token
                wait = 0.0
        finally:
            steps.close()

    @contextlib.contextmanager
    def _lease(self, session: _PoolSession, wait: float) -> Iterator[None]:
        """Lease a slot for ``session`` (at most ``parallel`` generations hold one; a caller past
        that waits up to ``wait`` seconds, then runs unleased rather than risk a deadlock when
        one thread interleaves more streams than there are slots) and count it as a
        participant of the scheduler, so concurrent steps share decodes. Released on any exit,
        an interrupt included."""
        leased = False
        try:
            leased = self._generations.acquire(timeout=wait) if wait > 0 else self._generations.acquire(False)
            if leased:
                with self._lease_lock:
                    self._leases_held += 1
            session.owner = session if leased else None
            with self._scheduler.participant():
                yield
        finally:
            session.owner = None
            if leased:
                try:
                    self._pool.release(session)
                finally:
                    with self._lease_lock:
                        self._leases_held -= 1
                    self._generations.release()

    def generate_ids(
        self, prompts_ids: Sequence[Sequence[int]], config: DecodingConfig, n_new: Sequence[int]
    ) -> list[list[Iterable[int]]]:
        """All sequences of a batch run as concurrent generations (one worker thread each, up to
        ``parallel`` at a time), so their steps share decodes. The sequences of one prompt share
        one random generator in order when sampling, as in the one-by-one default; they then
        run one after another."""
        jobs: list[Callable[[], list[list[int]]]] = []
        for ids, n in zip(prompts_ids, n_new, strict=True):

            def run(ids: Sequence[int] = ids, n: int = n, count: int = config.num_return_sequences) -> list[list[int]]:
                rng = np.random.default_rng(config.seed)
                return [list(self._tokens(ids, config, n, rng, hold=True)) for _ in range(count)]

            if config.do_sample or config.num_return_sequences == 1:
                jobs.append(run)
            else:  # greedy: the sequences of a prompt are identical in value but each is its own run
                jobs.extend(partial(run, count=1) for _ in range(config.num_return_sequences))
        results = run_concurrently(jobs, self._pool.n_slots)
        out: list[list[Iterable[int]]] = []
        it = iter(results)
        for _ in prompts_ids:
            if config.do_sample or config.num_return_sequences == 1:
                out.append(list(next(it)))
            else:
                out.append([next(it)[0] for _ in range(config.num_return_sequences)])
        return out

    def token_logprobs(self, token_ids: Sequence[int]) -> list[float]:
        """Log-probability of each token after the first, in one pass over the sequence.

        llama.cpp is asked for the logits of every position, in chunks sized so its output buffer
        stays small (about 32 MB); the log-softmax is :func:`nextword._decoding.processors.log_softmax`
        (float64).
        """
        ids = self.check_token_ids(token_ids)
        out = np.empty(len(ids) - 1, dtype=np.float64)

        def take(start: int, rows: npt.NDArray[np.float32]) -> None:
            # rows[j] are the logits after ids[start + j]: they score ids[start + j + 1].
            # 16 rows at a time: three times faster than one row at a time, which matters here
            # (it is per scored token), with a bounded float64 buffer.
            targets = np.asarray(ids[start + 1 : start + 1 + rows.shape[0]], dtype=np.int64)
            for b in range(0, len(targets), 16):
                t = targets[b : b + 16]
                logp = log_softmax(rows[b : b + len(t)])
                out[start + b : start + b + len(t)] = logp[np.arange(len(t)), t]

        request = RowsNeed(ids, take)
        self._submit(request, batchable=False)
        return out.tolist()

    # ---- seams for diagnostics and tests -----------------------------------------------------

    @property
    def scheduler(self) -> StepScheduler[Request]:
        """The step scheduler every engine call of this generator goes through (its ``queued``,
        ``participants``, ``busy``, ``stats`` and ``gather_s``)."""
        return self._scheduler

    @property
    def pool(self) -> SeqPool:
        """The sequence pool on the llama.cpp context (its ``decodes``, ``evictions``, ``n_slots``
        and :meth:`~nextword_llamacpp.multiseq.SeqPool.decode_log`)."""
        return self._pool

    @property
    def free_leases(self) -> int:
        """Generations that may start now without waiting for a sequence slot (a generation
        holds a lease only while it is stepping, not while its stream waits to be read)."""
        with self._lease_lock:
            return self._pool.n_slots - self._leases_held

    @contextlib.contextmanager
    def holding_engine(self, timeout_s: float = 60.0) -> Iterator[None]:
        """Hold the engine for the block (no other engine work runs until it ends, at most
        ``timeout_s`` seconds): calls made meanwhile queue up and reach the scheduler together."""
        release = threading.Event()
        holding = threading.Event()

        def hold() -> None:
            holding.set()
            release.wait(timeout_s)

        holder = threading.Thread(target=lambda: self._submit(Job(hold), batchable=False), daemon=True)
        holder.start()
        try:
            if not holding.wait(timeout_s):
                raise NextwordError(f"the engine could not be held within {timeout_s} s")
            yield
        finally:
            release.set()
            holder.join(timeout_s)

    @property
    def batch_group_size(self) -> int:
        """How many one-token steps of different sequences one decode holds: all active ones
        (up to ``parallel``) with ``batching="fast"``; with ``"exact"`` the largest group
        measured to give bit-identical logits to a step alone (measured when the model is loaded)."""
        if self._pool.mode == "fast":
            return self._pool.n_slots
        sizes: list[int] = []
        self._submit(Job(lambda: sizes.append(self._pool.exact_group_size())), batchable=False)
        return sizes[0]

    def sequence_logits(self, token_ids: Sequence[int]) -> npt.NDArray[np.float32]:
        """Raw logits after every prefix of ``token_ids``, in one pass over the sequence (in
        chunks, as :meth:`token_logprobs`): row ``i`` is the distribution after
        ``token_ids[: i + 1]`` (shape ``(len(token_ids), vocab)``, float32)."""
        ids = self.check_token_ids(token_ids)
        out = np.empty((len(ids), self._n_vocab), dtype=np.float32)

        def take(start: int, rows: npt.NDArray[np.float32]) -> None:
            out[start : start + rows.shape[0]] = rows

        self._submit(RowsNeed(ids, take), batchable=False)
        return out

    def reset_cache(self) -> None:
        """Forget every cached sequence; the next calls evaluate theirs from the start."""
        with contextlib.suppress(NextwordError):
            self._submit(Job(self._pool.clear), batchable=False)

    def close(self) -> None:
        """Free the model, the context and the batches; later calls raise :class:`InvalidState`.
        Waits for the engine work already queued."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with contextlib.suppress(NextwordError):
            self._scheduler.run(Job(self._pool.free), batchable=False)
        self._engine.stop()
        self.llama.close()

    def __del__(self) -> None:
        # A generator dropped without close(): free the pool's context before the model goes.
        with contextlib.suppress(Exception):
            if not self._pool.closed:
                self._pool.free()

    # ---- internals --------------------------------------------------------------------------

    def _require_open(self) -> None:
        if self._closed:
            raise InvalidState("this llamacpp generator was closed; load the model again")

    def _submit(self, request: Request, *, batchable: bool = True) -> None:
        """Run ``request`` through the scheduler; raise what the pool reported on it."""
        self._require_open()
        self._scheduler.run(request, batchable=batchable)
        if isinstance(request, Needs):
            error = next((n.error for n in request.needs if n.error is not None), None)
        else:
            error = request.error
        if error is not None:
            raise error

    def _logits(self, need: Need) -> npt.NDArray[np.float32]:
        self._submit(need)
        assert need.result is not None
        return need.result

    def _checked_token(self, token_id: int, held: int) -> int:
        token = int(token_id)
        if not 0 <= token < self._n_vocab:
            raise InvalidInput(f"token id {token} is outside the vocabulary (0 to {self._n_vocab - 1})")
        if held >= self._n_ctx:
            raise ContextLengthExceeded(
                f"the session already holds {held} tokens, the whole context window",
                n_tokens=held + 1,
                limit=self._n_ctx,
            )
        return token

    def _piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is not None:
            return piece
        if not 0 <= token < self._n_vocab:
            raise InvalidInput(f"token id {token} is outside the vocabulary (0 to {self._n_vocab - 1})")
        with self._lock:
            self._require_open()
            size = 64
            while True:
                buf = ctypes.create_string_buffer(size)
                n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, size, 0, True)
                if n >= 0:
                    break
                size = -n
            piece = buf.raw[:n]
        self._pieces[token] = piece
        return piece


class _PoolSession:
    """A generation state on a :class:`LlamaCppGenerator`'s sequence pool (see
    :class:`nextword._decoding.loop.Session`). Its steps run on the slot that served it last
    when that still holds its tokens; otherwise on the slot holding the longest prefix of them,
    replaying the rest the canonical way (so its numbers are those of an uninterrupted run)."""

    __slots__ = ("generator", "ids", "owner", "prompt_len", "slot")

    def __init__(self, generator: LlamaCppGenerator, ids: list[int], prompt_len: int, slot: Any = None) -> None:
        self.generator = generator
        self.ids = ids
        self.prompt_len = prompt_len
        self.slot = slot
        self.owner: object = None  # set while a generation leases the slot serving this session

    def logits(self) -> npt.NDArray[np.float32]:
        """Raw float32 logits for the token after everything fed so far (a fresh array)."""
        need = Need(list(self.ids), self.prompt_len, self.slot, self.owner)
        result = self.generator._logits(need)
        self.slot = need.hint
        return result

    def feed(self, token_id: int) -> None:
        """Append one token (evaluated at the next :meth:`logits`)."""
        self.ids.append(self.generator._checked_token(token_id, len(self.ids)))

    def fork(self) -> _PoolSession:
        """An independent copy of this state (it shares the cached cells until it diverges)."""
        return _PoolSession(self.generator, list(self.ids), self.prompt_len, self.slot)


class _PoolBranches:
    """Continuations of one prompt, evaluated together (``open_branches``)."""

    __slots__ = ("generator", "prompt")

    def __init__(self, generator: LlamaCppGenerator, prompt: list[int]) -> None:
        self.generator = generator
        self.prompt = prompt

    def logits(self, paths: Sequence[Sequence[int]]) -> npt.NDArray[np.float32]:
        """Row i: the raw logits after the prompt followed by ``paths[i]``."""
        gen = self.generator
        needs = []
        for path in paths:
            ids = list(self.prompt)
            for token in path:
                ids.append(gen._checked_token(token, len(ids)))
            needs.append(Need(ids, len(self.prompt)))
        if not needs:
            return np.empty((0, gen.vocab_size), dtype=np.float32)
        gen._submit(Needs(needs))
        return np.stack([n.result for n in needs if n.result is not None])

    def close(self) -> None:
        """Nothing to free: the sequences' cells stay in the pool as a cache."""
