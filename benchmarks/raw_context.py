"""A llama.cpp context driven through the C API alone, for the benchmarks that compare nextword
with what the engine does without it (``bench_concurrency.py``'s ideal schedule) or measure the
engine's own behaviour (``prompt_invariance.py``, ``kv_layout.py``). Not nextword code."""

from __future__ import annotations

from typing import Any

import llama_cpp
import numpy as np
import numpy.typing as npt

#: (token, position, sequence, wants logits)
Entry = tuple[int, int, int, bool]

_silence = llama_cpp.llama_log_callback(lambda *args: None)


def load_model(path: str) -> Any:
    """A llama.cpp model from a .gguf file, with llama.cpp's log silenced."""
    llama_cpp.llama_log_set(_silence, None)
    llama_cpp.llama_backend_init()
    model = llama_cpp.llama_model_load_from_file(path.encode(), llama_cpp.llama_model_default_params())
    if not model:
        raise SystemExit(f"llama.cpp could not load {path}")
    return model


class RawContext:
    """A context of ``n_seq`` sequences of ``seq_ctx`` tokens, each with its own KV cells (as
    nextword's sequence pool makes it) or, with ``unified``, one cache they share."""

    def __init__(
        self,
        model: Any,
        *,
        threads: int,
        n_seq: int = 8,
        seq_ctx: int = 1024,
        n_batch: int = 512,
        unified: bool = False,
        flash_attn: bool = False,
    ) -> None:
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model)))
        params = llama_cpp.llama_context_default_params()
        params.n_ctx, params.n_seq_max, params.kv_unified = seq_ctx * n_seq, n_seq, unified
        params.n_batch = params.n_ubatch = n_batch
        params.n_threads = params.n_threads_batch = threads
        params.flash_attn_type = 1 if flash_attn else 0  # enabled / disabled
        self.ctx = llama_cpp.llama_init_from_model(model, params)
        if not self.ctx:
            raise SystemExit("llama.cpp could not make the context")
        self.mem = llama_cpp.llama_get_memory(self.ctx)
        self.n_batch = n_batch
        self.batch = llama_cpp.llama_batch_init(n_batch, 0, 1)

    def decode(self, entries: list[Entry]) -> None:
        """One ``llama_decode`` of the entries."""
        b = self.batch
        for i, (token, pos, seq, logits) in enumerate(entries):
            b.token[i], b.pos[i], b.n_seq_id[i] = token, pos, 1
            b.seq_id[i][0], b.logits[i] = seq, logits
        b.n_tokens = len(entries)
        if llama_cpp.llama_decode(self.ctx, b) != 0:
            raise RuntimeError("llama_decode failed")

    def prompt(self, seq: int, ids: list[int]) -> None:
        """Evaluate ``ids`` from position 0 in sequence ``seq``, in decodes of at most n_batch
        tokens; the logits after the last token are row -1."""
        for start in range(0, len(ids), self.n_batch):
            chunk = ids[start : start + self.n_batch]
            self.decode([(t, start + i, seq, i == len(chunk) - 1) for i, t in enumerate(chunk)])

    def row(self, i: int) -> npt.NDArray[np.float32]:
        """A copy of the logits of batch entry ``i`` of the last decode (-1: the last)."""
        ptr = llama_cpp.llama_get_logits_ith(self.ctx, i)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()

    def clear(self) -> None:
        llama_cpp.llama_memory_clear(self.mem, True)

    def free(self) -> None:
        llama_cpp.llama_batch_free(self.batch)
        llama_cpp.llama_free(self.ctx)
