"""``nextword serve --backend llamacpp`` against llama.cpp's own C++ ``llama-server`` and
``python -m llama_cpp.server``, side by side in one run.

``llama-server`` is the one ``benchmarks/build_llama_server.sh`` builds from the installed
llama-cpp-python's sdist (the same llama.cpp; ``--llama-server PATH`` names another binary); it
runs with ``--parallel 8`` (continuous batching, 8 slots) and is left out, with a line saying so,
when no binary is found. ``nextword serve`` runs with its defaults (the exact schedule), with
``--schedule fast``, and with ``--schedule fast -o flash_attn=true`` (llama-server's default
kernel on a CPU).

The servers run the same GGUF file (GPT-2 124M shape, random weights, converted by nextword to
Q8_0: speed does not depend on weight values) with the same thread count, on 127.0.0.1, one at a
time. Each is sent the same greedy completions (``temperature=0``; llama-cpp-python's server also
gets ``repeat_penalty=1.0`` so that both do the same work) by 1 and by 8 concurrent clients;
requests/s and generated tokens/s are measured over the whole batch of requests. Then the loopback
overhead: nextword in-process against the ``openai`` backend talking to ``nextword serve``, one
client, alternating rounds, median tokens/s.

    python benchmarks/bench_serve.py --threads 2 --requests 16 --new-tokens 32
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from nextword_llamacpp.convert import convert

import nextword
from nextword.testing.models import build_gpt2_124m

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.servers import free_port, wait_ready  # noqa: E402

PROMPTS = [
    "I love cats because",
    "The weather today is",
    "Once upon a time",
    "The best way to learn is",
    "In the morning I usually",
    "My favourite book is",
    "The city was quiet when",
    "She opened the door and",
]


def llama_server_binary(given: Path | None) -> Path | None:
    """The llama-server binary: ``given``, else the one build_llama_server.sh cached for the
    installed llama-cpp-python, else None."""
    if given is not None:
        return given
    import llama_cpp

    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nextword" / "llama-server"
    binary = cache / llama_cpp.__version__ / "build" / "bin" / "llama-server"
    return binary if binary.exists() else None


def start(args: list[str], port: int, log: Path) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    env = dict(os.environ)
    if args and not args[0].startswith("-"):  # a binary (llama-server): its libraries lie beside it
        env["LD_LIBRARY_PATH"] = str(Path(args[0]).parent)
        argv = args
    else:
        argv = [sys.executable, *args]
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_ready(f"http://127.0.0.1:{port}/v1/models", 120.0, alive=lambda: proc.poll() is None)
    except Exception:
        proc.kill()
        raise RuntimeError(f"server did not start: {log.read_text(errors='replace')[-2000:]}") from None
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def load_test(base: str, model: str, extra: dict[str, Any], n_requests: int, clients: int, new_tokens: int) -> dict:
    """``n_requests`` greedy completions by ``clients`` concurrent clients: requests/s, tokens/s
    and the texts (to check both servers generate the same)."""

    def one(i: int) -> tuple[str, int]:
        body = {"model": model, "prompt": PROMPTS[i % len(PROMPTS)], "max_tokens": new_tokens, "temperature": 0}
        with httpx.Client(timeout=600) as http:
            data = http.post(base + "/v1/completions", json={**body, **extra}).json()
        return data["choices"][0]["text"], int(data["usage"]["completion_tokens"])

    start_t = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=clients) as pool:
        results = list(pool.map(one, range(n_requests)))
    elapsed = time.perf_counter() - start_t
    tokens = sum(n for _, n in results)
    return {
        "requests_per_s": round(n_requests / elapsed, 3),
        "tokens_per_s": round(tokens / elapsed, 1),
        "texts": [t for t, _ in results],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the loopback-overhead comparison")
    parser.add_argument("--work-dir", type=Path, default=None, help="reuse the built model from this folder")
    parser.add_argument("--json", type=Path, default=None, help="also append the numbers here (JSON lines)")
    parser.add_argument("--llama-server", type=Path, default=None, help="llama.cpp's llama-server binary")
    args = parser.parse_args()

    work = args.work_dir or Path(tempfile.mkdtemp())
    model_dir = work / "gpt2-124m"
    if not (model_dir / "config.json").exists():
        build_gpt2_124m(model_dir)
    gguf = work / "gpt2-124m.q8_0.gguf"
    if not gguf.exists():
        convert(model_dir, gguf, type="q8_0")
    t = str(args.threads)
    nextword_argv = [
        "-m", "nextword", "serve", "--backend", "llamacpp", "--model", str(gguf), "--served-model-name", "m",
        "-o", f"threads={t}", "-o", "n_ctx=512",
    ]  # fmt: skip
    servers: dict[str, tuple[list[str], dict[str, Any]]] = {
        "llama_cpp.server": (
            [
                "-m",
                "llama_cpp.server",
                "--model",
                str(gguf),
                "--model_alias",
                "m",
                "--n_ctx",
                "512",
                "--n_threads",
                t,
                "--n_threads_batch",
                t,
                "--logits_all",
                "False",
            ],
            {"repeat_penalty": 1.0},
        ),
        "nextword serve": (nextword_argv, {}),
        "nextword fast": ([*nextword_argv, "--schedule", "fast"], {}),
        # llama-server turns flash attention on by default on a CPU (-fa auto); nextword keeps the
        # more exact kernel unless asked: this row runs the same kernel as llama-server.
        "nextword fast+fa": ([*nextword_argv, "--schedule", "fast", "-o", "flash_attn=true"], {}),
    }
    binary = llama_server_binary(args.llama_server)
    if binary is None:
        print("llama-server: no binary (run benchmarks/build_llama_server.sh, or pass --llama-server PATH)")
    else:
        servers = {
            "llama-server": (
                [str(binary), "-m", str(gguf), "-a", "m", "-t", t, "-tb", t, "--parallel", "8", "-c", "4096"],
                {},
            ),
            **servers,
        }
    rows: list[dict[str, Any]] = []
    texts: dict[str, list[str]] = {}
    print(f"threads: {t}  requests: {args.requests}  new tokens: {args.new_tokens}  file: {gguf.name}")
    print(f"{'server':<18}{'clients':>8}{'req/s':>9}{'tok/s':>9}")
    # llama-server's /v1/completions: greedy with temperature 0 (its samplers then reduce to
    # the argmax; no repeat penalty by default).
    for name, (argv, extra) in servers.items():
        port = free_port()
        log = work / f"{name.replace(' ', '-')}.log"
        proc = start([*argv, "--host", "127.0.0.1", "--port", str(port)], port, log)
        try:
            base = f"http://127.0.0.1:{port}"
            load_test(base, "m", extra, 2, 1, 4)  # warm-up
            for clients in (1, 8):
                row = load_test(base, "m", extra, args.requests, clients, args.new_tokens)
                texts[f"{name}/{clients}"] = row.pop("texts")
                row.update(server=name, clients=clients)
                rows.append(row)
                print(f"{name:<18}{clients:>8}{row['requests_per_s']:>9.2f}{row['tokens_per_s']:>9.1f}")
        finally:
            stop(proc)
    reference = texts["nextword serve/1"]
    differing = sorted(key for key, value in texts.items() if value != reference)
    same = not differing
    print(f"texts differing from nextword serve's at 1 client: {', '.join(differing) or 'none'}")

    # Loopback overhead: in-process nextword against openai -> nextword serve (one client).
    port = free_port()
    argv = servers["nextword serve"][0]
    proc = start([*argv, "--host", "127.0.0.1", "--port", str(port)], port, work / "nextword-overhead.log")
    try:
        local = nextword.load("llamacpp", str(gguf), threads=args.threads, n_ctx=512)
        remote = nextword.load("openai", "m", base_url=f"http://127.0.0.1:{port}/v1")
        n = args.new_tokens
        times: dict[str, list[float]] = {"in-process": [], "openai -> serve": []}
        outputs: dict[str, Any] = {}
        for _ in range(args.rounds):
            for label, gen in (("in-process", local), ("openai -> serve", remote)):
                begin = time.perf_counter()
                result = gen.generate(PROMPTS[0], max_new_tokens=n, min_new_tokens=n)
                times[label].append(time.perf_counter() - begin)
                outputs[label] = result.token_ids
        local_tps = n / statistics.median(times["in-process"])
        remote_tps = n / statistics.median(times["openai -> serve"])
        local.close()
    finally:
        stop(proc)
    overhead = {
        "in_process_tok_s": round(local_tps, 1),
        "openai_to_serve_tok_s": round(remote_tps, 1),
        "ratio": round(remote_tps / local_tps, 3),
        "identical_tokens": outputs["in-process"] == outputs["openai -> serve"],
    }
    print(
        f"loopback: in-process {local_tps:.1f} tok/s, openai -> nextword serve {remote_tps:.1f} tok/s, "
        f"ratio {remote_tps / local_tps:.3f}, same tokens: {overhead['identical_tokens']}"
    )
    if args.json:
        with args.json.open("a") as fh:
            meta = {"threads": args.threads, "requests": args.requests, "new_tokens": args.new_tokens}
            fh.write(json.dumps({**meta, "servers": rows, "same_texts": same, "loopback": overhead}) + "\n")


if __name__ == "__main__":
    main()
