"""Does a sequence's result depend on what else is decoded with it? Measured per GGUF file.

For each file and each batching mode, 8 prompts are generated greedily by 8 threads at once on
one nextword generator (their steps share decodes), with the logits of every step kept; the
same prompts are then run one at a time. Reported per mode: the largest absolute logit
difference, the mean KL divergence (alone || concurrent) over all steps, and how many prompts
gave the same greedy token ids. Also the exact group size the pool measured for the file.

    python benchmarks/batch_invariance.py FILE.gguf [FILE.gguf ...] --steps 24
"""

from __future__ import annotations

import argparse
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
from bench_concurrency import PROMPTS  # the throughput benchmark's prompts (a sibling script)

import nextword
from nextword.decoding.processors import log_softmax


def greedy_with_logits(gen: Any, prompt: str, steps: int) -> tuple[list[int], list[np.ndarray]]:
    session = gen.open_session(gen.tokenize(prompt))
    ids: list[int] = []
    rows: list[np.ndarray] = []
    for _ in range(steps):
        logits = session.logits()
        rows.append(logits.astype(np.float64))
        token = int(np.argmax(logits))
        ids.append(token)
        session.feed(token)
    return ids, rows


def measure(path: Path, mode: str, steps: int, n_ctx: int) -> dict[str, Any]:
    gen = nextword.load("llamacpp", str(path), batching=mode, parallel=len(PROMPTS), n_ctx=n_ctx)
    alone = [greedy_with_logits(gen, p, steps) for p in PROMPTS]
    together: list[Any] = [None] * len(PROMPTS)

    def run(i: int) -> None:
        together[i] = greedy_with_logits(gen, PROMPTS[i], steps)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(PROMPTS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    max_diff = 0.0
    kls: list[float] = []
    same = 0
    for (ids_a, rows_a), (ids_b, rows_b) in zip(alone, together, strict=True):
        same += ids_a == ids_b
        for j, (a, b) in enumerate(zip(rows_a, rows_b, strict=True)):
            if ids_a[:j] != ids_b[:j]:  # past a divergence the contexts differ: stop comparing
                break
            max_diff = max(max_diff, float(np.abs(a - b).max()))
            pa, lb = log_softmax(a), log_softmax(b)
            kls.append(float(np.sum(np.exp(pa) * (pa - lb))))
    result = {
        "file": path.name,
        "batching": mode,
        "exact_group": gen.batch_group_size,
        "steps": steps,
        "max_abs_logit_diff": float(f"{max_diff:.3g}"),
        "mean_kl": float(f"{np.mean(kls):.3g}") if kls else 0.0,
        "same_greedy_ids": f"{same}/{len(PROMPTS)}",
        "mean_requests_per_group": round(gen._scheduler.stats[1] / max(1, gen._scheduler.stats[0]), 2),
    }
    gen.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--n-ctx", type=int, default=512)
    parser.add_argument("--json", type=Path, default=None, help="also append the rows here (JSON lines)")
    args = parser.parse_args()
    for path in args.files:
        for mode in ("exact", "fast"):
            row = measure(path, mode, args.steps, args.n_ctx)
            print(json.dumps(row))
            if args.json:
                with args.json.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
