"""Per-sequence KV cells against one shared (unified) KV cache: speed of a step, and exactness.

Why nextword's llamacpp sequence pool gives every sequence its own KV cells
(``kv_unified=False``). For each context length, 8 sequences of random tokens (that length plus
0, 7, ..., 49 tokens) are evaluated, then 12 steps of one token in every sequence, each step one
``llama_decode`` of all 8; the same steps are then decoded one sequence at a time with only that
sequence in the cache, and once more with all 8 sequences in the cache. Reported per layout and
length: the median ms of an 8-sequence step and of a 1-sequence step, and how many of the 96
rows of the 8-sequence steps (and of the 12 steps of sequence 3 among the others) differ in any
bit from the sequence decoded alone. llama.cpp's C API only; flash attention off.

    python benchmarks/kv_layout.py gpt2-124m.Q8_0.gguf --threads 2
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import llama_cpp
import numpy as np

STEPS = 12
N_SEQ = 8


class Context:
    """One context of 8 sequences in the given layout."""

    def __init__(self, model: Any, unified: bool, threads: int) -> None:
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model)))
        params = llama_cpp.llama_context_default_params()
        params.n_ctx, params.n_seq_max, params.kv_unified = 1024 * N_SEQ, N_SEQ, unified
        params.n_batch = params.n_ubatch = 512
        params.n_threads = params.n_threads_batch = threads
        params.flash_attn_type = 0  # off
        self.ctx = llama_cpp.llama_init_from_model(model, params)
        self.mem = llama_cpp.llama_get_memory(self.ctx)
        self.batch = llama_cpp.llama_batch_init(512, 0, 1)

    def decode(self, entries: list[tuple[int, int, int]], last_only: bool = False) -> float:
        """One decode of (token, position, sequence) entries; the seconds it took."""
        b = self.batch
        for i, (token, pos, seq) in enumerate(entries):
            b.token[i], b.pos[i], b.n_seq_id[i] = token, pos, 1
            b.seq_id[i][0], b.logits[i] = seq, not last_only or i == len(entries) - 1
        b.n_tokens = len(entries)
        start = time.perf_counter()
        if llama_cpp.llama_decode(self.ctx, b) != 0:
            raise RuntimeError("llama_decode failed")
        return time.perf_counter() - start

    def row(self, i: int) -> Any:
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.ctx, i), shape=(self.n_vocab,)).copy()

    def fill(self, seq: int, ids: list[int]) -> None:
        for start in range(0, len(ids), 512):
            chunk = ids[start : start + 512]
            self.decode([(t, start + i, seq) for i, t in enumerate(chunk)], last_only=True)

    def free(self) -> None:
        llama_cpp.llama_batch_free(self.batch)
        llama_cpp.llama_free(self.ctx)


def measure(model: Any, unified: bool, length: int, threads: int) -> dict[str, Any]:
    c = Context(model, unified, threads)
    rng = np.random.default_rng(length)
    contexts = [[int(t) for t in rng.integers(10, c.n_vocab - 10, size=length + 7 * s)] for s in range(N_SEQ)]
    nexts = [[int(t) for t in rng.integers(10, c.n_vocab - 10, size=STEPS)] for _ in range(N_SEQ)]
    try:
        llama_cpp.llama_memory_clear(c.mem, True)
        for s in range(N_SEQ):
            c.fill(s, contexts[s])
        together, eight = [], []
        for k in range(STEPS):
            eight.append(c.decode([(nexts[s][k], len(contexts[s]) + k, s) for s in range(N_SEQ)]))
            together.append([c.row(s) for s in range(N_SEQ)])
        differing, one = 0, []
        for s in range(N_SEQ):
            llama_cpp.llama_memory_clear(c.mem, True)
            c.fill(s, contexts[s])
            for k in range(STEPS):
                one.append(c.decode([(nexts[s][k], len(contexts[s]) + k, s)]))
                differing += not np.array_equal(c.row(0), together[k][s])
        llama_cpp.llama_memory_clear(c.mem, True)
        for s in range(N_SEQ):
            c.fill(s, contexts[s])
        among = 0
        for k in range(STEPS):
            c.decode([(nexts[3][k], len(contexts[3]) + k, 3)])
            among += not np.array_equal(c.row(0), together[k][3])
    finally:
        c.free()
    return {
        "layout": "unified" if unified else "per-sequence cells",
        "context": length,
        "step_of_8_ms": round(float(np.median(eight)) * 1000, 1),
        "step_of_1_ms": round(float(np.median(one)) * 1000, 1),
        "rows_differing_from_alone": f"{differing}/{N_SEQ * STEPS}",
        "seq_3_alone_among_others_differing": f"{among}/{STEPS}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a .gguf file")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lengths", type=int, nargs="*", default=[20, 200, 700])
    args = parser.parse_args()
    silence = llama_cpp.llama_log_callback(lambda *a: None)
    llama_cpp.llama_log_set(silence, None)
    llama_cpp.llama_backend_init()
    model = llama_cpp.llama_model_load_from_file(args.model.encode(), llama_cpp.llama_model_default_params())
    if not model:
        raise SystemExit(f"llama.cpp could not load {args.model}")
    for length in args.lengths:
        for unified in (False, True):
            print(json.dumps(measure(model, unified, length, args.threads)))


if __name__ == "__main__":
    main()
