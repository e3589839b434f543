"""Two llama.cpp models in one process, used in turn, against one model alone in its process.

GPT-2 124M shape (random weights), Q8_0, greedy, batch 1. ``alone``: one nextword llamacpp
generator in a process; ``two``: two generators of the same file in one process (each its own
llama.cpp context), whole generations taking turns A, B, A, B. Each mode runs in a process of its
own, the two processes alternating ROUNDS times; the ratio (each of the two models' tokens/s
against the model alone) is taken pair by pair and its median reported, with the spread.
``--raw-beside`` adds a raw llama-cpp-python context to the ``two`` process, decoding on the main
thread before the measured runs (a second OpenMP team that nextword cannot share).

    python benchmarks/bench_coresident.py --threads 2 --rounds 8 --new-tokens 64
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT = "I love cats because"


def run_mode(mode: str, path: Path, threads: int, n: int, runs: int, raw_beside: bool) -> dict[str, float]:
    """Median tokens/s of each model of ``mode`` over ``runs`` turns (after a warm-up)."""
    from nextword_llamacpp.plugin import SPEC

    names = ["a"] if mode == "alone" else ["a", "b"]
    gens = {name: SPEC.load(str(path), threads=threads, n_ctx=512) for name in names}
    if raw_beside:
        import llama_cpp

        raw = llama_cpp.Llama(model_path=str(path), n_ctx=256, n_threads=threads, verbose=False)
        raw.eval(raw.tokenize(PROMPT.encode(), add_bos=False))
    times: dict[str, list[float]] = {name: [] for name in names}
    for turn in range(runs + 1):
        for name, gen in gens.items():
            start = time.perf_counter()
            gen.generate(PROMPT, max_new_tokens=n, min_new_tokens=n)
            if turn:  # the first turn is a warm-up
                times[name].append(time.perf_counter() - start)
    return {name: n / statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3, help="measured turns per process")
    parser.add_argument("--raw-beside", action="store_true")
    parser.add_argument("--work-dir", type=Path, default=None, help="reuse the built model from this folder")
    parser.add_argument("--mode", choices=["alone", "two"], help=argparse.SUPPRESS)  # one process
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(run_mode(args.mode, args.file, args.threads, args.new_tokens, args.runs, args.raw_beside)))
        return

    from nextword_llamacpp.convert import convert

    from nextword.testing.models import build_gpt2_124m

    work = args.work_dir or Path(tempfile.mkdtemp())
    model_dir = work / "gpt2-124m"
    if not (model_dir / "config.json").exists():
        build_gpt2_124m(model_dir)
    path = work / "gpt2-124m.q8_0.gguf"
    if not path.exists():
        convert(model_dir, path, type="q8_0")
    ratios: list[float] = []
    alone_tps: list[float] = []
    two_tps: list[float] = []
    for _ in range(args.rounds):
        got = {}
        for mode in ("alone", "two"):
            argv = [sys.executable, __file__, "--mode", mode, "--file", str(path), "--threads", str(args.threads)]
            argv += ["--new-tokens", str(args.new_tokens), "--runs", str(args.runs)]
            argv += ["--raw-beside"] if args.raw_beside and mode == "two" else []
            out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines()[-1]
            got[mode] = json.loads(out)
        alone_tps.append(got["alone"]["a"])
        two_tps.extend([got["two"]["a"], got["two"]["b"]])
        ratios.extend([got["two"]["a"] / got["alone"]["a"], got["two"]["b"] / got["alone"]["a"]])
    ratios.sort()
    print(
        json.dumps(
            {
                "threads": args.threads,
                "new_tokens": args.new_tokens,
                "rounds": args.rounds,
                "raw_beside": args.raw_beside,
                "alone_tok_s_median": round(statistics.median(alone_tps), 1),
                "two_each_tok_s_median": round(statistics.median(two_tps), 1),
                "ratio_median": round(statistics.median(ratios), 3),
                "ratio_min": round(ratios[0], 3),
                "ratio_max": round(ratios[-1], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
