"""``LlamaCppGenerator``: nextword's Generator on llama.cpp (through llama-cpp-python).

Every decoding option runs through nextword's shared decoding loop on top of llama.cpp's
next-token logits, so the results follow Hugging Face semantics exactly like every other backend.
Every request is evaluated the same canonical way (its prompt as one batch from position 0, then
one token at a time), and the KV cache is reused only where it holds such an evaluation:
llama.cpp's numbers depend on how tokens were batched, and a result must not depend on the calls
before it. Within a session, or across sessions that extend the same prompt, a step costs one token.

What ``model`` names is found (or converted) by :mod:`nextword_llamacpp.locate` and checked by
:mod:`nextword_llamacpp.gguf_check` before llama.cpp loads it.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
import numpy.typing as npt

from nextword import BackendSpec, BaseGenerator
from nextword.errors import (
    ContextLengthExceeded,
    EngineError,
    InvalidInput,
    NextwordError,
)
from nextword_llamacpp.gguf_check import GGUFInfo
from nextword_llamacpp.loading import default_threads, open_model

__all__ = ["LlamaCppGenerator", "default_threads"]

# Most logits (floats) requested from llama.cpp in one scoring call: its output buffer holds them all.
_SCORE_LOGITS_BUDGET = 8 * 1024 * 1024

_RowsCallback = Callable[[int, npt.NDArray[np.float32]], None]


class LlamaCppGenerator(BaseGenerator):
    """A GGUF model on llama.cpp behind nextword's API.

    One llama.cpp context holds the KV cache of the last evaluated token sequence; every
    evaluation reuses its longest common prefix with the new sequence. Calls are serialized by a
    lock, so one generator can be shared between threads (they take turns).

    :attr:`llama` is the underlying ``llama_cpp.Llama``, for read-only queries (metadata,
    vocabulary). Evaluating tokens with it directly changes the KV cache behind nextword's back:
    call :meth:`reset_cache` afterwards.
    """

    def __init__(
        self, model: str, llama: Any, info: GGUFInfo, n_ctx: int, options: dict[str, Any], *, spec: BackendSpec
    ) -> None:
        """Wrap a loaded ``llama_cpp.Llama`` (use :meth:`load` to make one); ``spec`` is the
        backend's declaration (:data:`nextword_llamacpp.plugin.SPEC`)."""
        super().__init__(model, options, spec=spec)
        self.llama = llama
        self.gguf = info
        self._lock = threading.RLock()
        self._closed = False
        self._n_ctx = n_ctx
        self._ctx = llama.ctx
        self._mem = llama_cpp.llama_get_memory(self._ctx)
        self._n_vocab = int(llama.n_vocab())
        self._n_batch = max(1, min(int(llama.n_batch), n_ctx))
        self._score_chunk = max(1, min(self._n_batch, _SCORE_LOGITS_BUDGET // self._n_vocab))
        vocab = llama_cpp.llama_model_get_vocab(llama.model)
        self._vocab = vocab
        self._add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab))
        eos = {int(llama_cpp.llama_vocab_eos(vocab)), int(llama_cpp.llama_vocab_eot(vocab))}
        self._eos = frozenset(t for t in eos if 0 <= t < self._n_vocab)
        self._pieces: dict[int, bytes] = {}
        # KV-cache bookkeeping: the tokens at positions 0..len-1 of sequence 0, whether the
        # context's last output row holds the logits after them, and a counter bumped on change.
        self._past: list[int] = []
        self._has_logits = False
        self._version = 0
        # (tokens, how many were evaluated as the first batch) of what the cache holds, when it
        # was filled by _evaluate_fresh or a session; None otherwise.
        self._canonical: tuple[tuple[int, ...], int] | None = None
        self._one = _Batch(1)
        self._many = _Batch(self._n_batch)

    @classmethod
    def load(cls, model: str, *, spec: BackendSpec | None = None, **options: Any) -> LlamaCppGenerator:
        """Load ``model`` (a .gguf file, a Hugging Face GPT-2 folder or hub id; see
        :func:`~nextword_llamacpp.locate.locate_gguf`) with the plugin's load options (documented
        in :mod:`nextword_llamacpp.plugin`), through the steps of :func:`~nextword_llamacpp.loading.open_model`.
        ``spec`` is the backend's declaration the generator reports (default: the plugin's own,
        as ``nextword.load("llamacpp", ...)`` passes it).

        Raises:
            ModelLoadError: the model cannot be found, converted, validated or loaded by llama.cpp.
            InvalidConfig: an option value cannot work with this model or this llama.cpp build.
        """
        opened = open_model(model, **options)
        if spec is None:
            from nextword_llamacpp.plugin import SPEC

            spec = SPEC
        return cls(model, opened.llama, opened.info, opened.context_length, opened.options, spec=spec)

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
    def n_vocab(self) -> int:
        """Vocabulary size (the length of every logits vector)."""
        return self._n_vocab

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text``; a BOS token comes first when the model asks for one (GPT-2 does
        not), and special-token text such as ``<|endoftext|>`` is tokenized as plain text."""
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidInput(f"the text is not valid Unicode (lone surrogate at {exc.start})") from None
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

    def next_token_logits(self, token_ids: Sequence[int]) -> npt.NDArray[np.floating]:
        """Raw float32 logits for the token after ``token_ids`` (a fresh array the caller owns);
        always evaluated from position 0, so the result does not depend on earlier calls."""
        ids = self._checked_ids(token_ids)
        with self._lock:
            self._require_open()
            self._evaluate_fresh(ids)
            return self._last_logits()

    def open_session(self, prompt_ids: Sequence[int]) -> _KVSession:
        """A session over the KV cache: nothing runs until the first :meth:`~_KVSession.logits`,
        then each :meth:`~_KVSession.feed` costs one token of evaluation."""
        return _KVSession(self, self._checked_ids(prompt_ids))

    def token_logprobs(self, token_ids: Sequence[int]) -> list[float]:
        """Log-probability of each token after the first, in one pass over the sequence.

        llama.cpp is asked for the logits of every position, in chunks sized so its output buffer
        stays small (about 32 MB); the log-softmax is taken in float64 like
        :func:`nextword.decoding.processors.log_softmax`.
        """
        ids = self._checked_ids(token_ids)
        out = np.empty(len(ids) - 1, dtype=np.float64)

        def take(start: int, rows: npt.NDArray[np.float32]) -> None:
            # rows[j] are the logits after ids[start + j]: they score ids[start + j + 1].
            # Vectorized over 16 rows at a time: three times faster than log_softmax row by row,
            # which matters here (it is per scored token) and not in the converter's verify().
            targets = np.asarray(ids[start + 1 : start + 1 + rows.shape[0]], dtype=np.int64)
            for b in range(0, len(targets), 16):
                x = rows[b : b + 16][: len(targets) - b].astype(np.float64)
                top = x.max(axis=1, keepdims=True)
                lse = top[:, 0] + np.log(np.exp(x - top).sum(axis=1))
                t = targets[b : b + 16]
                out[start + b : start + b + len(t)] = x[np.arange(len(t)), t] - lse

        with self._lock:
            self._require_open()
            # Cached positions carry no logits: evaluate the whole sequence again.
            self._truncate(0)
            self._eval(ids, take)
        return out.tolist()

    def reset_cache(self) -> None:
        """Forget the evaluated tokens; the next call evaluates its sequence from the start."""
        with self._lock:
            if not self._closed:
                self._truncate(0)

    def close(self) -> None:
        """Free the model, the context and the batches; later calls raise :class:`NextwordError`."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._one.free()
            self._many.free()
            self.llama.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._one.free()
            self._many.free()

    # ---- the KV cache -----------------------------------------------------------------------

    def _require_open(self) -> None:
        if self._closed:
            raise NextwordError("this llamacpp generator has been closed; load the model again")

    def _checked_ids(self, token_ids: Sequence[int]) -> list[int]:
        """``token_ids`` as a list of ints, checked: not empty, within the vocabulary and the
        context window (so llama.cpp is never handed what it would abort on)."""
        try:
            ids = [int(t) for t in token_ids]
        except (TypeError, ValueError):
            raise InvalidInput("token ids must be a sequence of integers") from None
        if not ids:
            raise InvalidInput("at least one token id is needed")
        if min(ids) < 0 or max(ids) >= self._n_vocab:
            bad = next(t for t in ids if not 0 <= t < self._n_vocab)
            raise InvalidInput(f"token id {bad} is outside the vocabulary (0 to {self._n_vocab - 1})")
        if len(ids) > self._n_ctx:
            raise ContextLengthExceeded(
                f"{len(ids)} tokens do not fit the model's context window of {self._n_ctx}",
                n_tokens=len(ids),
                limit=self._n_ctx,
            )
        return ids

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

    def _evaluate_fresh(self, ids: list[int], batch_len: int | None = None) -> None:
        """Make the cache hold ``ids`` evaluated the canonical way: ``ids[:batch_len]`` (all of
        them by default) as one batch from position 0, the rest one token at a time.

        llama.cpp's numbers depend on how tokens were grouped into batches (a batch and a
        single-token step take different kernels), so reusing a prefix that an earlier call
        evaluated some other way would make a result depend on the calls before it. What the
        cache holds is reused only when it was evaluated the same canonical way (same first
        batch, then single tokens): the same request then always gives the same numbers, and a
        session interrupted by other calls replays exactly the steps it had taken."""
        batch_len = len(ids) if batch_len is None else batch_len
        reuse = 0
        if self._canonical is not None:
            cached, cached_batch = self._canonical
            if cached_batch == batch_len and cached[:batch_len] == tuple(ids[:batch_len]):
                reuse = batch_len + _common_prefix(cached[batch_len:], ids[batch_len:])
                if reuse == len(cached) == len(ids) and self._has_logits:
                    return
                if reuse == len(ids):
                    # The last token's logits are needed again: step back over it, unless it
                    # belongs to the first batch (then that batch is evaluated anew).
                    reuse = len(ids) - 1 if len(ids) - 1 >= batch_len else 0
        if reuse < batch_len:
            self._truncate(0)
            self._eval(ids[:batch_len])
            reuse = batch_len
        else:
            self._truncate(reuse)
            if len(self._past) != reuse:  # the memory could not drop just a tail: start over
                self._eval(ids[:batch_len])
                reuse = batch_len
        for token in ids[reuse:]:
            self._eval([token])
        self._canonical = (tuple(ids), batch_len)

    def _truncate(self, n: int) -> None:
        """Drop cached positions ``n`` and later."""
        if n >= len(self._past):
            return
        self._canonical = None
        if not llama_cpp.llama_memory_seq_rm(self._mem, 0, n, -1):
            # Memory that cannot drop a tail (recurrent models): start over.
            llama_cpp.llama_memory_clear(self._mem, True)
            n = 0
        del self._past[n:]
        self._has_logits = False
        self._version += 1

    def _eval(self, tokens: Sequence[int], on_rows: _RowsCallback | None = None) -> None:
        """Append ``tokens`` to the cached sequence.

        Without ``on_rows`` only the last token's logits are computed. With it, every token's
        logits are, and ``on_rows(start, rows)`` is called after each chunk with the float32
        rows (a view valid only during the call) for ``tokens[start : start + len(rows)]``.
        """
        if not tokens:
            return
        n_past = len(self._past)
        if n_past + len(tokens) > self._n_ctx:
            raise ContextLengthExceeded(
                f"{n_past + len(tokens)} tokens do not fit the model's context window of {self._n_ctx}",
                n_tokens=n_past + len(tokens),
                limit=self._n_ctx,
            )
        # Positions from n_past on must be empty (an interrupted call may have left some), and
        # until the decode below succeeds neither the logits nor a session's view are current.
        llama_cpp.llama_memory_seq_rm(self._mem, 0, n_past, -1)
        self._has_logits = False
        self._canonical = None
        self._version += 1
        step = self._score_chunk if on_rows is not None else self._n_batch
        for start in range(0, len(tokens), step):
            chunk = tokens[start : start + step]
            pos = n_past + start
            if len(chunk) == 1 and on_rows is None:
                batch = self._one
                batch.token[0] = chunk[0]
                batch.pos[0] = pos
            else:
                batch = self._many
                batch.fill(chunk, pos, all_logits=on_rows is not None)
            rc = llama_cpp.llama_decode(self._ctx, batch.batch)
            if rc != 0:
                self._fail(rc)
            self._past.extend(chunk)
            self._version += 1
            self._has_logits = True
            if on_rows is not None:
                ptr = llama_cpp.llama_get_logits(self._ctx)
                if not ptr:
                    raise EngineError("llama.cpp returned no logits")
                on_rows(start, np.ctypeslib.as_array(ptr, shape=(len(chunk), self._n_vocab)))

    def _fail(self, rc: int) -> None:
        """After a failed llama_decode: forget what may be half-written, then raise."""
        llama_cpp.llama_memory_seq_rm(self._mem, 0, len(self._past), -1)
        self._has_logits = False
        self._version += 1
        reason = {1: "no room left in the KV cache", 2: "aborted"}.get(rc, "error")
        raise EngineError(f"llama.cpp failed to evaluate the tokens (llama_decode returned {rc}: {reason})")

    def _last_logits(self) -> npt.NDArray[np.float32]:
        """A copy of the logits after the last evaluated token."""
        ptr = llama_cpp.llama_get_logits_ith(self._ctx, -1)
        if not ptr:
            raise EngineError("llama.cpp returned no logits")
        return np.ctypeslib.as_array(ptr, shape=(self._n_vocab,)).copy()

    def _session_logits(self, session: _KVSession) -> npt.NDArray[np.float32]:
        """Logits after everything ``session`` was fed. When the cache is still the session's
        (nothing else ran in between), only the newly fed tokens are evaluated."""
        with self._lock:
            self._require_open()
            ids = session.ids
            if session.version == self._version:
                for token in ids[session.synced :]:
                    self._eval([token])
                self._canonical = (tuple(ids), session.prompt_len)
            else:
                self._evaluate_fresh(ids, session.prompt_len)
            session.version = self._version
            session.synced = len(ids)
            return self._last_logits()


class _KVSession:
    """A generation state on a :class:`LlamaCppGenerator`'s KV cache (see
    :class:`nextword.decoding.loop.Session`). Sessions may interleave; one that finds the cache
    changed replays its own steps (prompt as one batch, then each fed token), so its numbers are
    those of an uninterrupted run."""

    __slots__ = ("generator", "ids", "prompt_len", "synced", "version")

    def __init__(self, generator: LlamaCppGenerator, prompt_ids: list[int]) -> None:
        self.generator = generator
        self.ids = prompt_ids
        self.prompt_len = len(prompt_ids)
        self.synced = 0
        self.version = -1

    def logits(self) -> npt.NDArray[np.float32]:
        """Raw float32 logits for the token after everything fed so far (a fresh array)."""
        return self.generator._session_logits(self)

    def feed(self, token_id: int) -> None:
        """Append one token (evaluated at the next :meth:`logits`)."""
        token = int(token_id)
        if not 0 <= token < self.generator._n_vocab:
            raise InvalidInput(f"token id {token} is outside the vocabulary (0 to {self.generator._n_vocab - 1})")
        if len(self.ids) >= self.generator._n_ctx:
            raise ContextLengthExceeded(
                f"the session already holds {len(self.ids)} tokens, the whole context window",
                n_tokens=len(self.ids) + 1,
                limit=self.generator._n_ctx,
            )
        self.ids.append(token)


class _Batch:
    """A ``llama_batch`` for one sequence, with its field pointers looked up once."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.batch = llama_cpp.llama_batch_init(capacity, 0, 1)
        b = self.batch
        self.token, self.pos, self.logits = b.token, b.pos, b.logits
        for i in range(capacity):
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = 0
            b.logits[i] = 0
        b.logits[capacity - 1] = 1
        b.n_tokens = 1 if capacity == 1 else 0
        self._freed = False

    def fill(self, tokens: Sequence[int], n_past: int, *, all_logits: bool) -> None:
        """Put ``tokens`` at positions ``n_past...``; logits for all of them or only the last."""
        token, pos, logits = self.token, self.pos, self.logits
        flag = 1 if all_logits else 0
        for i, t in enumerate(tokens):
            token[i] = t
            pos[i] = n_past + i
            logits[i] = flag
        logits[len(tokens) - 1] = 1
        self.batch.n_tokens = len(tokens)

    def free(self) -> None:
        if not self._freed:
            self._freed = True
            llama_cpp.llama_batch_free(self.batch)


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of ``a`` and ``b``."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n
