"""Real Ctrl-C: SIGINT sent to this process at random moments during generate, stream,
predict_next and a load; after each interrupt the generator must give the same results as a
fresh one. Run in a subprocess by tests/test_interrupts.py.

After each trial the interrupted operation and a greedy generation are checked.

Usage: python sigint.py BACKEND MODEL N_TRIALS; prints one JSON line.
"""

from __future__ import annotations

import faulthandler
import json
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import nextword
from nextword._words.search import clear_cache

PROMPT = "I love cats because"


def operations(gen: nextword.Generator) -> dict[str, Callable[[], Any]]:
    return {
        "generate": lambda: gen.generate(PROMPT, max_new_tokens=24).sequences,
        "sample": lambda: gen.generate(PROMPT, max_new_tokens=12, do_sample=True, seed=3).sequences,
        "stream": lambda: gen.stream(PROMPT, max_new_tokens=24).text(),
        "words": lambda: gen.predict_next(PROMPT, 3).candidates,
        "tokens": lambda: gen.predict_next(PROMPT, 5, unit="token").candidates,
    }


def interrupter(delay: float) -> threading.Timer:
    """A timer (not started) that sends this process SIGINT ``delay`` seconds after its start."""
    return threading.Timer(delay, lambda: os.kill(os.getpid(), signal.SIGINT))


def main() -> None:
    backend, model, trials = sys.argv[1], sys.argv[2], int(sys.argv[3])
    faulthandler.dump_traceback_later(240, exit=True)  # a hang shows where it waits
    rng = random.Random(0)
    fresh = nextword.load(backend, model)
    expected = {name: op() for name, op in operations(fresh).items()}
    # time one full run of each operation, so the interrupts land inside them
    durations: dict[str, float] = {}
    for name, op in operations(fresh).items():
        clear_cache()
        start = time.perf_counter()
        op()
        durations[name] = time.perf_counter() - start
    gen = fresh
    interrupted = 0
    mismatches: list[str] = []
    for trial in range(trials):
        clear_cache()  # so predict_next really runs the search
        name = rng.choice([*operations(gen), "load"])
        delay = rng.uniform(0.0, durations.get(name, 0.3))
        print(f"trial {trial}: {name} after {delay:.3f} s", file=sys.stderr, flush=True)
        timer = interrupter(delay)
        try:
            # Started inside the try: with a delay of a few ms the signal can arrive before
            # start() returns (it waits for the timer thread to run).
            timer.start()
            if name == "load":
                nextword.unload()
                gen = nextword.load(backend, model)
            else:
                operations(gen)[name]()
            timer.join()
            time.sleep(0.05)  # a signal that arrives just after the call is caught below
        except KeyboardInterrupt:
            interrupted += 1
        finally:
            timer.cancel()
        try:
            gen = nextword.load(backend, model)  # after an interrupted load, the next load works
            clear_cache()
            ops = operations(gen)
            for other in {name if name != "load" else "tokens", "generate"}:
                if ops[other]() != expected[other]:
                    mismatches.append(f"trial {trial} ({name} interrupted after {delay:.3f} s): {other} differs")
        except KeyboardInterrupt:
            mismatches.append(f"trial {trial}: a late interrupt hit the check")
    nextword.unload()
    print(json.dumps({"trials": trials, "interrupted": interrupted, "mismatches": mismatches}))


if __name__ == "__main__":
    main()
