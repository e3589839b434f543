"""Flash attention on or off in llama.cpp, on this machine: the speed side of the choice.

For each setting, in one process per setting and alternating over rounds, on one model:

- ``step``: one ``llama_decode`` of a single token after ``context`` tokens, for 1 sequence and
  for 8 sequences at once (each with its own cells, in order: one micro-batch), median ms;
- ``prompt``: evaluating a prompt of n tokens from position 0 (one batch), median ms.

It drives the generator's sequence pool directly (private attributes: a diagnostic, not an API).
Prints one JSON line per setting and round, then the medians side by side.

    python benchmarks/bench_attention.py gpt2-124m.Q8_0.gguf --contexts 40 100 250 400 600 900
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Any

from decode_groups import median_step_ms

import nextword


def measure(model: str, flash_attn: bool, contexts: list[int], prompts: list[int], threads: int) -> dict[str, Any]:
    """The timings of one setting, in this process."""
    n_ctx = max(contexts + prompts) + 32
    gen: Any = nextword.load("llamacpp", model, n_ctx=n_ctx, parallel=8, threads=threads, flash_attn=flash_attn)
    pool = gen.pool
    n_vocab = gen.vocab_size

    def tokens(n: int, shift: int) -> list[int]:
        return [(17 * i + 101 * shift) % (n_vocab - 10) + 5 for i in range(n)]

    def steps(context: int, n_seqs: int) -> float:
        return median_step_ms(pool, [tokens(context, k) for k in range(n_seqs)], list(range(n_seqs)))

    def prompt(n: int, reps: int = 3) -> float:
        took = []
        for r in range(reps):
            pool.clear()
            start = time.perf_counter()
            pool._decode_first(pool._slots[0], tokens(n, r))
            took.append(time.perf_counter() - start)
        return round(statistics.median(took) * 1000, 1)

    def run() -> dict[str, Any]:
        return {
            "step_1_seq_ms": {c: steps(c, 1) for c in contexts},
            "step_8_seqs_ms": {c: steps(c, 8) for c in contexts},
            "prompt_ms": {n: prompt(n) for n in prompts},
        }

    try:
        return {"flash_attn": flash_attn, **gen._engine.call(run)}
    finally:
        gen.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a GGUF file")
    parser.add_argument("--contexts", type=int, nargs="+", default=[40, 100, 250, 400, 600, 900])
    parser.add_argument("--prompts", type=int, nargs="+", default=[32, 256, 900])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--one", choices=["on", "off"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.model, args.one == "on", args.contexts, args.prompts, args.threads)))
        return
    runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    for _ in range(args.rounds):
        for setting in runs:
            argv = [sys.executable, __file__, args.model, "--one", setting, "--threads", str(args.threads)]
            argv += ["--contexts", *map(str, args.contexts), "--prompts", *map(str, args.prompts)]
            out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
            runs[setting].append(json.loads(out.strip().splitlines()[-1]))
            print(json.dumps(runs[setting][-1]))
    for key in ("step_1_seq_ms", "step_8_seqs_ms", "prompt_ms"):
        for n in runs["off"][0][key]:
            off, on = (statistics.median(r[key][n] for r in runs[s]) for s in ("off", "on"))
            row = {"what": key, "tokens": int(n), "off": round(off, 1), "on": round(on, 1)}
            print(json.dumps({**row, "on_vs_off": round(on / off, 2)}))


if __name__ == "__main__":
    main()
