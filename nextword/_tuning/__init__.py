"""Fine-tuning on your own text: :func:`finetune`, its options and report, and the specs through
which plugins provide training (``register_trainers``) and model-file export
(``register_exporters``). Nothing here imports torch."""

from __future__ import annotations

from nextword._tuning.api import FinetuneWarning, finetune
from nextword._tuning.documents import Corpus, Document, read_corpus
from nextword._tuning.extensions import exporters, get_exporter, get_trainer, trainers
from nextword._tuning.options import FinetuneOptions
from nextword._tuning.output import RECORD_NAME
from nextword._tuning.packing import hold_out, overfit_warning, pack, split_single_document
from nextword._tuning.report import FinetuneReport, perplexity
from nextword._tuning.specs import ExporterSpec, ExportResult, TrainerSpec, TrainingJob, TrainingOutcome

__all__ = [
    "RECORD_NAME",
    "Corpus",
    "Document",
    "ExportResult",
    "ExporterSpec",
    "FinetuneOptions",
    "FinetuneReport",
    "FinetuneWarning",
    "TrainerSpec",
    "TrainingJob",
    "TrainingOutcome",
    "exporters",
    "finetune",
    "get_exporter",
    "get_trainer",
    "hold_out",
    "overfit_warning",
    "pack",
    "perplexity",
    "read_corpus",
    "split_single_document",
    "trainers",
]
