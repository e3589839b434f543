"""Several token sequences in one llama.cpp context, decoded together (continuous batching).

:class:`SeqPool` owns a context made with ``n_seq_max`` sequences, each with its own KV cells
(``kv_unified=False``: a sequence's attention never sees another's cells). A *slot* is one
sequence id and remembers the tokens its cells hold. Requests (:class:`Need`: the logits after a
token list) arrive in groups from :class:`nextword._runtime.scheduler.StepScheduler`; for each one the
pool picks the slot that already holds the longest usable prefix, brings it up to the last token
(or copies a prefix from another slot), and then evaluates the last token of every request of the
group in one ``llama_decode``.

Every sequence is evaluated the same canonical way, whatever else runs: its first ``first``
tokens (its prompt) in the blocks of :func:`nextword.backend.prompt_blocks`, each a decode of its own, then one
token at a time. The blocks lie on a fixed grid (128 tokens, then 32, then the rest), so
a prompt that extends another by a few tokens shares nearly all of its blocks: a text that grows
by a word is evaluated with one short decode on the cells of the text before it, and its numbers
are still those of the text evaluated alone. In the ``exact`` mode the one-token
steps of different sequences share a decode only in groups no larger than the pool has measured
to give bit-identical logits to a decode of that token alone (:meth:`SeqPool.exact_group_size`;
it depends on the weight type: 8 or more for Q8_0 GPT-2, 3 for Q4_K_M Gemma on this CPU), so a
result never depends on what else was running. The ``fast`` mode puts every step of a group in
one decode, together with the new prompts of the group (as llama.cpp's server does): llama.cpp
then evaluates a prompt in pieces that depend on the other sequences, so its numbers are no longer
those of the prompt alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import llama_cpp
import numpy as np
import numpy.typing as npt

from nextword.backend import BLOCK_SIZES, prompt_blocks, shared_block_end
from nextword.errors import ContextLengthExceeded, EngineError, InvalidState, ModelLoadError, NextwordError

__all__ = [
    "BATCH_MODES",
    "KV_BUDGET",
    "Job",
    "Need",
    "Needs",
    "Request",
    "RowsNeed",
    "SeqPool",
    "default_parallel",
]

BATCH_MODES = ("exact", "fast")
BatchMode = Literal["exact", "fast"]

#: KV-cache bytes the default number of sequences may take (see :func:`default_parallel`).
KV_BUDGET = 1 << 30

#: Most sequences by default: 8 concurrent callers decode at nearly the cost of one on a CPU.
MAX_DEFAULT_PARALLEL = 8

_KV_BYTES = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q5_1": 24 / 32, "q5_0": 22 / 32}

#: ``on_rows(start, rows)``: float32 logits rows (a view valid during the call) for tokens start...
RowsCallback = Callable[[int, npt.NDArray[np.float32]], None]


class Need:
    """A request for the logits after ``ids``, evaluated canonically (``ids[:first]`` in the
    blocks of :func:`prompt_blocks`, then one token at a time). After execution exactly one of
    :attr:`result` (a fresh float32 array) and :attr:`error` is set. ``hint`` is the slot that
    served the same caller last time (it is preferred when it holds as much). ``owner``, when
    given, leases the slot that serves it: other requests do not take a leased slot while a free
    one exists."""

    __slots__ = ("error", "first", "hint", "ids", "owner", "result")

    def __init__(self, ids: list[int], first: int, hint: _Slot | None = None, owner: object = None) -> None:
        self.ids = ids
        self.first = first
        self.hint = hint
        self.owner = owner
        self.result: npt.NDArray[np.float32] | None = None
        self.error: BaseException | None = None


class Needs:
    """Several needs submitted together (they are always executed in one group)."""

    __slots__ = ("needs",)

    def __init__(self, needs: list[Need]) -> None:
        self.needs = needs


class RowsNeed:
    """Every position's logits of ``ids`` (for scoring), handed to ``on_rows`` chunk by chunk."""

    __slots__ = ("error", "ids", "on_rows")

    def __init__(self, ids: list[int], on_rows: RowsCallback) -> None:
        self.ids = ids
        self.on_rows = on_rows
        self.error: BaseException | None = None


class Job:
    """Any function that needs the engine to itself (closing, clearing)."""

    __slots__ = ("error", "fn")

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn
        self.error: BaseException | None = None


Request = Need | Needs | RowsNeed | Job


class _Slot:
    """One sequence id of the context and what its KV cells hold."""

    __slots__ = ("first", "logits", "owner", "pending", "seq", "tokens", "used")

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.owner: object = None  # the generation that leases this slot, if any
        self.tokens: list[int] = []
        self.pending: list[int] | None = None  # a prompt to decode with the group (fast mode)
        self.first = -1  # tokens[:first] were evaluated as one batch; -1: not a canonical state
        self.logits: npt.NDArray[np.float32] | None = None  # after all of tokens, when known
        self.used = 0

    def reuse(self, ids: Sequence[int], first: int, sizes: tuple[int, ...]) -> int:
        """How many leading tokens of ``ids`` (evaluated canonically with ``first``) this slot
        holds evaluated the same way: with the same prompt, all the tokens it shares with
        ``ids``; with another prompt, the blocks both prompts were evaluated in (a block end)."""
        if self.first < 1 or first < 1 or len(ids) < first:
            return 0
        tokens = self.tokens
        n = min(len(tokens), len(ids))
        i = 0
        while i < n and tokens[i] == ids[i]:
            i += 1
        if self.first == first and i >= first:
            return i
        return shared_block_end(self.first, first, min(i, self.first, first), sizes)


def _neighbours(seq: int, busy: set[int]) -> int:
    """How many of ``seq``'s two neighbouring sequence ids are in ``busy``: a new sequence next
    to running ones keeps the ids of a decode consecutive (see :meth:`SeqPool._step`)."""
    return (seq - 1 in busy) + (seq + 1 in busy)


def default_parallel(model: Any, seq_len: int, kv_type: str) -> int:
    """Sequences a context holds by default: as many as fit :data:`KV_BUDGET` bytes of KV cache
    at ``seq_len`` tokens each (estimated from the layer count and the key/value widths), at
    least 1 and at most :data:`MAX_DEFAULT_PARALLEL`."""
    n_layer = int(llama_cpp.llama_model_n_layer(model))
    n_embd = int(llama_cpp.llama_model_n_embd(model))
    n_head = max(1, int(llama_cpp.llama_model_n_head(model)))
    n_head_kv = max(1, int(llama_cpp.llama_model_n_head_kv(model)))
    per_token = 2 * n_layer * n_embd * n_head_kv / n_head * _KV_BYTES.get(kv_type, 18 / 32)
    per_seq = max(1.0, per_token * seq_len)
    return max(1, min(MAX_DEFAULT_PARALLEL, int(KV_BUDGET // per_seq)))


class SeqPool:
    """The sequences of one llama.cpp context and the decodes that serve requests on them.

    Not thread-safe by itself: :meth:`execute` is called by one thread at a time (the
    scheduler's executor).
    """

    def __init__(
        self,
        ctx: Any,
        *,
        n_slots: int,
        n_vocab: int,
        n_batch: int,
        seq_len: int,
        mode: BatchMode,
        logits_budget: int,
    ) -> None:
        self._ctx = ctx
        self._mem = llama_cpp.llama_get_memory(ctx)
        self._n_vocab = n_vocab
        self._n_batch = n_batch
        self._seq_len = seq_len
        self._mode = mode
        self._rows_chunk = max(1, min(n_batch, logits_budget // n_vocab))
        self._sizes = tuple(sorted({min(size, n_batch) for size in BLOCK_SIZES}, reverse=True))
        self._slots = [_Slot(s) for s in range(n_slots)]
        self._batch = llama_cpp.llama_batch_init(max(n_batch, n_slots), 0, 1)
        self._tick = 0
        self._exact_group: int | None = None
        self._closed = False
        self.decodes = 0
        self.evictions = 0  # leased slots taken by another request (each costs its owner a replay)
        self._decode_logs: list[list[list[tuple[int, int, int]]]] = []

    @contextlib.contextmanager
    def decode_log(self) -> Iterator[list[list[tuple[int, int, int]]]]:
        """A list that receives the ``(token, position, sequence)`` entries of every
        ``llama_decode`` made while the block runs, in order: how tests and diagnostics see which
        sequences share a decode."""
        log: list[list[tuple[int, int, int]]] = []
        self._decode_logs.append(log)
        try:
            yield log
        finally:
            self._decode_logs.remove(log)

    @classmethod
    def create(
        cls,
        llama: Any,
        *,
        seq_len: int,
        n_slots: int,
        n_batch: int,
        mode: BatchMode,
        threads: int,
        logits_budget: int,
        detail: Callable[[], str] = str,
    ) -> SeqPool:
        """A pool on a new context of ``llama``'s model, made with the same options as
        ``llama``'s own context but ``n_slots`` sequences of ``seq_len`` tokens, each with its
        own KV cells.

        Raises:
            ModelLoadError: llama.cpp could not make the context (``detail()`` says why).
        """
        params = llama_cpp.llama_context_params.from_buffer_copy(llama.context_params)
        params.n_seq_max = n_slots
        params.kv_unified = False
        params.n_ctx = seq_len * n_slots
        params.n_batch = params.n_ubatch = max(n_batch, n_slots)
        params.n_threads = params.n_threads_batch = threads
        ctx = llama_cpp.llama_init_from_model(llama.model, params)
        if not ctx:
            raise ModelLoadError(
                f"llama.cpp could not make a context of {n_slots} sequences x {seq_len} tokens "
                f"(lower 'parallel' or 'n_ctx'){detail()}"
            )
        per_seq = int(llama_cpp.llama_n_ctx_seq(ctx))
        return cls(
            ctx,
            n_slots=n_slots,
            n_vocab=int(llama.n_vocab()),
            n_batch=n_batch,
            seq_len=min(seq_len, per_seq),
            mode=mode,
            logits_budget=logits_budget,
        )

    @property
    def seq_len(self) -> int:
        """Most tokens one sequence holds."""
        return self._seq_len

    @property
    def n_slots(self) -> int:
        return len(self._slots)

    @property
    def mode(self) -> BatchMode:
        return self._mode

    @property
    def closed(self) -> bool:
        return self._closed

    def free(self) -> None:
        """Free the batch and the context (the pool is unusable afterwards)."""
        if not self._closed:
            self._closed = True
            llama_cpp.llama_batch_free(self._batch)
            llama_cpp.llama_free(self._ctx)

    # ---- requests ---------------------------------------------------------------------------

    def execute(self, requests: Sequence[Request]) -> None:
        """Serve a group of requests (the scheduler's ``execute``); failures go on each request."""
        needs: list[Need] = []
        for request in requests:
            if isinstance(request, Need):
                needs.append(request)
            elif isinstance(request, Needs):
                needs.extend(request.needs)
            elif self._closed:
                request.error = InvalidState("this llamacpp generator was closed; load the model again")
            elif isinstance(request, Job):
                try:
                    request.fn()
                except NextwordError as exc:
                    request.error = exc
            else:
                self._score(request)
        if self._closed:
            for need in needs:
                need.error = InvalidState("this llamacpp generator was closed; load the model again")
            return
        for start in range(0, len(needs), len(self._slots)):
            self._serve(needs[start : start + len(self._slots)])

    def release(self, owner: object) -> None:
        """End ``owner``'s lease (its cells stay, as a cache)."""
        for slot in self._slots:
            if slot.owner is owner:
                slot.owner = None

    def clear(self) -> None:
        """Forget every sequence's cells."""
        llama_cpp.llama_memory_clear(self._mem, True)
        for slot in self._slots:
            self._reset(slot)

    # ---- serving needs ----------------------------------------------------------------------

    def _serve(self, needs: list[Need]) -> None:
        if len(needs) > 1 and self._mode == "exact":
            self.exact_group_size()  # measured before any slot is prepared (it clears them)
        claimed: list[_Slot] = []
        steps: list[tuple[Need, _Slot]] = []
        # In the fast mode a new prompt (a need that is its first batch) joins the group's decode
        # while the batch has room for its tokens besides one per need.
        room = self._n_batch - len(needs) if self._mode == "fast" else -1
        for need in needs:
            try:
                slot = self._prepare(need, claimed, room)
            except NextwordError as exc:
                need.error = exc
                continue
            if slot is not None:
                steps.append((need, slot))
                if slot.pending:
                    room -= len(slot.pending) - 1
        if steps:
            self._step(steps)

    def _prepare(self, need: Need, claimed: list[_Slot], room: int = 0) -> _Slot | None:
        """Claim a slot for ``need`` and bring it to hold all of ``need.ids`` but the last token;
        return it (the last token is decoded with the group), or None when already served. A
        need that is a first batch of at most ``room`` + 1 tokens is left for the group's decode
        (the slot's ``pending`` tokens)."""
        ids, first, sizes = need.ids, need.first, self._sizes
        if len(ids) > self._seq_len:
            raise ContextLengthExceeded(
                f"{len(ids)} tokens do not fit the model's context window of {self._seq_len}",
                n_tokens=len(ids),
                limit=self._seq_len,
            )
        self._tick += 1
        free = [s for s in self._slots if s not in claimed]
        # A slot leased by another generation is taken only when every free slot is leased.
        own = [s for s in free if s.owner is None or s.owner is need.owner] or free
        busy = {s.seq for s in self._slots if s in claimed or (s.owner is not None and s.owner is not need.owner)}
        held = {s: s.reuse(ids, first, sizes) for s in self._slots}  # each compares token lists
        slot = max(own, key=lambda s: (held[s], s is need.hint, _neighbours(s.seq, busy), not s.tokens, -s.used))
        have = held[slot]
        claimed.append(slot)
        slot.used = self._tick
        need.hint = slot
        if need.owner is not None:
            if slot.owner is not None and slot.owner is not need.owner:
                self.evictions += 1
            slot.owner = need.owner
        if have == len(ids) == len(slot.tokens) and slot.logits is not None:
            need.result = slot.logits.copy()
            return None
        keep = self._resumable(have, ids, first)
        # Another slot (one claimed in this group, which is not touched until the step) may
        # hold more of it: start from a copy of its cells.
        source = max(self._slots, key=held.__getitem__)
        shared = self._resumable(held[source], ids, first)
        if source is not slot and shared > keep:
            self._copy(source, slot, shared)
            keep = shared
        self._truncate(slot, keep)
        if keep < first:
            if first == len(ids) and len(ids) - keep - 1 <= room:
                slot.pending = list(ids[keep:])
                return slot
            self._decode_prompt(slot, ids[:first], keep)
            if first == len(ids):
                need.result = self._row(-1)
                slot.logits = need.result.copy()
                return None
            keep = first
        else:
            # It holds the prompt's blocks: the same prompt's, or another's that end where this
            # prompt does (their blocks are this prompt's up to there).
            slot.first = first
        for token in ids[keep:-1]:
            self._decode([(token, len(slot.tokens), slot.seq)], [slot])
            slot.tokens.append(token)
        return slot

    def _resumable(self, held: int, ids: list[int], first: int) -> int:
        """Where the evaluation of ``ids`` resumes on a slot holding ``held`` of its tokens: there,
        except that the last token's logits are needed again (so it steps back over it, or over
        the whole last block when that token ends the prompt)."""
        if held < len(ids):
            return held
        if len(ids) - 1 >= first:
            return len(ids) - 1
        ends = prompt_blocks(first, self._sizes)
        return ends[-2] if len(ends) > 1 else 0

    def _step(self, steps: list[tuple[Need, _Slot]]) -> None:
        """Decode the last token of every need, in groups the mode allows."""
        size = len(steps) if self._mode == "fast" or len(steps) == 1 else self.exact_group_size()
        # llama.cpp splits a batch into one micro-batch per run of consecutive, increasing
        # sequence ids (non-unified KV cells); in that order a full group is one graph evaluation.
        steps = sorted(steps, key=lambda step: step[1].seq)
        for start in range(0, len(steps), size):
            part = steps[start : start + size]
            entries: list[tuple[int, int, int]] = []
            rows: list[int] = []  # the batch index of each need's logits
            prompts: list[bool] = []  # whether each need's whole prompt is in this decode
            for need, slot in part:
                prompts.append(slot.pending is not None)
                tokens, slot.pending = slot.pending or [need.ids[-1]], None
                base = len(need.ids) - len(tokens)
                entries.extend((token, base + i, slot.seq) for i, token in enumerate(tokens))
                rows.append(len(entries) - 1)
            try:
                self._decode(entries, [slot for _, slot in part], outputs=rows)
            except NextwordError as exc:
                for need, _ in part:
                    need.error = exc
                continue
            for row, prompt, (need, slot) in zip(rows, prompts, part, strict=True):
                if prompt:
                    slot.first = len(need.ids)
                    slot.tokens.extend(need.ids[len(slot.tokens) : -1])
                slot.tokens.append(need.ids[-1])
                need.result = self._row(row)
                slot.logits = need.result.copy()

    def exact_group_size(self) -> int:
        """The most one-token steps of different sequences one decode may hold while each row's
        logits stay bit-identical to a decode of that token alone (measured once per pool: the
        same two tokens in every sequence, one decode of n rows against one of a single row)."""
        if self._exact_group is None:
            self._exact_group = self._measure_exact_group()
        return self._exact_group

    def _measure_exact_group(self) -> int:
        slots = self._slots
        if len(slots) == 1:
            return 1
        probe = [self._n_vocab // 3, self._n_vocab // 5]
        for slot in slots:
            self._truncate(slot, 0)
        try:
            self._decode([(probe[0], 0, slots[0].seq)], [slots[0]])
            for slot in slots[1:]:
                llama_cpp.llama_memory_seq_cp(self._mem, slots[0].seq, slot.seq, -1, -1)
            self._decode([(probe[1], 1, slots[0].seq)], [slots[0]], all_logits=True)
            alone = self._row(0)
            best = 1
            for n in range(2, len(slots) + 1):
                for slot in slots[:n]:
                    llama_cpp.llama_memory_seq_rm(self._mem, slot.seq, 1, -1)
                self._decode([(probe[1], 1, s.seq) for s in slots[:n]], slots[:n], all_logits=True)
                if not all(np.array_equal(self._row(i), alone) for i in range(n)):
                    break
                best = n
            return best
        finally:
            self.clear()

    # ---- the engine -------------------------------------------------------------------------

    def _reset(self, slot: _Slot) -> None:
        slot.tokens = []
        slot.first = -1
        slot.logits = None

    def _truncate(self, slot: _Slot, n: int) -> None:
        """Drop the slot's positions ``n`` and later."""
        if n >= len(slot.tokens):
            return
        slot.logits = None
        if n == 0:
            llama_cpp.llama_memory_seq_rm(self._mem, slot.seq, -1, -1)
            self._reset(slot)
            return
        if not llama_cpp.llama_memory_seq_rm(self._mem, slot.seq, n, -1):
            llama_cpp.llama_memory_seq_rm(self._mem, slot.seq, -1, -1)  # recurrent memory: start over
            self._reset(slot)
            return
        del slot.tokens[n:]

    def _copy(self, source: _Slot, target: _Slot, n: int) -> None:
        """Make ``target`` hold the first ``n`` positions of ``source`` (each sequence has its own
        cells, so llama.cpp copies the whole stream; the tail is dropped after)."""
        llama_cpp.llama_memory_seq_rm(self._mem, target.seq, -1, -1)
        llama_cpp.llama_memory_seq_cp(self._mem, source.seq, target.seq, -1, -1)
        target.tokens = list(source.tokens)
        target.first = source.first
        target.logits = source.logits
        self._truncate(target, n)

    def _decode_prompt(self, slot: _Slot, tokens: list[int], start: int) -> None:
        """Evaluate a prompt's blocks after ``start`` (a block end, or 0) on a slot that holds
        ``tokens[:start]`` evaluated in the same blocks."""
        ends = prompt_blocks(len(tokens), self._sizes)
        start = max((end for end in ends if end <= start), default=0)
        self._truncate(slot, start)
        slot.first = -1  # not a canonical state until the last block is in
        begin = 0
        for end in ends:
            if end > start:
                self._decode([(tokens[p], p, slot.seq) for p in range(begin, end)], [slot])
                slot.tokens.extend(tokens[begin:end])
            begin = end
        slot.first = len(tokens)

    def _decode(
        self,
        entries: list[tuple[int, int, int]],
        slots: list[_Slot],
        *,
        all_logits: bool = False,
        outputs: Sequence[int] = (),
    ) -> None:
        """One ``llama_decode`` of ``(token, position, sequence)`` entries; logits for every
        entry, or for the last and those at the indices ``outputs``. On failure the slots'
        cells past what they hold are dropped."""
        b = self._batch
        flag = 1 if all_logits else 0
        for i, (token, pos, seq) in enumerate(entries):
            b.token[i] = token
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seq
            b.logits[i] = flag
        for i in outputs:
            b.logits[i] = 1
        b.logits[len(entries) - 1] = 1
        b.n_tokens = len(entries)
        for slot in slots:
            slot.logits = None
        starts: dict[int, int] = {}
        for _, pos, seq in entries:
            starts.setdefault(seq, pos)
        for seq, pos in starts.items():
            # Positions from here on must be empty (an interrupted call may have left some).
            llama_cpp.llama_memory_seq_rm(self._mem, seq, pos, -1)
        rc = llama_cpp.llama_decode(self._ctx, b)
        self.decodes += 1
        for log in self._decode_logs:
            log.append(list(entries))
        if rc != 0:
            for slot in slots:
                llama_cpp.llama_memory_seq_rm(self._mem, slot.seq, len(slot.tokens), -1)
            reason = {1: "no room left in the KV cache", 2: "aborted"}.get(rc, "error")
            raise EngineError(f"llama.cpp failed to evaluate the tokens (llama_decode returned {rc}: {reason})")

    def _row(self, i: int) -> npt.NDArray[np.float32]:
        """A copy of the logits of output row ``i`` of the last decode."""
        ptr = llama_cpp.llama_get_logits_ith(self._ctx, i)
        if not ptr:
            raise EngineError("llama.cpp returned no logits")
        return np.ctypeslib.as_array(ptr, shape=(self._n_vocab,)).copy()

    def _score(self, request: RowsNeed) -> None:
        """Evaluate ``request.ids`` from position 0 with every position's logits, in chunks."""
        slot = min(self._slots, key=lambda s: s.used)
        self._tick += 1
        slot.used = self._tick
        try:
            self._truncate(slot, 0)
            ids = request.ids
            if len(ids) > self._seq_len:
                raise ContextLengthExceeded(
                    f"{len(ids)} tokens do not fit the model's context window of {self._seq_len}",
                    n_tokens=len(ids),
                    limit=self._seq_len,
                )
            for start in range(0, len(ids), self._rows_chunk):
                chunk = ids[start : start + self._rows_chunk]
                self._decode([(t, start + i, slot.seq) for i, t in enumerate(chunk)], [slot], all_logits=True)
                slot.tokens.extend(chunk)
                ptr = llama_cpp.llama_get_logits(self._ctx)
                if not ptr:
                    raise EngineError("llama.cpp returned no logits")
                request.on_rows(start, np.ctypeslib.as_array(ptr, shape=(len(chunk), self._n_vocab)))
        except NextwordError as exc:
            request.error = exc
        finally:
            # Scored in chunks with every row: not a canonical state for later requests.
            with contextlib.suppress(Exception):
                self._truncate(slot, 0)
