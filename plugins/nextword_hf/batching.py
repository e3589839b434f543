"""Concurrent ``generate`` calls on one hf generator, run as left-padded batches (``batching="fast"``).

Each call becomes a :class:`GenerationRequest` (its prompts, its decoding options, the caller's
cancel scope). A :class:`~nextword._runtime.scheduler.StepScheduler` hands the requests that are waiting
when the model becomes free to one thread, which runs them through :func:`plan_batches`: prompts
whose options allow one ``model.generate`` call share a left-padded batch; the others run in
batches of their own, one after another.

What can share a batch: the same decoding options apart from ``seed`` and the token budget
(every prompt keeps its own random generator and its own budget, see
:class:`~nextword_hf.generator.HFGenerator`). With ``repetition_penalty`` or
``no_repeat_ngram_size`` set, only prompts of the same length share a batch: transformers
counts left padding as tokens for both.

Why it is not the default: measured on CPU (torch 2.13), a prompt's logits in a batch of
several differ from its logits alone in the last bits (about 1e-6 to 1e-5), even when the other
rows are copies of it; ``batching="exact"`` therefore runs each prompt on its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Sequence

from nextword.backend import CancelScope, DecodingConfig

__all__ = ["BATCH_MODES", "MAX_BATCH_ROWS", "GenerationRequest", "Prompt", "batch_key", "plan_batches"]

BATCH_MODES = ("exact", "fast")

#: Most sequences (prompts x ``num_return_sequences``) in one ``model.generate`` call.
MAX_BATCH_ROWS = 16


class Prompt:
    """One prompt of a request: its ids, its token budget and, once run, its sequences."""

    __slots__ = ("ids", "n_new", "rows")

    def __init__(self, ids: Sequence[int], n_new: int) -> None:
        self.ids = list(ids)
        self.n_new = n_new
        self.rows: list[list[int]] | None = None


class GenerationRequest:
    """One ``generate_ids`` call waiting for the model. After execution, every prompt has its
    rows, or :attr:`error` is set. :attr:`scope` is the caller's cancel scope (a cancelled
    caller's rows stop at the next token; the others go on)."""

    __slots__ = ("config", "error", "prompts", "scope")

    def __init__(self, prompts_ids: Sequence[Sequence[int]], config: DecodingConfig, n_new: Sequence[int]) -> None:
        self.config = config
        self.prompts = [Prompt(ids, n) for ids, n in zip(prompts_ids, n_new, strict=True)]
        self.scope = CancelScope.nested()
        self.error: BaseException | None = None


def batch_key(config: DecodingConfig, n_prompt: int) -> Hashable:
    """Prompts with equal keys may share a ``generate`` call."""
    shared = dataclasses.replace(config, seed=None, max_new_tokens=None, max_length=None)
    if config.repetition_penalty != 1.0 or config.no_repeat_ngram_size:
        return (shared, n_prompt)
    return (shared, None)


def plan_batches(
    requests: Sequence[GenerationRequest], max_rows: int = MAX_BATCH_ROWS
) -> list[list[tuple[GenerationRequest, Prompt]]]:
    """The prompts of ``requests`` as batches: grouped by :func:`batch_key` in order of first
    arrival, each batch at most ``max_rows`` sequences (but at least one prompt)."""
    groups: dict[Hashable, list[tuple[GenerationRequest, Prompt]]] = {}
    for request in requests:
        for prompt in request.prompts:
            groups.setdefault(batch_key(request.config, len(prompt.ids)), []).append((request, prompt))
    batches: list[list[tuple[GenerationRequest, Prompt]]] = []
    for members in groups.values():
        per = members[0][0].config.num_return_sequences
        size = max(1, max_rows // per)
        batches.extend(members[i : i + size] for i in range(0, len(members), size))
    return batches
