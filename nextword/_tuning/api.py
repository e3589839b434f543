"""``finetune()``: train a model on your own text and write it as a model folder (and GGUF files)."""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nextword._tuning.documents import read_corpus
from nextword._tuning.extensions import get_exporter, get_trainer
from nextword._tuning.options import FinetuneOptions
from nextword._tuning.output import StagedOutput
from nextword._tuning.report import FinetuneReport
from nextword._tuning.specs import ExporterSpec, ExportResult, TrainingJob
from nextword.errors import InvalidConfig, TrainingInterrupted, UnsupportedOption

__all__ = ["FinetuneWarning", "finetune"]

_FIELDS = {f.name for f in dataclasses.fields(FinetuneOptions)}


class FinetuneWarning(UserWarning):
    """A fine-tuning run that worked but may not give what was hoped (e.g. a corpus small enough
    to memorize)."""


def finetune(
    data: Any,
    *,
    base: str | os.PathLike[str],
    out: str | os.PathLike[str],
    method: str = "lora",
    gguf: Sequence[str] = (),
    resume: bool = False,
    overwrite: bool = False,
    trainer: str = "hf",
    progress: bool = False,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    **options: Any,
) -> FinetuneReport:
    """Fine-tune ``base`` on ``data`` and write the result to the folder ``out``.

    ``data`` is anything :func:`~nextword._tuning.read_corpus` reads: a file, a folder, a list of
    texts or paths, a ``datasets.Dataset``. ``base`` is a model folder, a ``.gguf`` file that
    transformers can load (Gemma 3, ...) or a hub id. ``method`` is ``"lora"`` (adapters merged
    into the weights on save) or ``"full"``. ``options`` are the fields of
    :class:`~nextword._tuning.FinetuneOptions` (``epochs``, ``max_steps``, ``learning_rate``,
    ``block_size``, ``batch_size``, ``grad_accumulation``, ``validation``, ``seed``, ``device``,
    ``eval_every``, ``patience``, ...). Each type in ``gguf`` (e.g. ``"q8_0"``) is exported to
    ``out/model.<TYPE>.gguf`` and compared with the trained folder (the verify report).

    ``out`` must not exist unless ``overwrite``. Everything is written to a staging folder
    beside it that becomes ``out`` only when the run and every export succeeded; on failure
    nothing is left but the checkpoint of an interrupted run. Ctrl-C stops after the current step,
    saves a checkpoint and raises :class:`~nextword.TrainingInterrupted`; calling again with the
    same arguments and ``resume=True`` continues to the result an uninterrupted run gives.

    Returns a :class:`~nextword._tuning.FinetuneReport`; emits :class:`FinetuneWarning` for a
    corpus small enough to memorize. Importing this needs no torch; the registered trainer
    (``trainer``, default the hf plugin's) does the work.
    """
    unknown = sorted(set(options) - _FIELDS - {"method"})
    if unknown:
        raise InvalidConfig(
            f"unknown fine-tuning option(s): {', '.join(unknown)} (known: {', '.join(sorted(_FIELDS))})"
        )
    if "lora_targets" in options and isinstance(options["lora_targets"], list):
        options["lora_targets"] = tuple(options["lora_targets"])
    opts = FinetuneOptions(method=method, **options)  # type: ignore[arg-type]
    types = _gguf_types(gguf)
    exporter = get_exporter("gguf") if types else None
    if exporter is not None:
        bad = [t for t in types if t not in exporter.types]
        if bad:
            raise InvalidConfig(f"unknown GGUF type(s) {', '.join(bad)}; choose from {', '.join(exporter.types)}")
    engine = get_trainer(trainer)
    base_name = os.fspath(base)
    if not base_name:
        raise InvalidConfig("base must name a model (a folder, a .gguf file or a hub id)")
    corpus = read_corpus(data)
    staged = StagedOutput(Path(out).expanduser().absolute(), resume=resume, overwrite=overwrite)
    staged.check()
    staged.prepare()
    job = TrainingJob(
        base=base_name,
        documents=corpus.documents,
        options=opts,
        model_dir=staged.staging,
        checkpoint_dir=staged.checkpoint,
        resume=resume,
        progress=progress,
        data_hash=corpus.sha256,
        on_step=on_step,
        check_model=_export_check(exporter, types, base_name),
    )
    try:
        outcome = engine.train(job)
        run_warnings = list(outcome.warnings)
        if corpus.skipped:
            shown = ", ".join(corpus.skipped[:5]) + (" ..." if len(corpus.skipped) > 5 else "")
            run_warnings.append(f"{len(corpus.skipped)} file(s) in the data folders were not read: {shown}")
        report = FinetuneReport(
            out=staged.out,
            base=base_name,
            options=opts,
            outcome=outcome,
            documents=len(corpus.documents),
            data_sha256=corpus.sha256,
            warnings=tuple(run_warnings),
        )
        exports: list[ExportResult] = []
        for kind in types:
            assert exporter is not None
            path = exporter.export(staged.staging, staged.staging / f"model.{kind.upper()}.gguf", kind)
            check = exporter.verify(staged.staging, path)
            exports.append(ExportResult(kind, staged.out / path.name, dataclasses.asdict(check), str(check)))
        report = dataclasses.replace(report, exports=tuple(exports))
        staged.write_card_and_record(report)
        staged.finish()
    except TrainingInterrupted:
        raise
    except BaseException:
        staged.discard()
        raise
    for message in report.warnings:
        warnings.warn(message, FinetuneWarning, stacklevel=2)
    return report


def _export_check(
    exporter: ExporterSpec | None, types: Sequence[str], base: str
) -> Callable[[dict[str, Any]], None] | None:
    """What the trainer calls with the base model's config before training: refuses a model the
    exporter cannot write, so ``gguf=`` fails before the run rather than after it."""
    if exporter is None or not types:
        return None

    def check(config: dict[str, Any]) -> None:
        reason = exporter.accepts(config)
        if reason:
            raise UnsupportedOption(
                f"cannot export {base!r} to GGUF ({', '.join(types)}): {reason}; "
                "fine-tune without --gguf (gguf=) and run the folder on the hf backend"
            )

    return check


def _gguf_types(gguf: Sequence[str] | str) -> list[str]:
    if isinstance(gguf, str):
        gguf = [gguf]
    out: list[str] = []
    for kind in gguf:
        if not isinstance(kind, str) or not kind:
            raise InvalidConfig(f"gguf types must be names such as 'q8_0', got {kind!r}")
        if kind.lower() not in out:
            out.append(kind.lower())
    return out
