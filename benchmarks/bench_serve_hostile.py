"""``nextword serve`` under hostile and greedy clients: memory over a repeated battery, and how
long short requests wait behind a long one.

1. **Memory.** One server (``--metrics``) gets the test suite's battery of malformed and
   over-limit requests (``tests/test_serve_hostile.py``), plus in each round a few well-formed
   completions, a stream, a stream dropped after its first event and a non-streamed request
   dropped while it runs, ``--rounds`` times. The server's resident memory (``VmRSS``) is read
   after every round; what matters is the growth after the first rounds (warm-up: caches,
   allocator arenas).
2. **Fairness.** A long greedy stream (``--long`` tokens) runs; once its first event arrived, 8
   clients each send a 4-token request at once. Measured: each short request's latency, and
   whether it was answered before the long stream ended, with the default ``--parallel``
   (the llamacpp backend's sequence slots) and with ``--parallel 1`` (the old default).

    python benchmarks/bench_serve_hostile.py --rounds 20                # tiny model, 2048 context
    python benchmarks/bench_serve_hostile.py --gguf gpt2.Q8_0.gguf --long 900

Timings depend on the machine's load; the memory figures and the ordering do not.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.serve_process import ServeProcess, serve_process  # noqa: E402

PROMPT = "I love cats because"


def rss_mb(pid: int) -> float:
    """The process' resident memory in MB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def battery() -> list[tuple[str, Any, int]]:
    """(path, JSON body or raw bytes, expected status) of the test suite's battery."""
    from tests.test_serve_hostile import BATTERY

    return [(p.values[0], p.values[1], p.values[2]) for p in BATTERY]


def _post(srv: ServeProcess, path: str, body: Any, http: httpx.Client) -> httpx.Response:
    if isinstance(body, bytes):
        return http.post(srv.base + path, content=body, headers=srv.headers)
    return http.post(srv.base + path, json=body, headers=srv.headers)


def _drop(srv: ServeProcess, body: dict[str, Any], wait_s: float) -> None:
    """Send a completion on a raw socket and close it after ``wait_s`` seconds, unread."""
    data = json.dumps(body).encode()
    host, port = srv.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        head = (
            f"POST /v1/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nAuthorization: {srv.headers['Authorization']}\r\n\r\n"
        )
        sock.sendall(head.encode() + data)
        time.sleep(wait_s)


def one_round(srv: ServeProcess, cases: list[tuple[str, Any, int]], long: int) -> int:
    """The battery and the well-formed requests once; returns how many answers were not the
    expected status."""
    wrong = 0
    with httpx.Client(timeout=300) as http:
        for path, body, status in cases:
            wrong += _post(srv, path, body, http).status_code != status
        for i in range(4):
            ok = _post(srv, "/v1/completions", {"prompt": f"{PROMPT} {i}", "max_tokens": 8, "temperature": 0}, http)
            wrong += ok.status_code != 200
        body = {"prompt": PROMPT, "max_tokens": 16, "temperature": 0.8, "seed": 1, "stream": True}
        with http.stream("POST", srv.base + "/v1/completions", json=body, headers=srv.headers) as r:
            wrong += not any("[DONE]" in line for line in r.iter_lines())
    _drop(srv, {"prompt": PROMPT, "max_tokens": long, "temperature": 0, "stream": True}, 0.3)
    _drop(srv, {"prompt": [PROMPT] * 4, "max_tokens": long, "temperature": 0}, 0.3)
    end = time.monotonic() + 60
    while srv.metric("nextword_requests_running") and time.monotonic() < end:
        time.sleep(0.05)
    return wrong


def memory(gguf: Path, rounds: int, long: int, work: Path) -> dict[str, Any]:
    cases = battery()
    with serve_process(gguf, work / "memory") as srv:
        pid = srv.proc.pid
        start = rss_mb(pid)
        samples = []
        wrong = 0
        for r in range(rounds):
            wrong += one_round(srv, cases, long)
            samples.append(rss_mb(pid))
            print(f"  round {r + 1:3d}: RSS {samples[-1]:7.1f} MB", flush=True)
        requests = sum(v for (name, _), v in srv.metrics().items() if name == "nextword_requests_total")
    warm = min(4, rounds - 1)  # after 5 rounds
    return {
        "rounds": rounds,
        "requests": int(requests),
        "unexpected_statuses": wrong,
        "rss_start_mb": round(start, 1),
        "rss_after_round_mb": [round(x, 1) for x in samples],
        "growth_after_warmup_mb": round(samples[-1] - samples[warm], 1),
        "growth_per_round_after_warmup_mb": round((samples[-1] - samples[warm]) / max(1, rounds - 1 - warm), 2),
    }


def fairness(gguf: Path, long: int, extra: list[str], work: Path) -> dict[str, Any]:
    with serve_process(gguf, work / ("fair" + "-".join(extra)), *extra) as srv:
        parallel = httpx.get(srv.base + "/v1/models", headers=srv.headers).json()["data"][0]["nextword"]["limits"]
        started = threading.Event()
        long_end: list[float] = []

        def run_long() -> None:
            body = {"prompt": PROMPT, "max_tokens": long, "temperature": 0, "stream": True}
            with (
                httpx.Client(timeout=3600) as http,
                http.stream("POST", srv.base + "/v1/completions", json=body, headers=srv.headers) as r,
            ):
                for line in r.iter_lines():
                    if line.startswith("data:"):
                        started.set()
            long_end.append(time.monotonic())

        def short(i: int) -> tuple[float, float]:
            t = time.monotonic()
            with httpx.Client(timeout=3600) as http:
                body = {"prompt": f"{PROMPT} {i}", "max_tokens": 4, "temperature": 0}
                assert _post(srv, "/v1/completions", body, http).status_code == 200
            return t, time.monotonic()

        with concurrent.futures.ThreadPoolExecutor(9) as pool:
            t0 = time.monotonic()
            long_future = pool.submit(run_long)
            started.wait(600)
            shorts = list(pool.map(short, range(8)))
            long_future.result()
        latencies = [end - begin for begin, end in shorts]
        return {
            "server_args": extra or ["(defaults)"],
            "parallel": parallel["parallel"],
            "long_tokens": long,
            "long_s": round(long_end[0] - t0, 2),
            "short_latency_median_s": round(statistics.median(latencies), 3),
            "short_latency_max_s": round(max(latencies), 3),
            "shorts_answered_before_the_long_ended": sum(end < long_end[0] for _, end in shorts),
        }


def tiny_model(folder: Path) -> Path:
    from nextword_llamacpp.convert import convert

    from nextword.testing.assets import gpt2_vocab_files
    from nextword.testing.models import build_tiny_gpt2

    build_tiny_gpt2(folder, tokenizer=gpt2_vocab_files(), n_positions=2048)
    return Path(convert(folder, folder / "tiny-long.Q8_0.gguf", type="q8_0"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gguf", type=Path, help="the model (default: a tiny GPT-2 with a 2048-token context)")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--long", type=int, default=1500, help="tokens of the long request")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-fairness", action="store_true")
    parser.add_argument("--out", type=Path, help="append the results as one JSON line to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        gguf = args.gguf or tiny_model(work / "tiny")
        print(f"model: {gguf.name}; memory over {args.rounds} rounds of the battery", flush=True)
        result: dict[str, Any] = {"model": gguf.name, "cpus": os.cpu_count()}
        if not args.skip_memory:
            result["memory"] = memory(gguf, args.rounds, args.long, work)
            print(json.dumps(result["memory"]), flush=True)
        if not args.skip_fairness:
            result["fairness"] = [fairness(gguf, args.long, extra, work) for extra in ([], ["--parallel", "1"])]
            for row in result["fairness"]:
                print(json.dumps(row), flush=True)
    if args.out:
        with args.out.open("a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
