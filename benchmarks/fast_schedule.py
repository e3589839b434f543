"""How far the fast schedule (``batching="fast"``) is from the exact one on a GGUF file.

8 prompts are sent at once to a fast-mode generator, held back until all have arrived so that
they share one decode, and their next-token logits are compared with each prompt evaluated alone
on an exact-mode generator; then 8 greedy generations of ``--steps`` tokens run at once on the
fast generator and are compared with each run alone.

    python benchmarks/fast_schedule.py FILE.gguf [--steps 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import numpy as np

import nextword
from nextword._runtime.scheduler import run_concurrently

PROMPTS = [
    "I love cats because",
    "The weather today is",
    "Once upon a time",
    "The best way to learn is",
    "In the morning I usually",
    "My favourite book is",
    "The city was quiet when",
    "She opened the door and",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    common = {"threads": args.threads, "n_ctx": 512, "parallel": len(PROMPTS)}
    exact = nextword.load("llamacpp", str(args.file), **common)
    fast = nextword.load("llamacpp", str(args.file), batching="fast", **common)
    ids = [exact.tokenize(p) for p in PROMPTS]
    alone = [exact.next_token_logits(i) for i in ids]  # type: ignore[attr-defined]
    got: list[np.ndarray] = [np.empty(0)] * len(ids)

    def one(k: int) -> None:
        got[k] = fast.next_token_logits(ids[k])  # type: ignore[attr-defined]

    with fast.pool.decode_log() as log:  # type: ignore[attr-defined]
        threads = [threading.Thread(target=one, args=(k,)) for k in range(len(ids))]
        with fast.holding_engine():  # type: ignore[attr-defined]
            for t in threads:
                t.start()
            while fast.scheduler.queued < len(ids):  # type: ignore[attr-defined]
                time.sleep(0.01)
        for t in threads:
            t.join()
    diffs = [float(np.max(np.abs(a - b))) for a, b in zip(alone, got, strict=True)]
    n = args.steps
    greedy_alone = [exact.generate(p, max_new_tokens=n).sequences[0].token_ids for p in PROMPTS]
    greedy_fast = run_concurrently(
        [lambda p=p: fast.generate(p, max_new_tokens=n).sequences[0].token_ids for p in PROMPTS], len(PROMPTS)
    )
    report = {
        "file": args.file.name,
        "decodes_for_the_prompts": len(log),
        "tokens_in_them": [len(d) for d in log],
        "max_abs_logit_difference": max(diffs),
        "prompts_with_identical_logits": sum(d == 0 for d in diffs),
        "same_top_token": sum(int(np.argmax(a) == np.argmax(b)) for a, b in zip(alone, got, strict=True)),
        "same_greedy_ids": sum(a == b for a, b in zip(greedy_alone, greedy_fast, strict=True)),
        "prompts": len(PROMPTS),
        "steps": n,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
