"""KV-cache sessions and batched branches on a transformers model (the hf backend's
``open_session`` and ``open_branches``)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch

from nextword import (
    InvalidInput,
)

if TYPE_CHECKING:
    from nextword_hf.generator import HFGenerator


class KVSession:
    """The model's KV cache after a token sequence; tokens fed are evaluated lazily, together,
    at the next :meth:`logits` call."""

    def __init__(self, generator: HFGenerator, prompt_ids: Sequence[int]) -> None:
        self._generator = generator
        self._pending = list(prompt_ids)
        self._past: Any = None
        self._logits: npt.NDArray[np.floating] | None = None

    @torch.inference_mode()
    def logits(self) -> npt.NDArray[np.floating]:
        if self._pending or self._logits is None:
            gen = self._generator
            ids = torch.tensor([self._pending], device=gen.device)
            out = gen._on_engine(lambda: gen.hf_model(input_ids=ids, use_cache=True, **{gen.cache_kwarg: self._past}))
            self._past = out[gen.cache_kwarg]
            self._logits = out.logits[0, -1].float().cpu().numpy()
            self._pending = []
        return self._logits

    def feed(self, token_id: int) -> None:
        self._pending.append(token_id)
        self._logits = None

    def fork(self) -> KVSession:
        """An independent copy of this state (its KV cache copied, not recomputed)."""
        logits = self.logits()
        other = KVSession(self._generator, [])
        other._past = copy.deepcopy(self._past)
        other._logits = logits
        return other


class HFBranches:
    """The prompt's KV cache, from which continuations are evaluated in one batched forward
    pass (see :class:`nextword._decoding.branches.Branches`)."""

    def __init__(self, generator: HFGenerator, prompt_ids: list[int]) -> None:
        if not prompt_ids:
            raise InvalidInput("at least one prompt token id is needed")
        self._generator = generator
        self._prompt = prompt_ids
        self._past: Any = None
        self._root: npt.NDArray[np.floating] | None = None

    @torch.inference_mode()
    def logits(self, paths: Sequence[Sequence[int]]) -> npt.NDArray[np.floating]:
        gen = self._generator
        rows = [gen.check_token_ids([*self._prompt, *p])[len(self._prompt) :] for p in paths]
        with gen._lock:
            if self._past is None:
                ids = torch.tensor([self._prompt], device=gen.device)
                out = gen._on_engine(lambda: gen.hf_model(input_ids=ids, use_cache=True))
                self._past = out[gen.cache_kwarg]
                self._root = out.logits[0, -1].float().cpu().numpy()
            assert self._root is not None
            result = np.empty((len(rows), self._root.shape[-1]), dtype=np.float32)
            todo = [i for i, r in enumerate(rows) if r]
            for i, r in enumerate(rows):
                if not r:
                    result[i] = self._root
            if todo:
                result[todo] = self._forward([rows[i] for i in todo])
        return result

    def _forward(self, rows: list[list[int]]) -> npt.NDArray[np.float32]:
        """Logits after each row (one forward pass, rows right-padded, the prompt's cache copied
        once per row)."""
        gen = self._generator
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), gen._pad, dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, : len(r)] = torch.tensor(r)
        past = copy.deepcopy(self._past)
        if len(rows) > 1:
            past.batch_repeat_interleave(len(rows))
        kwargs: dict[str, Any] = {gen.cache_kwarg: past, "use_cache": True}
        if any(len(r) != width for r in rows):
            mask = torch.zeros((len(rows), len(self._prompt) + width), dtype=torch.long)
            for i, r in enumerate(rows):
                mask[i, : len(self._prompt) + len(r)] = 1
            kwargs["attention_mask"] = mask.to(gen.device)
        out = gen._on_engine(lambda: gen.hf_model(input_ids=input_ids.to(gen.device), **kwargs))
        last = torch.tensor([len(r) - 1 for r in rows], device=out.logits.device)
        picked = out.logits[torch.arange(len(rows), device=out.logits.device), last]
        return picked.float().cpu().numpy()

    def close(self) -> None:
        self._past = None
        self._root = None
