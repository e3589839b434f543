"""KV-cache sessions and batched branches on a transformers model (the hf backend's
``open_session`` and ``open_branches``)."""

from __future__ import annotations

import collections
import copy
import threading
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch

from nextword import (
    InvalidInput,
)
from nextword.backend import prompt_blocks

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


class PromptStates:
    """KV caches of prompts evaluated in the blocks of :func:`nextword.backend.prompt_blocks`,
    kept at block ends (least recently used first out, past ``budget_bytes``).

    :meth:`evaluate` reads a prompt from the last kept block end that starts it, one forward
    pass per remaining block: a prompt that extends a kept one by a word costs one short pass,
    and its numbers are those of the prompt evaluated alone in the same blocks. The state at
    every block end read is kept. ``evaluated_tokens`` counts the tokens the model read here.
    """

    def __init__(self, budget_bytes: int = 64 << 20) -> None:
        self._budget = budget_bytes
        self._kept: collections.OrderedDict[tuple[int, ...], tuple[Any, npt.NDArray[np.float32], int]] = (
            collections.OrderedDict()
        )
        self._held = 0
        self._lock = threading.Lock()
        self.evaluated_tokens = 0

    def evaluate(self, generator: HFGenerator, ids: list[int]) -> tuple[Any, npt.NDArray[np.float32]]:
        """(the KV cache after ``ids``, a copy the caller owns; the logits after them). Runs on
        the generator's engine, with its lock held by the caller."""
        ends = prompt_blocks(len(ids))
        start, past, root = 0, None, None
        with self._lock:
            for end in reversed(ends):
                hit = self._kept.get(tuple(ids[:end]))
                if hit is not None:
                    self._kept.move_to_end(tuple(ids[:end]))
                    start, past, root = end, copy.deepcopy(hit[0]), hit[1]
                    break
        begin = start
        for end in ends:
            if end <= start:
                continue
            out = generator._on_engine(partial(_forward, generator, ids[begin:end], past))
            past = out[generator.cache_kwarg]
            root = out.logits[0, -1].float().cpu().numpy()
            self.evaluated_tokens += end - begin
            self._keep(tuple(ids[:end]), past, root)
            begin = end
        assert root is not None
        return past, root

    def _keep(self, key: tuple[int, ...], past: Any, root: npt.NDArray[np.float32]) -> None:
        size = _cache_bytes(past) + root.nbytes
        if size > self._budget:
            return
        with self._lock:
            old = self._kept.pop(key, None)
            if old is not None:
                self._held -= old[2]
            self._kept[key] = (copy.deepcopy(past), root, size)
            self._held += size
            while self._held > self._budget:
                _, (_, _, freed) = self._kept.popitem(last=False)
                self._held -= freed

    def clear(self) -> None:
        """Forget every kept state."""
        with self._lock:
            self._kept.clear()
            self._held = 0


def _forward(generator: HFGenerator, ids: list[int], past: Any) -> Any:
    """The model's output for ``ids`` after the cache ``past`` (None: from the start)."""
    chunk = torch.tensor([ids], device=generator.device)
    return generator.hf_model(input_ids=chunk, use_cache=True, **{generator.cache_kwarg: past})


def _cache_bytes(past: Any) -> int:
    """The bytes of a transformers cache's key and value tensors (0 where its layout is unknown)."""
    total = 0
    for layer in getattr(past, "layers", ()):
        for name in ("keys", "values"):
            tensor = getattr(layer, name, None)
            if isinstance(tensor, torch.Tensor):
                total += tensor.nelement() * tensor.element_size()
    return total


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
                self._past, self._root = gen.prompt_states.evaluate(gen, self._prompt)
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
