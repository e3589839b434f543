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

import numpy as np
from raw_context import Entry, RawContext, load_model

STEPS = 12
N_SEQ = 8


def timed(c: RawContext, entries: list[Entry]) -> float:
    """Seconds one decode of ``entries`` took."""
    start = time.perf_counter()
    c.decode(entries)
    return time.perf_counter() - start


def measure(model: Any, unified: bool, length: int, threads: int) -> dict[str, Any]:
    c = RawContext(model, threads=threads, n_seq=N_SEQ, unified=unified)
    rng = np.random.default_rng(length)
    contexts = [[int(t) for t in rng.integers(10, c.n_vocab - 10, size=length + 7 * s)] for s in range(N_SEQ)]
    nexts = [[int(t) for t in rng.integers(10, c.n_vocab - 10, size=STEPS)] for _ in range(N_SEQ)]
    try:
        c.clear()
        for s in range(N_SEQ):
            c.prompt(s, contexts[s])
        together, eight = [], []
        for k in range(STEPS):
            eight.append(timed(c, [(nexts[s][k], len(contexts[s]) + k, s, True) for s in range(N_SEQ)]))
            together.append([c.row(s) for s in range(N_SEQ)])
        differing, one = 0, []
        for s in range(N_SEQ):
            c.clear()
            c.prompt(s, contexts[s])
            for k in range(STEPS):
                one.append(timed(c, [(nexts[s][k], len(contexts[s]) + k, s, True)]))
                differing += not np.array_equal(c.row(0), together[k][s])
        c.clear()
        for s in range(N_SEQ):
            c.prompt(s, contexts[s])
        among = 0
        for k in range(STEPS):
            c.decode([(nexts[3][k], len(contexts[3]) + k, 3, True)])
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
    model = load_model(args.model)
    for length in args.lengths:
        for unified in (False, True):
            print(json.dumps(measure(model, unified, length, args.threads)))


if __name__ == "__main__":
    main()
