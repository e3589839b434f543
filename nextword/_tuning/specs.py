"""How plugins provide fine-tuning and model-file export to the core.

The core never imports torch, transformers or llama.cpp. A plugin that can train registers a
:class:`TrainerSpec` through the ``register_trainers`` hook; one that can write another model
format registers an :class:`ExporterSpec` through ``register_exporters``. :func:`nextword.finetune`
reads the data, prepares the output folder and hands a :class:`TrainingJob` to the trainer, then
calls the exporter on the folder the trainer wrote.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nextword._tuning.documents import Document
from nextword._tuning.options import FinetuneOptions

__all__ = ["ExportResult", "ExporterSpec", "TrainerSpec", "TrainingJob", "TrainingOutcome"]


@dataclasses.dataclass(frozen=True)
class TrainingJob:
    """Everything a trainer needs for one run.

    The trainer writes an ordinary model folder (config, weights, tokenizer, generation config)
    into ``model_dir``, keeps its checkpoint in ``checkpoint_dir`` and, when ``resume`` is true,
    continues from the checkpoint found there. ``data_hash`` identifies the documents (a resumed
    run must see the same ones).
    """

    base: str
    documents: Sequence[Document]
    options: FinetuneOptions
    model_dir: Path
    checkpoint_dir: Path
    resume: bool
    progress: bool
    data_hash: str
    on_step: Callable[[dict[str, Any]], None] | None = None
    """Called after every optimizer step with ``{"step", "loss", "tokens_seen", ...}``."""
    check_model: Callable[[dict[str, Any]], None] | None = None
    """The trainer calls this with the base model's configuration (its ``config.json`` as a dict,
    ``model_type`` included) once the base is loaded and before the first step. It raises a
    :class:`~nextword.NextwordError` when something the run was asked for (a GGUF export) cannot
    be done for this model, so the run fails before training rather than after."""


@dataclasses.dataclass(frozen=True)
class TrainingOutcome:
    """What a trainer reports back: numbers measured on the held-out split, and the run's size."""

    base_loss: float
    """Mean held-out loss (nats per token) of the base model."""
    final_loss: float
    """Mean held-out loss of the saved weights (the best ones when early stopping kicked in)."""
    steps: int
    tokens_seen: int
    seconds: float
    """Training time, without loading, evaluation before training and saving."""
    train_tokens: int
    validation_tokens: int
    train_blocks: int
    validation_documents: int
    trainable_parameters: int
    total_parameters: int
    best_step: int
    stopped_early: bool
    history: tuple[dict[str, float], ...] = ()
    """Every evaluation: ``{"step", "loss"}``."""
    warnings: tuple[str, ...] = ()
    engine: dict[str, str] = dataclasses.field(default_factory=dict)
    """Versions of the libraries that trained (for the record)."""


@dataclasses.dataclass(frozen=True, eq=False)
class TrainerSpec:
    """A fine-tuning engine as a plugin registers it.

    ``train(job)`` runs the job and returns a :class:`TrainingOutcome`; heavy imports belong inside
    it. It raises :class:`~nextword._tuning.TrainingInterrupted` after saving a checkpoint when the
    user pressed Ctrl-C, and a :class:`~nextword.NextwordError` for bad input. ``check()`` returns
    None when the trainer can run here, else why not.
    """

    name: str
    train: Callable[[TrainingJob], TrainingOutcome]
    description: str = ""
    check: Callable[[], str | None] = lambda: None


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """One exported file and how closely it follows the model folder it came from."""

    type: str
    path: Path
    verify: dict[str, Any]
    """The exporter's comparison numbers (for GGUF: n_tokens, top1_agreement, mean_kl, ...)."""
    summary: str
    """The comparison as one human-readable line."""


@dataclasses.dataclass(frozen=True, eq=False)
class ExporterSpec:
    """A model-file format a plugin can write from a Hugging Face model folder.

    ``export(model_dir, out_path, type)`` writes the file and returns its path;
    ``verify(model_dir, path)`` returns an object whose ``str()`` is a one-line summary and that
    :func:`dataclasses.asdict` accepts. ``accepts(config)`` is asked before training with the base
    model's configuration (``config.json`` as a dict): None when a model of that kind can be
    exported, else why not (one sentence).
    """

    name: str
    types: tuple[str, ...]
    export: Callable[[Path, Path, str], Path]
    verify: Callable[[Path, Path], Any]
    check: Callable[[], str | None] = lambda: None
    accepts: Callable[[dict[str, Any]], str | None] = lambda config: None
