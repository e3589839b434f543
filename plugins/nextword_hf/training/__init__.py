"""The hf plugin's fine-tuning engine (registered through the ``register_trainers`` hook).

:func:`train` loads the base model with transformers, tokenizes and packs the corpus, measures the
held-out loss, trains (LoRA through peft, or every weight), and writes an ordinary model folder.
"""

from __future__ import annotations

from typing import Any

from nextword.backend import TrainingJob, TrainingOutcome, overfit_warning

__all__ = ["train"]


def train(job: TrainingJob) -> TrainingOutcome:
    """Run ``job`` (see :class:`~nextword._tuning.TrainingJob`) and return what it measured."""
    import peft
    import torch
    import transformers

    from nextword_hf.gguf_cache import default_cache_dir
    from nextword_hf.training.data import prepare_blocks
    from nextword_hf.training.loop import Schedule, train_loop
    from nextword_hf.training.model import load_base, pick_device, prepare_model, save_folder

    opts = job.options
    if opts.threads is not None:
        torch.set_num_threads(opts.threads)
    device = pick_device(opts.device)
    # A .gguf base is converted once and kept, as the hf backend does with its default option.
    tokenizer, model = load_base(job.base, device, gguf_cache=default_cache_dir())
    if job.check_model is not None:
        job.check_model(model.config.to_dict())
    blocks = prepare_blocks(
        tokenizer, list(job.documents), block_size=opts.block_size, fraction=opts.validation, seed=opts.seed
    )
    # Training needs no key/value cache (transformers' Trainer turns it off too); the saved
    # config keeps the base model's setting.
    had_use_cache = hasattr(model.config, "use_cache")
    use_cache = getattr(model.config, "use_cache", None)
    model.config.use_cache = False
    torch.manual_seed(opts.seed)
    model = prepare_model(model, opts)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_total = sum(p.numel() for p in model.parameters())
    fingerprint: dict[str, Any] = {"base": job.base, "data": job.data_hash, "options": opts.training_fields()}
    loop = train_loop(model, blocks.train, blocks.validation, job, device, fingerprint)
    if had_use_cache:
        model.config.use_cache = use_cache
    else:
        del model.config.use_cache
    save_folder(model, tokenizer, opts, job.model_dir)
    warnings = list(blocks.notes)
    schedule = Schedule(len(blocks.train), opts)
    overfit = overfit_warning(blocks.train_tokens, schedule.passes(), n_trainable)
    if overfit:
        warnings.append(overfit)
    return TrainingOutcome(
        base_loss=loop.base_loss,
        final_loss=loop.best_loss,
        steps=loop.steps,
        tokens_seen=loop.tokens_seen,
        seconds=loop.seconds,
        train_tokens=blocks.train_tokens,
        validation_tokens=blocks.validation_tokens,
        train_blocks=len(blocks.train),
        validation_documents=blocks.validation_documents,
        trainable_parameters=n_trainable,
        total_parameters=n_total,
        best_step=loop.best_step,
        stopped_early=loop.stopped_early,
        history=tuple(loop.history),
        warnings=tuple(warnings),
        engine={"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
    )
