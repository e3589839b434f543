"""Does a sequence's result depend on what else is decoded with it? Measured per model.

llamacpp (GGUF files): for each file and each batching mode, 8 prompts are generated greedily
by 8 threads at once on one nextword generator (their steps share decodes), with the logits of
every step kept; the same prompts are then run one at a time. Reported per mode: the largest
absolute logit difference, the mean KL divergence (alone || concurrent) over all steps, and how
many prompts gave the same greedy token ids. Also the exact group size the pool measured.

hf (``--hf``: Hugging Face model folders, or ``tiny`` / ``124m`` for the random-weight GPT-2
fixtures built into the work folder): the 8 prompts as one left-padded ``generate`` batch, as
``batching="fast"`` runs concurrent calls, against each prompt alone (the ``exact`` mode), on
the CPU; the logits of every step are recorded inside that same ``generate`` call. Then the
public path: 8 threads calling ``generate`` at once on a ``batching="fast"`` generator, token
ids compared with the calls one by one.

    python benchmarks/batch_invariance.py FILE.gguf [FILE.gguf ...] --steps 24
    python benchmarks/batch_invariance.py --hf tiny 124m --steps 24
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from bench_concurrency import PROMPTS  # the throughput benchmark's prompts (a sibling script)

import nextword
from nextword._decoding.processors import log_softmax


def greedy_with_logits(gen: Any, prompt: str, steps: int) -> tuple[list[int], list[np.ndarray]]:
    session = gen.open_session(gen.tokenize(prompt))
    ids: list[int] = []
    rows: list[np.ndarray] = []
    for _ in range(steps):
        logits = session.logits()
        rows.append(logits.astype(np.float64))
        token = int(np.argmax(logits))
        ids.append(token)
        session.feed(token)
    return ids, rows


def compare(alone: list[Any], together: list[Any]) -> dict[str, Any]:
    """Largest |logit difference|, mean KL(alone || together) and greedy agreement over the steps
    where both runs still hold the same context."""
    max_diff = 0.0
    kls: list[float] = []
    same = 0
    for (ids_a, rows_a), (ids_b, rows_b) in zip(alone, together, strict=True):
        same += ids_a == ids_b
        for j, (a, b) in enumerate(zip(rows_a, rows_b, strict=True)):
            if ids_a[:j] != ids_b[:j]:  # past a divergence the contexts differ: stop comparing
                break
            max_diff = max(max_diff, float(np.abs(a - b).max()))
            pa, lb = log_softmax(a), log_softmax(b)
            kls.append(float(np.sum(np.exp(pa) * (pa - lb))))
    return {
        "max_abs_logit_diff": float(f"{max_diff:.3g}"),
        "mean_kl": float(f"{np.mean(kls):.3g}") if kls else 0.0,
        "same_greedy_ids": f"{same}/{len(alone)}",
    }


def measure(path: Path, mode: str, steps: int, n_ctx: int) -> dict[str, Any]:
    gen = nextword.load("llamacpp", str(path), batching=mode, parallel=len(PROMPTS), n_ctx=n_ctx)
    alone = [greedy_with_logits(gen, p, steps) for p in PROMPTS]
    together: list[Any] = [None] * len(PROMPTS)

    def run(i: int) -> None:
        together[i] = greedy_with_logits(gen, PROMPTS[i], steps)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(PROMPTS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = {
        "file": path.name,
        "batching": mode,
        "exact_group": gen.batch_group_size,
        "steps": steps,
        **compare(alone, together),
        "mean_requests_per_group": round(gen.scheduler.stats[1] / max(1, gen.scheduler.stats[0]), 2),
    }
    gen.close()
    return result


class _Recorder:
    """A logits processor that keeps the raw scores of every step (greedy: nothing else runs)."""

    def __init__(self) -> None:
        self.steps: list[np.ndarray] = []

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        self.steps.append(scores.double().cpu().numpy())
        return scores


def hf_model_dir(name: str, work: Path) -> Path:
    """``tiny`` / ``124m``: the random-weight GPT-2 fixtures (built once into ``work``); else a folder."""
    if name not in ("tiny", "124m"):
        return Path(name)
    from nextword.testing.models import build_gpt2_124m, build_tiny_gpt2

    folder = work / f"hf-gpt2-{name}"
    if not (folder / "config.json").exists():
        (build_tiny_gpt2 if name == "tiny" else build_gpt2_124m)(folder)
    return folder


def hf_logits(gen: Any, batch: list[list[int]], steps: int) -> list[tuple[list[int], list[np.ndarray]]]:
    """Greedy ids and every step's raw logits of ``batch`` run as one left-padded ``generate``
    call of the hf generator (the call its ``batching="fast"`` mode makes for concurrent calls)."""
    from transformers import LogitsProcessorList

    from nextword._types.decoding_config import DecodingConfig

    recorder = _Recorder()
    config = DecodingConfig(max_new_tokens=steps)
    sequences, width, _ = gen._run_generate(batch, config, steps, LogitsProcessorList([recorder]))
    out = []
    for r, row in enumerate(sequences[:, width:].tolist()):
        rows = [step[r] for step in recorder.steps]
        out.append((row[: len(rows)], rows))
    return out


def measure_hf(name: str, work: Path, steps: int) -> dict[str, Any]:
    folder = hf_model_dir(name, work)
    gen: Any = nextword.load("hf", str(folder), device="cpu", batching="fast")
    prompts = [gen.tokenize(p) for p in PROMPTS]
    alone = [hf_logits(gen, [ids], steps)[0] for ids in prompts]
    together = hf_logits(gen, prompts, steps)
    one_by_one = [gen.generate(p, max_new_tokens=steps, stop=()).sequences[0].token_ids for p in PROMPTS]
    before = gen.scheduler.stats
    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        threaded = list(pool.map(lambda p: gen.generate(p, max_new_tokens=steps).sequences[0].token_ids, PROMPTS))
    groups, requests = (a - b for a, b in zip(gen.scheduler.stats, before, strict=True))
    result = {
        "backend": "hf",
        "model": name,
        "batching": "fast (8 prompts in one left-padded batch) vs exact (alone)",
        "threads": gen.settings.options["threads"],
        "steps": steps,
        **compare(alone, together),
        "threads_same_ids_as_one_by_one": f"{sum(map(tuple.__eq__, one_by_one, threaded))}/{len(PROMPTS)}",
        "mean_requests_per_group": round(requests / max(1, groups), 2),
    }
    gen.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--hf", nargs="*", default=[], help="hf model folders, or tiny / 124m (random GPT-2)")
    parser.add_argument("--work-dir", type=Path, default=None, help="where the tiny / 124m hf models are built")
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--n-ctx", type=int, default=512)
    parser.add_argument("--json", type=Path, default=None, help="also append the rows here (JSON lines)")
    args = parser.parse_args()
    work = args.work_dir or Path(tempfile.mkdtemp())
    jobs: list[Callable[[], dict[str, Any]]] = [
        partial(measure, path, mode, args.steps, args.n_ctx) for path in args.files for mode in ("exact", "fast")
    ]
    jobs += [partial(measure_hf, name, work, args.steps) for name in args.hf]
    for job in jobs:
        row = job()
        print(json.dumps(row))
        if args.json:
            with args.json.open("a") as fh:
                fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
