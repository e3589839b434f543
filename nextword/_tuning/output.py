"""The output folder of a fine-tuning run: staged beside its final place, then moved there whole.

Files are written into a hidden sibling folder (``.<name>.partial``) that becomes ``out`` only
when everything succeeded, so a failed run leaves no half-written model. A run stopped by Ctrl-C
leaves its checkpoint there for ``--resume``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from nextword._tuning.report import FinetuneReport
from nextword.errors import InvalidConfig

__all__ = ["RECORD_NAME", "StagedOutput"]

RECORD_NAME = "nextword-finetune.json"
"""The machine-readable record written beside the model."""


class StagedOutput:
    """The staging folder of ``out`` and the rules for starting, resuming, failing and finishing."""

    def __init__(self, out: Path, *, resume: bool, overwrite: bool) -> None:
        self.out = out
        self.staging = out.parent / f".{out.name}.partial"
        self.checkpoint = self.staging / "checkpoint"
        self.resume = resume
        self.overwrite = overwrite

    def check(self) -> None:
        """Refuse what would lose work or mix runs; raise :class:`~nextword.InvalidConfig`."""
        if self.out.exists() and not self.out.is_dir():
            raise InvalidConfig(f"{str(self.out)!r} exists and is not a folder")
        if self.out.exists() and not self.overwrite:
            raise InvalidConfig(f"the output folder {str(self.out)!r} exists; pass --overwrite to replace it")
        has_checkpoint = self.checkpoint.is_dir()
        if self.resume and not has_checkpoint:
            raise InvalidConfig(f"nothing to resume: no checkpoint of an interrupted run in {str(self.staging)!r}")
        if not self.resume and has_checkpoint and not self.overwrite:
            raise InvalidConfig(
                f"an interrupted run left a checkpoint in {str(self.checkpoint)!r}: pass --resume to continue it, "
                "or --overwrite to start over"
            )

    def prepare(self) -> None:
        """Create the staging folder (emptied unless resuming)."""
        if not self.out.parent.is_dir():
            raise InvalidConfig(f"the parent folder of {str(self.out)!r} does not exist")
        if not self.resume and self.staging.exists():
            shutil.rmtree(self.staging)
        self.staging.mkdir(exist_ok=True)

    def discard(self) -> None:
        """After a failure: remove everything but a checkpoint (kept for ``--resume``)."""
        if not self.staging.exists():
            return
        for child in self.staging.iterdir():
            if child != self.checkpoint:
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        if not any(self.staging.iterdir()):
            self.staging.rmdir()

    def write_card_and_record(self, report: FinetuneReport) -> None:
        """Write ``README.md`` (model card) and :data:`RECORD_NAME` into the staging folder."""
        (self.staging / RECORD_NAME).write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n")
        (self.staging / "README.md").write_text(model_card(report))

    def finish(self) -> None:
        """Drop the checkpoint and move the staging folder to ``out`` (replacing an old one)."""
        shutil.rmtree(self.checkpoint, ignore_errors=True)
        trash = self.out.parent / f".{self.out.name}.old"
        if self.out.exists():
            shutil.rmtree(trash, ignore_errors=True)
            os.replace(self.out, trash)
        os.replace(self.staging, self.out)
        shutil.rmtree(trash, ignore_errors=True)


def model_card(report: FinetuneReport) -> str:
    """The model card: what was trained from what, how, and what it measured."""
    o = report.outcome
    opts = report.options
    rows = "\n".join(f"| {k} | {v} |" for k, v in opts.training_fields().items())
    exports = "".join(f"- `{e.path.name}`: {e.summary}\n" for e in report.exports) or "- none\n"
    warnings = "".join(f"- {w}\n" for w in report.warnings) or "- none\n"
    return f"""---
base_model: {report.base}
library_name: transformers
tags: [nextword, fine-tuned, {opts.method}]
---

# Fine-tune of {report.base}

Made with `nextword finetune` ({opts.method}{", LoRA merged into the weights" if opts.method == "lora" else ""}).
This folder is an ordinary Hugging Face model: `nextword generate --model <this folder> "..."`.

## Data

{report.documents} document(s), SHA-256 `{report.data_sha256}`; {o.train_tokens:,} training tokens
in {o.train_blocks} blocks, {o.validation_tokens:,} held-out tokens from {o.validation_documents} document(s).

## Results on the held-out documents

| model | loss (nats/token) | perplexity |
|---|---|---|
| base | {o.base_loss:.4f} | {report.base_perplexity:.2f} |
| fine-tuned | {o.final_loss:.4f} | {report.final_perplexity:.2f} |

{o.steps} optimizer steps, {o.tokens_seen:,} tokens in {o.seconds:.1f} s ({report.tokens_per_second:.0f} tokens/s);
best held-out loss at step {o.best_step}{" (stopped early)" if o.stopped_early else ""}.

## Hyper-parameters

| name | value |
|---|---|
{rows}

## Exports

{exports}
## Warnings

{warnings}"""
