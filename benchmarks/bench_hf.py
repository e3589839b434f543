"""Raw transformers ``model.generate`` vs nextword's hf backend, side by side in one process.

GPT-2 124M shape (random weights: speed does not depend on weight values), batch 1, greedy,
a fixed number of new tokens. The two are run alternately, several rounds, and the median of
each is compared, so machine noise hits both alike. Prints tokens/s for both and the ratio.

    python benchmarks/bench_hf.py                     # CPU, float32
    python benchmarks/bench_hf.py --device cuda --dtype float16 --cache static
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import nextword
from nextword.testing.models import build_gpt2_124m

PROMPT = "I love cats because"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    parser.add_argument("--cache", default="dynamic", choices=("dynamic", "static"))
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model-dir", type=Path, default=None, help="reuse a built GPT-2 124M folder")
    parser.add_argument("--json", type=Path, default=None, help="also append the numbers to this file (JSON lines)")
    args = parser.parse_args()

    model_dir = args.model_dir or Path(tempfile.mkdtemp()) / "gpt2-124m"
    if not (model_dir / "config.json").exists():
        build_gpt2_124m(model_dir)

    dtype = getattr(torch, args.dtype)
    device = torch.device(args.device)
    tok = AutoTokenizer.from_pretrained(model_dir)
    raw_model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device).eval()
    gen = nextword.load("hf", str(model_dir), device=args.device, dtype=args.dtype, cache=args.cache)
    ids = tok(PROMPT, return_tensors="pt")["input_ids"].to(device)
    n = args.new_tokens
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def run_raw() -> list[int]:
        kwargs = {"cache_implementation": "static"} if args.cache == "static" else {}
        with torch.inference_mode():
            out = raw_model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                pad_token_id=tok.eos_token_id,
                **kwargs,
            )
        sync()
        return out[0, ids.shape[1] :].tolist()

    def run_nextword() -> list[int]:
        result = gen.generate(PROMPT, max_new_tokens=n, min_new_tokens=n)
        sync()
        return list(result.token_ids)

    # Warm-up (and a check that both produce the same tokens).
    same = run_raw() == run_nextword()
    timings: dict[str, list[float]] = {"raw": [], "nextword": []}
    for _ in range(args.rounds):
        for name, fn in (("raw", run_raw), ("nextword", run_nextword)):
            start = time.perf_counter()
            fn()
            timings[name].append(time.perf_counter() - start)

    raw_tps = n / statistics.median(timings["raw"])
    nw_tps = n / statistics.median(timings["nextword"])
    device_name = (
        torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    )
    rows = {
        "device": device_name,
        "dtype": args.dtype,
        "cache": args.cache,
        "new_tokens": n,
        "rounds": args.rounds,
        "raw_tok_s": round(raw_tps, 1),
        "nextword_tok_s": round(nw_tps, 1),
        "ratio": round(nw_tps / raw_tps, 3),
        "identical_tokens": same,
    }
    print(f"device: {device_name}  dtype: {args.dtype}  cache: {args.cache}  new tokens: {n}  rounds: {args.rounds}")
    print(f"{'runner':<22}{'tok/s (median)':>16}")
    print(f"{'transformers generate':<22}{raw_tps:>16.1f}")
    print(f"{'nextword hf':<22}{nw_tps:>16.1f}")
    print(f"ratio nextword/raw: {nw_tps / raw_tps:.3f}   identical tokens: {same}")
    if args.json:
        with args.json.open("a") as fh:
            fh.write(json.dumps(rows) + "\n")


if __name__ == "__main__":
    main()
