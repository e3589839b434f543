"""Run mixed calls from many threads on one generator and compare each with its sequential result.

Run as a script (``python tests/concurrency_worker.py BACKEND MODEL [--tokens=N] [--prompts=N]
[OPTION=VALUE ...]``; ``--tokens`` scales the generations' lengths, ``--prompts`` takes the first
N prompts; the options are load options) so that
a crash of the engine shows as the process dying, not as a test that hangs or takes pytest with
it. Prints one JSON line: the number of calls checked, the mismatches (empty when every
concurrent result equals its sequential one) and the exceptions raised.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

import nextword

PROMPTS = ["I love cats because", "Once upon a time", "The weather today is", "My favourite food"]


def calls(tokens: int = 12, n_prompts: int = len(PROMPTS)) -> list[tuple[str, str, dict[str, Any]]]:
    """(kind, prompt, options): 6 calls per prompt (24 for all): generate (up to ``tokens``),
    sampled generate, stream, predict_next by token and by word, score."""
    out: list[tuple[str, str, dict[str, Any]]] = []
    for i, prompt in enumerate(PROMPTS[:n_prompts]):
        out.append(("generate", prompt, {"max_new_tokens": tokens}))
        out.append(
            ("generate", prompt, {"max_new_tokens": max(2, tokens * 2 // 3), "do_sample": True, "top_k": 20, "seed": i})
        )
        out.append(("stream", prompt, {"max_new_tokens": max(2, tokens * 5 // 6)}))
        out.append(("predict_next", prompt, {"k": 3, "unit": "token"}))
        out.append(("predict_next", prompt, {"k": 3}))
        out.append(("score", prompt + " they are here", {}))
    return out


def run(gen: nextword.Generator, kind: str, prompt: str, options: dict[str, Any]) -> Any:
    """A plain, comparable value for one call."""
    if kind == "generate":
        result = gen.generate(prompt, **options)
        return [result.text, list(result.sequences[0].token_ids), result.sequences[0].finish_reason]
    if kind == "stream":
        return list(gen.stream(prompt, **options))
    if kind == "predict_next":
        return [(c.text, c.token_ids, c.logprob) for c in gen.predict_next(prompt, **options).candidates]
    return [t.logprob for t in gen.score(prompt).tokens]


def main(argv: list[str]) -> int:
    backend, model, *rest = argv
    options: dict[str, Any] = {}
    shape = {"--tokens": 12, "--prompts": len(PROMPTS)}
    for item in rest:
        name, _, value = item.partition("=")
        if name in shape:
            shape[name] = int(value)
            continue
        options[name] = int(value) if value.isdigit() else value
    gen = nextword.load(backend, model, **options)
    work = calls(shape["--tokens"], shape["--prompts"])
    expected = [run(gen, *call) for call in work]
    mismatches: list[str] = []
    errors: list[str] = []
    n_threads, rounds = 8, 3
    for round_ in range(rounds):
        results: dict[int, Any] = {}

        def worker(t: int, round_: int = round_, results: dict[int, Any] = results) -> None:
            # Each thread takes every 8th call, starting at a different place each round.
            for i in range((t + round_) % n_threads, len(work), n_threads):
                try:
                    results[i] = run(gen, *work[i])
                except Exception as exc:  # reported, not hidden
                    errors.append(f"round {round_} call {i} {work[i][0]}: {type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=600)
        mismatches += [
            f"round {round_} call {i} {work[i][0]} {work[i][1]!r}: {results.get(i)!r} != {expected[i]!r}"
            for i in range(len(work))
            if results.get(i) != expected[i]
        ]
    print(json.dumps({"checked": len(work) * rounds, "mismatches": mismatches, "errors": errors}))
    gen.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
