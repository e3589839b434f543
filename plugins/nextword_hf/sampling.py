"""Sampling on transformers' warpers with one random generator per prompt, as nextword's
batches need (each prompt's draws equal those of the prompt alone)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
)

from nextword import (
    DecodingConfig,
)


def random_generator(seed: int | None, device: torch.device) -> torch.Generator:
    """A prompt's own random generator: seeded with ``seed``, or from fresh entropy when None."""
    random = torch.Generator(device=device)
    if seed is None:
        random.seed()  # fresh entropy: unseeded calls differ from each other
    else:
        random.manual_seed(seed)
    return random


def sampling_processors(
    config: DecodingConfig, device: torch.device, randoms: Sequence[torch.Generator] | None = None
) -> LogitsProcessorList:
    """For sampling: transformers' own warpers for the sampling options, in transformers' order,
    then :class:`OwnRandomChoice`, so each prompt draws from its own random generator
    (``randoms``, one per prompt of the batch in order; default: one new generator).

    transformers draws with ``torch.multinomial`` on torch's process-wide generator, which any
    other thread (another hf generator, the application) also advances: seeded samples would not
    be reproducible under concurrency. Here the draw happens in the last processor, which leaves
    only the chosen token possible, so transformers' own draw can only return that token."""
    if not config.sampling:
        return LogitsProcessorList()
    processors: list[LogitsProcessor] = []
    if config.temperature is not None and config.temperature != 1.0:
        processors.append(TemperatureLogitsWarper(config.temperature))
    if config.top_k:
        processors.append(TopKLogitsWarper(top_k=config.top_k))
    if config.top_p is not None and config.top_p < 1.0:
        processors.append(TopPLogitsWarper(top_p=config.top_p))
    if config.min_p:
        processors.append(MinPLogitsWarper(min_p=config.min_p))
    if config.typical_p is not None and config.typical_p < 1.0:
        processors.append(TypicalLogitsWarper(mass=config.typical_p))
    processors.append(OwnRandomChoice(list(randoms) if randoms else [random_generator(config.seed, device)]))
    return LogitsProcessorList(processors)


class OwnRandomChoice(LogitsProcessor):
    """Draws each row's next token from the warped scores (the same draw transformers makes:
    multinomial over the softmax) and keeps only that token. The rows are split evenly among
    ``randoms`` in order (a prompt's ``num_return_sequences`` rows share its generator), and
    each generator draws for its own rows only, so a prompt's draws do not depend on the other
    prompts of its batch."""

    def __init__(self, randoms: Sequence[torch.Generator]) -> None:
        self.randoms = randoms

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        probs = torch.softmax(scores.float(), dim=-1)
        per = probs.shape[0] // len(self.randoms)
        chosen = torch.cat(
            [
                torch.multinomial(probs[i * per : (i + 1) * per], num_samples=1, generator=random)
                for i, random in enumerate(self.randoms)
            ]
        )
        only = torch.full_like(scores, -float("inf"))
        return only.scatter_(1, chosen, 0.0)  # type: ignore[return-value]
