"""``FinetuneReport``: what one fine-tuning run did and measured."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from nextword._tuning.options import FinetuneOptions
from nextword._tuning.specs import ExportResult, TrainingOutcome

__all__ = ["FinetuneReport", "perplexity"]


def perplexity(loss: float) -> float:
    """``exp(loss)``, or infinity where that overflows."""
    return math.exp(loss) if loss < 700 else math.inf


@dataclasses.dataclass(frozen=True)
class FinetuneReport:
    """The result of :func:`nextword.finetune`: held-out numbers before and after, the size and
    speed of the run, and where its files are.

    Losses are mean negative log-likelihoods per token (nats) on the held-out documents.
    """

    out: Path
    base: str
    options: FinetuneOptions
    outcome: TrainingOutcome
    documents: int
    data_sha256: str
    exports: tuple[ExportResult, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def base_loss(self) -> float:
        """Held-out loss of the base model."""
        return self.outcome.base_loss

    @property
    def final_loss(self) -> float:
        """Held-out loss of the saved model."""
        return self.outcome.final_loss

    @property
    def base_perplexity(self) -> float:
        """Held-out perplexity of the base model."""
        return perplexity(self.outcome.base_loss)

    @property
    def final_perplexity(self) -> float:
        """Held-out perplexity of the saved model."""
        return perplexity(self.outcome.final_loss)

    @property
    def steps(self) -> int:
        """Optimizer steps taken."""
        return self.outcome.steps

    @property
    def tokens_seen(self) -> int:
        """Training tokens the model processed (counting repeats)."""
        return self.outcome.tokens_seen

    @property
    def seconds(self) -> float:
        """Training time in seconds."""
        return self.outcome.seconds

    @property
    def tokens_per_second(self) -> float:
        """Training throughput."""
        return self.outcome.tokens_seen / self.outcome.seconds if self.outcome.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (the machine-readable record written beside the model)."""
        o = self.outcome
        return {
            "base_model": self.base,
            "out": str(self.out),
            "method": self.options.method,
            "hyperparameters": self.options.training_fields(),
            "device": self.options.device,
            "data": {
                "sha256": self.data_sha256,
                "documents": self.documents,
                "validation_documents": o.validation_documents,
                "train_tokens": o.train_tokens,
                "validation_tokens": o.validation_tokens,
                "train_blocks": o.train_blocks,
            },
            "metrics": {
                "base": {"loss": o.base_loss, "perplexity": self.base_perplexity},
                "final": {"loss": o.final_loss, "perplexity": self.final_perplexity},
                "history": [dict(h) for h in o.history],
                "best_step": o.best_step,
                "stopped_early": o.stopped_early,
            },
            "training": {
                "steps": o.steps,
                "tokens_seen": o.tokens_seen,
                "seconds": o.seconds,
                "tokens_per_second": self.tokens_per_second,
                "trainable_parameters": o.trainable_parameters,
                "total_parameters": o.total_parameters,
            },
            "exports": [
                {"type": e.type, "file": e.path.name, "verify": e.verify, "summary": e.summary} for e in self.exports
            ],
            "engine": dict(o.engine),
            "warnings": list(self.warnings),
        }

    def __str__(self) -> str:
        """A short human summary (what ``nextword finetune`` prints)."""
        o = self.outcome
        lines = [
            f"fine-tuned {self.base} ({self.options.method}) -> {self.out}",
            f"held-out loss {o.base_loss:.4f} -> {o.final_loss:.4f}  "
            f"(perplexity {self.base_perplexity:.2f} -> {self.final_perplexity:.2f}) on {o.validation_tokens:,} tokens "
            f"of {o.validation_documents} document(s)",
            f"{o.steps} steps, {o.tokens_seen:,} tokens in {o.seconds:.1f} s ({self.tokens_per_second:.0f} tokens/s); "
            f"best step {o.best_step}{', stopped early' if o.stopped_early else ''}",
        ]
        for export in self.exports:
            lines.append(f"{export.path}: {export.summary}")
        lines.extend(f"warning: {w}" for w in self.warnings)
        return "\n".join(lines)
