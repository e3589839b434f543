"""Where the time of 8 concurrent generations goes on the llamacpp backend: a diagnostic.

Runs the 8 greedy generations of ``bench_concurrency.py`` (32 tokens each) in one of two ways,
in this process, and prints one JSON line: total tokens/s, the scheduler's groups (groups
executed, requests executed) and, per number of sequences in one ``llama_decode``, how many
decodes there were and their median milliseconds.

- ``callers``: 8 threads call ``generate`` on one generator (the real path: scheduler, engine
  thread, sequence pool);
- ``pool``: no caller threads; the same steps are handed to the generator's sequence pool
  directly on its engine thread, 8 sequences a step, greedy on the returned logits.

Comparing the 8-sequence decode times of the two shows what the run around a decode costs
the decode itself; ``caller_cpu_s`` is the CPU time the caller threads used in all (their own
decoding loops).

- ``order``: one decode of one token per sequence, with the sequence ids in the batch in
  increasing order, shuffled or reversed (8 sequences), and 4 neighbouring ids against 4 with
  gaps (median ms of 12). llama.cpp evaluates a batch as one micro-batch per run of
  consecutive, increasing ids; this shows what a batch in another order costs.

It reads private attributes of the generator: a diagnostic, not an API.

    python benchmarks/decode_groups.py gpt2-124m.Q8_0.gguf callers --threads 2
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from typing import Any

import numpy as np
from bench_concurrency import PROMPTS
from nextword_llamacpp.multiseq import Need, Needs

import nextword


def median_step_ms(pool: Any, contexts: list[list[int]], seqs: list[int], reps: int = 12) -> float:
    """Median ms of one ``llama_decode`` of one token for each of ``seqs`` (in that order), after
    the pool's first slots were filled with ``contexts`` (one token list per slot). Runs on the
    engine thread (call it through ``gen._engine.call``)."""
    pool.clear()
    for slot, ids in zip(pool._slots, contexts, strict=False):
        pool._decode_first(slot, ids)
    took = []
    for r in range(reps):
        entries = [(100 + r + k, len(contexts[seq]) + r, seq) for k, seq in enumerate(seqs)]
        start = time.perf_counter()
        pool._decode(entries, [], all_logits=True)
        took.append(time.perf_counter() - start)
    return round(float(np.median(took)) * 1000, 1)


def decode_order(pool: Any) -> dict[str, float]:
    """Median ms of a one-token decode of the sequences in each order (run on the engine thread)."""
    orders = {
        "8 in order": list(range(8)),
        "8 shuffled": [3, 0, 7, 1, 5, 2, 6, 4],
        "8 reversed": list(range(7, -1, -1)),
        "4 neighbours": [0, 1, 2, 3],
        "4 with gaps": [0, 2, 4, 6],
        "1": [0],
    }
    contexts = [[11, 22, 33, 44, 55, 66, 77, 88]] * 8
    return {name: median_step_ms(pool, contexts, seqs) for name, seqs in orders.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a GGUF file")
    parser.add_argument("way", choices=["callers", "pool", "order"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--flash-attn", choices=["on", "off"], default="off", help="flash attention (default off)")
    args = parser.parse_args()
    n_new = args.new_tokens
    options = {"n_ctx": 512, "parallel": 8, "threads": args.threads, "flash_attn": args.flash_attn == "on"}
    gen: Any = nextword.load("llamacpp", args.model, **options)
    gen.generate(PROMPTS[0], max_new_tokens=4)  # warm-up
    pool = gen.pool
    if args.way == "order":
        print(json.dumps({"way": "order", **gen._engine.call(lambda: decode_order(pool))}))
        gen.close()
        return
    decodes: list[tuple[int, float, float]] = []
    decode = pool._decode

    def timed_decode(entries: list[tuple[int, int, int]], slots: list[Any], **kw: Any) -> None:
        start = time.perf_counter()
        decode(entries, slots, **kw)
        decodes.append((len(entries), time.perf_counter() - start, start))

    pool._decode = timed_decode
    out: dict[str, Any] = {"way": args.way}
    start = time.perf_counter()
    if args.way == "pool":
        ids = [gen.tokenize(p) for p in PROMPTS]
        firsts = [len(x) for x in ids]
        for _ in range(n_new):
            needs = [Need(list(x), first) for x, first in zip(ids, firsts, strict=True)]
            gen._engine.call(lambda needs=needs: pool.execute([Needs(needs)]))
            for need, x in zip(needs, ids, strict=True):
                x.append(int(np.argmax(need.result)))
    else:
        cpu = [0.0] * len(PROMPTS)

        def work(i: int) -> None:
            began = time.thread_time()
            gen.generate(PROMPTS[i], max_new_tokens=n_new)
            cpu[i] = time.thread_time() - began

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(PROMPTS))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out["groups_and_requests"] = gen.scheduler.stats
        out["caller_cpu_s"] = round(sum(cpu), 3)
    seconds = time.perf_counter() - start
    by_size: dict[int, list[float]] = {}
    for size, took, began in decodes:
        if began >= start:
            by_size.setdefault(size, []).append(took * 1000)
    out["tok_s"] = round(len(PROMPTS) * n_new / seconds, 1)
    out["seconds"] = round(seconds, 3)
    out["decode_s"] = round(sum(t for v in by_size.values() for t in v) / 1000, 3)
    out["decodes_by_size"] = {n: [len(v), round(float(np.median(v)), 1)] for n, v in sorted(by_size.items())}
    print(json.dumps(out))
    gen.close()


if __name__ == "__main__":
    main()
