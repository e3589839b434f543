"""The ``nextword finetune`` command."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import click

from nextword.errors import TrainingInterrupted

__all__ = ["finetune"]


@click.command("finetune")
@click.argument("data", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--base", required=True, help="Base model: a folder, a .gguf file transformers loads, or a hub id.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Folder to write the fine-tuned model to.")
@click.option("--method", type=click.Choice(["lora", "full"]), default="lora", show_default=True)
@click.option("--epochs", type=float, default=None, help="Passes over the training blocks (default 1).")
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="Optimizer steps (overrides --epochs).")
@click.option("--learning-rate", type=float, default=None, help="Peak learning rate (default 2e-4 LoRA, 5e-5 full).")
@click.option("--block-size", type=click.IntRange(min=2), default=None, help="Tokens per training block (default 128).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Blocks per micro-batch (default 4).")
@click.option("--grad-accumulation", type=click.IntRange(min=1), default=None, help="Micro-batches per step.")
@click.option("--warmup-steps", type=click.IntRange(min=0), default=None, help="Warm-up steps (default: 10%).")
@click.option("--eval-every", type=click.IntRange(min=1), default=None, help="Steps between held-out evaluations.")
@click.option(
    "--patience", type=click.IntRange(min=1), default=None, help="Evaluations without improvement before stopping."
)
@click.option("--validation", type=float, default=None, help="Share of the documents held out (default 0.1).")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Seed (a CPU run with a seed is repeatable).")
@click.option("--device", default=None, help="cpu, cuda, cuda:N or auto (default).")
@click.option("--lora-r", type=click.IntRange(min=1), default=None, help="LoRA rank (default 8).")
@click.option(
    "--gguf", "gguf", multiple=True, help="Also export GGUF of this type (q8_0, q4_k_m, f16, ...; repeatable)."
)
@click.option("--resume", is_flag=True, help="Continue the run an earlier Ctrl-C interrupted.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def finetune(
    data: tuple[Path, ...],
    base: str,
    out: Path,
    method: str,
    gguf: tuple[str, ...],
    resume: bool,
    overwrite: bool,
    as_json: bool,
    **options: Any,
) -> None:
    """Fine-tune a model on DATA (text or Markdown files, folders of them, .jsonl with a text
    field) and write an ordinary Hugging Face model folder to --out, with a model card, a
    machine-readable record and, with --gguf, GGUF files checked against it.

    Ctrl-C stops after the current step and saves a checkpoint; the same command with --resume
    continues it.
    """
    from nextword._tuning.api import finetune as run_finetune

    chosen = {k: v for k, v in options.items() if v is not None}
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("ignore")  # the report prints them
        try:
            report = run_finetune(
                list(data),
                base=base,
                out=out,
                method=method,
                gguf=gguf,
                resume=resume,
                overwrite=overwrite,
                progress=sys.stderr.isatty(),
                **chosen,
            )
        except TrainingInterrupted as exc:
            click.secho(str(exc), fg="yellow", err=True)
            raise SystemExit(130) from None
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        click.echo(str(report))
