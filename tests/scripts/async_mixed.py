"""8 asyncio tasks with mixed calls on one generator, 3 rounds; every result must equal the
same call made alone. Run in a subprocess by tests/test_async_concurrency.py (so an abort in the
engine shows as a dead process, not a dead test run).

Usage: python async_mixed.py BACKEND MODEL [OPTION=VALUE ...]; prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import nextword

PROMPTS = ("I love cats because", "The weather today is", "Once upon a time", "My favourite food is")


def calls(gen: nextword.Generator) -> list[tuple[str, Any, Any]]:
    """(name, blocking call, async call) for 8 mixed requests."""
    p = PROMPTS
    return [
        ("generate", lambda: gen.generate(p[0], max_new_tokens=12), lambda: gen.agenerate(p[0], max_new_tokens=12)),
        (
            "sample",
            lambda: gen.generate(p[1], max_new_tokens=10, do_sample=True, seed=7),
            lambda: gen.agenerate(p[1], max_new_tokens=10, do_sample=True, seed=7),
        ),
        (
            "stream",
            lambda: gen.stream(p[2], max_new_tokens=12).text(),
            lambda: gen.astream(p[2], max_new_tokens=12).text(),
        ),
        ("words", lambda: gen.predict_next(p[3], 3), lambda: gen.apredict_next(p[3], 3)),
        ("tokens", lambda: gen.predict_next(p[0], 5, unit="token"), lambda: gen.apredict_next(p[0], 5, unit="token")),
        ("score", lambda: gen.score(p[1]), lambda: gen.ascore(p[1])),
        (
            "batch",
            lambda: gen.generate([p[2], p[3]], max_new_tokens=8),
            lambda: gen.agenerate([p[2], p[3]], max_new_tokens=8),
        ),
        (
            "stop",
            lambda: gen.generate(p[3], max_new_tokens=16, stop=["."]),
            lambda: gen.agenerate(p[3], max_new_tokens=16, stop=["."]),
        ),
    ]


def main() -> None:
    backend, model = sys.argv[1], sys.argv[2]
    options: dict[str, Any] = {}
    for item in sys.argv[3:]:
        key, value = item.split("=", 1)
        options[key] = int(value) if value.isdigit() else value
    gen = nextword.load(backend, model, **options)
    requests = calls(gen)
    expected = [blocking() for _, blocking, _ in requests]

    async def round_() -> list[Any]:
        return list(await asyncio.gather(*(make() for _, _, make in requests)))

    mismatches: list[str] = []
    for r in range(3):
        got = asyncio.run(round_())
        for (name, _, _), want, have in zip(requests, expected, got, strict=True):
            if want != have:
                mismatches.append(f"round {r}: {name}: {have!r} != {want!r}")
    nextword.unload()
    print(json.dumps({"rounds": 3, "tasks": len(requests), "mismatches": mismatches}))


if __name__ == "__main__":
    main()
