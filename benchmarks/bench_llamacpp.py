"""Raw llama-cpp-python vs nextword's llamacpp backend.

GPT-2 124M shape (random weights: speed does not depend on weight values), converted by
nextword's converter to each GGUF type asked for; batch 1, greedy, a fixed number of new tokens,
the same thread count for both. Runs alternate over several rounds and medians are compared.
Each result is also shown as a fraction of the memory-bandwidth limit: a decode step reads every
weight matrix once, so tokens/s cannot pass (measured bandwidth) / (bytes of weights per token).

    python benchmarks/bench_llamacpp.py --types q8_0 q4_k_m --threads 2
    python benchmarks/bench_llamacpp.py --types q8_0 --threads 2 --alone 10

By default both engines run in this process. With ``--alone ROUNDS`` each engine runs alone in a
process of its own (two llama.cpp engines in one process measure something else: see
docs/concurrency.md), the two processes alternating ROUNDS times; the ratio is taken pair by pair
and its median reported, with the spread.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import llama_cpp
import numpy as np
from nextword_llamacpp.convert import convert, verify

import nextword
from nextword.testing.models import build_gpt2_124m

PROMPT = "I love cats because"


def measure_bandwidth(size_mb: int = 512, repeats: int = 5) -> float:
    """Memory bandwidth in bytes/s: the best of several large copies, counting bytes read and written."""
    src = np.ones(size_mb * 1024 * 1024 // 8, dtype=np.float64)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - start)
    return 2 * src.nbytes / best


def bytes_per_token(path: Path) -> int:
    """Bytes of tensor data a decode step reads: every tensor except the embedding tables, of
    which only one row is looked up."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    return sum(int(t.n_bytes) for t in reader.tensors if t.name not in ("token_embd.weight", "position_embd.weight"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--types", nargs="+", default=["q8_0", "q4_k_m"])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--work-dir", type=Path, default=None, help="reuse built models from this folder")
    parser.add_argument(
        "--fidelity", action="store_true", help="also compare each file with transformers (convert.verify)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also append the numbers here (JSON lines)")
    parser.add_argument("--alone", type=int, default=0, metavar="ROUNDS", help="each engine in its own process")
    parser.add_argument("--engine", choices=["raw", "nextword"], help=argparse.SUPPRESS)  # one --alone process
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine:
        print(json.dumps(run_alone(args.engine, args.file, args.threads, args.new_tokens, args.rounds)))
        return

    work = args.work_dir or Path(tempfile.mkdtemp())
    model_dir = work / "gpt2-124m"
    if not (model_dir / "config.json").exists():
        build_gpt2_124m(model_dir)
    bandwidth = measure_bandwidth()
    n = args.new_tokens
    print(f"threads: {args.threads}  new tokens: {n}  rounds: {args.rounds}  bandwidth: {bandwidth / 1e9:.1f} GB/s")
    header = f"{'type':<8}{'MB/token':>10}{'raw tok/s':>11}{'nextword':>10}{'ratio':>8}"
    print(header + f"{'raw/limit':>11}{'nw/limit':>10}  same")
    for kind in args.types:
        if args.alone:
            alone = bench_alone(kind, work, model_dir, args.threads, n, args.alone)
            print(json.dumps(alone))
            if args.json:
                with args.json.open("a") as fh:
                    fh.write(json.dumps(alone) + "\n")
            continue
        row = bench_type(kind, work, model_dir, bandwidth, args.threads, n, args.rounds)
        if args.fidelity:
            report = verify(model_dir, work / f"gpt2-124m.{kind}.gguf")
            row.update(top1_agreement=round(report.top1_agreement, 4), mean_kl=float(f"{report.mean_kl:.3g}"))
        print(
            f"{kind:<8}{row['mb_per_token']:>10.1f}{row['raw_tok_s']:>11.1f}{row['nextword_tok_s']:>10.1f}"
            f"{row['ratio']:>8.3f}{row['raw_fraction_of_limit']:>11.2f}{row['nextword_fraction_of_limit']:>10.2f}"
            f"  {row['identical_tokens']}"
            + (f"  top-1 {row['top1_agreement']:.1%}  KL {row['mean_kl']:.2g}" if args.fidelity else "")
        )
        if args.json:
            with args.json.open("a") as fh:
                fh.write(json.dumps(row) + "\n")


def bench_type(kind: str, work: Path, model_dir: Path, bandwidth: float, threads: int, n: int, rounds: int) -> dict:
    """Convert (once) to ``kind`` and time raw llama-cpp-python against nextword on that file."""
    path = work / f"gpt2-124m.{kind}.gguf"
    if not path.exists():
        convert(model_dir, path, type=kind)
    per_token = bytes_per_token(path)
    limit = bandwidth / per_token
    raw = llama_cpp.Llama(model_path=str(path), n_ctx=512, n_threads=threads, n_threads_batch=threads, verbose=False)
    gen = nextword.load("llamacpp", str(path), threads=threads, n_ctx=512)
    prompt_ids = raw.tokenize(PROMPT.encode(), add_bos=False)

    def run_raw() -> list[int]:
        out: list[int] = []
        for token in raw.generate(prompt_ids, top_k=1, temp=0.0, reset=True):
            out.append(token)
            if len(out) == n:
                break
        return out

    def run_nextword() -> list[int]:
        return list(gen.generate(PROMPT, max_new_tokens=n, min_new_tokens=n).token_ids)

    same = run_raw() == run_nextword()
    times: dict[str, list[float]] = {"raw": [], "nextword": []}
    for _ in range(rounds):
        for name, fn in (("raw", run_raw), ("nextword", run_nextword)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    raw_tps = n / statistics.median(times["raw"])
    nw_tps = n / statistics.median(times["nextword"])
    gen.close()
    raw.close()
    return {
        "type": kind,
        "threads": threads,
        "new_tokens": n,
        "rounds": rounds,
        "bandwidth_gb_s": round(bandwidth / 1e9, 2),
        "mb_per_token": round(per_token / 1e6, 1),
        "raw_tok_s": round(raw_tps, 1),
        "nextword_tok_s": round(nw_tps, 1),
        "ratio": round(nw_tps / raw_tps, 3),
        "raw_fraction_of_limit": round(raw_tps / limit, 3),
        "nextword_fraction_of_limit": round(nw_tps / limit, 3),
        "identical_tokens": same,
    }


def run_alone(engine: str, path: Path, threads: int, n: int, runs: int) -> dict:
    """One engine alone in this process: a warm-up, then the median tokens/s of ``runs`` runs."""
    if engine == "raw":
        raw = llama_cpp.Llama(
            model_path=str(path), n_ctx=512, n_threads=threads, n_threads_batch=threads, verbose=False
        )
        prompt_ids = raw.tokenize(PROMPT.encode(), add_bos=False)

        def run() -> list[int]:
            out: list[int] = []
            for token in raw.generate(prompt_ids, top_k=1, temp=0.0, reset=True):
                out.append(token)
                if len(out) == n:
                    break
            return out
    else:
        gen = nextword.load("llamacpp", str(path), threads=threads, n_ctx=512)

        def run() -> list[int]:
            return list(gen.generate(PROMPT, max_new_tokens=n, min_new_tokens=n).token_ids)

    ids = run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return {"tok_s": n / statistics.median(times), "ids": ids}


def bench_alone(kind: str, work: Path, model_dir: Path, threads: int, n: int, rounds: int) -> dict:
    """Each engine in a process of its own, alternating ``rounds`` times (raw first, then
    nextword): the median of the pairwise ratios nextword / raw, and its spread."""
    import subprocess
    import sys

    path = work / f"gpt2-124m.{kind}.gguf"
    if not path.exists():
        convert(model_dir, path, type=kind)
    tps: dict[str, list[float]] = {"raw": [], "nextword": []}
    ids: dict[str, list[int]] = {}
    for _ in range(rounds):
        for engine in ("raw", "nextword"):
            argv = [sys.executable, __file__, "--engine", engine, "--file", str(path), "--threads", str(threads)]
            argv += ["--new-tokens", str(n), "--rounds", "3"]
            out = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
            tps[engine].append(out["tok_s"])
            ids[engine] = out["ids"]
    ratios = sorted(b / a for a, b in zip(tps["raw"], tps["nextword"], strict=True))
    return {
        "type": kind,
        "threads": threads,
        "new_tokens": n,
        "rounds": rounds,
        "raw_tok_s_median": round(statistics.median(tps["raw"]), 1),
        "nextword_tok_s_median": round(statistics.median(tps["nextword"]), 1),
        "ratio_median": round(statistics.median(ratios), 3),
        "ratio_min": round(ratios[0], 3),
        "ratio_max": round(ratios[-1], 3),
        "identical_tokens": ids["raw"] == ids["nextword"],
    }


if __name__ == "__main__":
    main()
