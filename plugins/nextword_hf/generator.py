"""``HFGenerator``: nextword's Generator on a transformers causal LM.

Generation runs transformers' own ``model.generate`` (its logits processors implement every
decoding option natively); stop strings use nextword's shared stop handling. Streaming runs
``generate`` in a worker thread and hands tokens over a queue.
"""

from __future__ import annotations

import copy
import inspect
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from nextword import (
    BackendSpec,
    BaseGenerator,
    DecodingConfig,
    InvalidConfig,
    InvalidInput,
    ModelLoadError,
    NextwordError,
)
from nextword.cpu import default_threads
from nextword.errors import Cancelled
from nextword.scheduler import CancelScope
from nextword.validation import check_length, utf8_bytes
from nextword_hf.loading import load_pretrained, locate
from nextword_hf.token_bytes import TokenBytes

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when available; anything else must be a device torch knows and has."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise InvalidConfig(f"hf option 'device' must be cpu, cuda, cuda:N or auto, got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidConfig("hf option device='cuda' was asked for, but torch sees no CUDA device here")
    return dev


def _plugin_spec() -> BackendSpec:
    """The plugin's declaration, for a generator loaded directly rather than through nextword."""
    from nextword_hf.plugin import SPEC

    return SPEC


class HFGenerator(BaseGenerator):
    """A transformers causal LM behind nextword's API."""

    def __init__(
        self, model: str, tokenizer: Any, hf_model: Any, options: dict[str, Any], *, spec: BackendSpec
    ) -> None:
        """Wrap a loaded tokenizer and model (use :meth:`load` to make them); ``spec`` is the
        backend's declaration (:data:`nextword_hf.plugin.SPEC`)."""
        super().__init__(model, options, spec=spec)
        self.tokenizer = tokenizer
        self._token_bytes = TokenBytes(tokenizer)
        self._hf_model = hf_model
        self._closed = False
        self.device = next(hf_model.parameters()).device
        gen_cfg = getattr(hf_model, "generation_config", None)
        eos = getattr(gen_cfg, "eos_token_id", None)
        if eos is None:
            eos = tokenizer.eos_token_id
        self._eos = frozenset([eos] if isinstance(eos, int) else (eos or []))
        self._pad = tokenizer.pad_token_id
        if self._pad is None:
            self._pad = min(self._eos) if self._eos else 0
        self._n_ctx = _context_length(hf_model.config, tokenizer)
        # transformers renamed `past_key_values` to `cache` (in forward's arguments and outputs).
        forward_args = inspect.signature(type(hf_model).forward).parameters
        self.cache_kwarg = "cache" if "cache" in forward_args else "past_key_values"
        self._lock = threading.Lock()

    @property
    def hf_model(self) -> Any:
        """The transformers model; :class:`~nextword.NextwordError` once the generator is closed."""
        if self._closed:
            raise NextwordError(f"this {self.backend} generator for {self.model!r} was closed; load the model again")
        return self._hf_model

    @classmethod
    def load(
        cls,
        model: str,
        *,
        device: str = "auto",
        dtype: str = "float32",
        threads: int | None = None,
        cache: str = "dynamic",
        spec: BackendSpec | None = None,
    ) -> HFGenerator:
        """Load ``model`` (hub id, local folder or .gguf file) on ``device`` in ``dtype``;
        ``cache="static"`` makes ``generate`` use a preallocated KV cache. Without ``threads``,
        torch's thread count is lowered to :func:`nextword.cpu.default_threads` where it is
        higher (torch counts the machine's cores, not the process's affinity or cgroup quota).
        ``spec`` is the backend's declaration the generator reports (default: the plugin's own,
        as ``nextword.load("hf", ...)`` passes it)."""
        if threads:
            torch.set_num_threads(threads)
        elif torch.get_num_threads() > default_threads():
            torch.set_num_threads(default_threads())
        dev = resolve_device(device)
        if dtype == "auto":
            torch_dtype = torch.float16 if dev.type == "cuda" else torch.float32
        else:
            torch_dtype = _DTYPES[dtype]
        tokenizer, hf_model = load_pretrained(locate(model), dtype=torch_dtype, device=str(dev))
        options = {"device": device, "dtype": dtype, "threads": threads or torch.get_num_threads(), "cache": cache}
        return cls(model, tokenizer, hf_model, options, spec=spec or _plugin_spec())

    # ---- primitives -------------------------------------------------------------------------

    @property
    def context_length(self) -> int:
        return self._n_ctx

    @property
    def eos_token_ids(self) -> frozenset[int]:
        return self._eos

    def tokenize(self, text: str) -> list[int]:
        utf8_bytes(text)  # invalid Unicode is refused the same way on every backend
        return list(self.tokenizer(text, split_special_tokens=True)["input_ids"])

    def token_bytes(self, token_id: int) -> bytes | None:
        """The bytes ``token_id`` adds to a text (a split character's share included), or None
        for a special token or an unknown id."""
        return self._token_bytes(token_id)

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return str(
            self.tokenizer.decode(list(token_ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)
        )

    @torch.inference_mode()
    def next_token_logits(self, token_ids: Sequence[int]) -> npt.NDArray[np.floating]:
        ids = torch.tensor([list(token_ids)], device=self.device)
        logits = self.hf_model(input_ids=ids).logits[0, -1]
        return logits.float().cpu().numpy()

    def open_session(self, prompt_ids: Sequence[int]) -> _KVSession:
        """A KV-cache state: each :meth:`~_KVSession.feed` costs one token of compute."""
        return _KVSession(self, prompt_ids)

    def open_branches(self, prompt_ids: Sequence[int]) -> _Branches:
        """Continuations of ``prompt_ids`` evaluated together: one forward pass of all the
        paths (right-padded) over copies of the prompt's KV cache (see
        :mod:`nextword.decoding.branches`)."""
        ids = self._checked_ids(prompt_ids)
        return _Branches(self, ids)

    def _checked_ids(self, token_ids: Sequence[int], *, extra: int = 0) -> list[int]:
        """``token_ids`` as ints within the vocabulary; with ``extra`` more, within the context."""
        try:
            ids = [int(t) for t in token_ids]
        except (TypeError, ValueError):
            raise InvalidInput("token ids must be a sequence of integers") from None
        n_vocab = int(self.hf_model.get_output_embeddings().weight.shape[0])
        bad = next((t for t in ids if not 0 <= t < n_vocab), None)
        if bad is not None:
            raise InvalidInput(f"token id {bad} is outside the vocabulary (0 to {n_vocab - 1})")
        check_length(len(ids) - extra, extra, self._n_ctx)
        return ids

    @torch.inference_mode()
    def sequence_logits(self, token_ids: Sequence[int]) -> npt.NDArray[np.float32]:
        """Raw logits after every prefix of ``token_ids`` in one forward pass: row ``i`` is the
        distribution after ``token_ids[: i + 1]`` (shape ``(len(token_ids), vocab)``, float32)."""
        ids = torch.tensor([list(token_ids)], device=self.device)
        return self.hf_model(input_ids=ids).logits[0].float().cpu().numpy()

    @torch.inference_mode()
    def token_logprobs(self, token_ids: Sequence[int]) -> list[float]:
        ids = torch.tensor([list(token_ids)], device=self.device)
        logits = self.hf_model(input_ids=ids).logits[0, :-1].float()
        logp = torch.log_softmax(logits, dim=-1)
        return logp.gather(1, ids[0, 1:, None])[:, 0].double().cpu().tolist()

    # ---- generation on transformers' generate -------------------------------------------------

    def generate_ids(
        self, prompts_ids: Sequence[Sequence[int]], config: DecodingConfig, n_new: Sequence[int]
    ) -> list[list[Iterable[int]]]:
        """Greedy prompts run as left-padded batches (grouped by token budget); seeded sampling
        runs prompt by prompt, each from the seed, so a batch equals the prompts one by one."""
        out: list[list[Iterable[int]] | None] = [None] * len(prompts_ids)
        if (config.sampling and config.seed is not None) or config.no_repeat_ngram_size:
            # Seeded samples must not depend on batch neighbours; and transformers' n-gram ban
            # counts the left padding as tokens, so padded prompts would be treated differently.
            groups = [[i] for i in range(len(prompts_ids))]
        else:
            by_budget: dict[int, list[int]] = {}
            for i, n in enumerate(n_new):
                by_budget.setdefault(n, []).append(i)
            groups = list(by_budget.values())
        for group in groups:
            rows = self._generate_batch([prompts_ids[i] for i in group], config, n_new[group[0]])
            per = config.num_return_sequences
            for j, i in enumerate(group):
                out[i] = list(rows[j * per : (j + 1) * per])
        return [o if o is not None else [] for o in out]

    def token_stream(
        self, prompt_ids: Sequence[int], config: DecodingConfig, n_new: int, rng: np.random.Generator
    ) -> Iterator[int]:
        """Tokens as ``model.generate`` produces them (in a worker thread); closing the iterator
        stops the worker at its next step."""
        if n_new == 0:
            return iter(())
        tokens: queue.Queue[Any] = queue.Queue()
        cancel = threading.Event()
        done = object()

        def work() -> None:
            try:
                self._run_generate(
                    [prompt_ids], config, n_new, streamer=_QueueStreamer(tokens), extra_stop=_Cancelled(cancel)
                )
                tokens.put(done)
            except BaseException as exc:  # re-raised in the consumer's thread
                tokens.put(exc)

        thread = threading.Thread(target=work, name="nextword-hf-generate", daemon=True)

        def consume() -> Iterator[int]:
            thread.start()
            try:
                while True:
                    item = tokens.get()
                    if item is done:
                        return
                    if isinstance(item, BaseException):
                        raise item
                    yield item
            finally:
                cancel.set()
                thread.join()

        return consume()

    def _generate_batch(self, batch: Sequence[Sequence[int]], config: DecodingConfig, n_new: int) -> list[list[int]]:
        if n_new == 0:
            return [[] for _ in range(len(batch) * config.num_return_sequences)]
        sequences, width = self._run_generate(batch, config, n_new)
        rows = []
        for row in sequences[:, width:].tolist():
            end = next((k + 1 for k, t in enumerate(row) if t in self._eos), len(row))
            rows.append(row[:end])
        return rows

    @torch.inference_mode()
    def _run_generate(
        self,
        batch: Sequence[Sequence[int]],
        config: DecodingConfig,
        n_new: int,
        *,
        streamer: BaseStreamer | None = None,
        extra_stop: StoppingCriteria | None = None,
    ) -> tuple[torch.Tensor, int]:
        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), self._pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, ids in enumerate(batch):
            input_ids[i, width - len(ids) :] = torch.tensor(list(ids))
            mask[i, width - len(ids) :] = 1
        scope = CancelScope.nested()  # cancelled with the caller's scope (an asyncio task)
        criteria = StoppingCriteriaList([_Cancelled(scope)])
        if config.stop:
            criteria.append(_StopStrings(self, config.stop, width))
        if extra_stop is not None:
            criteria.append(extra_stop)
        with self._lock:
            if config.sampling and config.seed is not None:
                torch.manual_seed(config.seed)
            out = self.hf_model.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=mask.to(self.device),
                generation_config=self._generation_config(config, n_new),
                stopping_criteria=criteria,
                streamer=streamer,
            )
        if scope.cancelled:
            raise Cancelled("the generation was cancelled")
        return out, width

    def _generation_config(self, config: DecodingConfig, n_new: int) -> GenerationConfig:
        sampling = config.sampling
        kwargs: dict[str, Any] = {
            "max_new_tokens": n_new,
            "min_new_tokens": config.min_new_tokens or None,
            "do_sample": sampling,
            "repetition_penalty": config.repetition_penalty,
            "no_repeat_ngram_size": config.no_repeat_ngram_size,
            "num_return_sequences": config.num_return_sequences,
            "pad_token_id": self._pad,
            "eos_token_id": sorted(self._eos) or None,
            "num_beams": 1,
        }
        if self.settings.options.get("cache") == "static":
            kwargs["cache_implementation"] = "static"
        if sampling:
            # Explicit neutral values, so a model's own generation_config.json defaults
            # (e.g. top_k=64) never leak into nextword's semantics.
            kwargs.update(
                temperature=config.temperature if config.temperature is not None else 1.0,
                top_k=config.top_k or 0,
                top_p=config.top_p if config.top_p is not None else 1.0,
                min_p=config.min_p if config.min_p is not None else 0.0,
                typical_p=config.typical_p if config.typical_p is not None else 1.0,
            )
        return GenerationConfig(**kwargs)

    def close(self) -> None:
        self._closed = True
        self._hf_model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


class _KVSession:
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
            out = gen.hf_model(input_ids=ids, use_cache=True, **{gen.cache_kwarg: self._past})
            self._past = out[gen.cache_kwarg]
            self._logits = out.logits[0, -1].float().cpu().numpy()
            self._pending = []
        return self._logits

    def feed(self, token_id: int) -> None:
        self._pending.append(token_id)
        self._logits = None

    def fork(self) -> _KVSession:
        """An independent copy of this state (its KV cache copied, not recomputed)."""
        logits = self.logits()
        other = _KVSession(self._generator, [])
        other._past = copy.deepcopy(self._past)
        other._logits = logits
        return other


class _Branches:
    """The prompt's KV cache, from which continuations are evaluated in one batched forward
    pass (see :class:`nextword.decoding.branches.Branches`)."""

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
        rows = [gen._checked_ids([*self._prompt, *p], extra=len(p))[len(self._prompt) :] for p in paths]
        with gen._lock:
            if self._past is None:
                ids = torch.tensor([self._prompt], device=gen.device)
                out = gen.hf_model(input_ids=ids, use_cache=True)
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
        out = gen.hf_model(input_ids=input_ids.to(gen.device), **kwargs)
        last = torch.tensor([len(r) - 1 for r in rows], device=out.logits.device)
        picked = out.logits[torch.arange(len(rows), device=out.logits.device), last]
        return picked.float().cpu().numpy()

    def close(self) -> None:
        self._past = None
        self._root = None


class _QueueStreamer(BaseStreamer):
    """Receives tokens from ``generate`` and puts them on a queue (skipping the prompt)."""

    def __init__(self, tokens: queue.Queue[Any]) -> None:
        self.tokens = tokens
        self.seen_prompt = False

    def put(self, value: torch.Tensor) -> None:
        if not self.seen_prompt:
            self.seen_prompt = True
            return
        for token in value.reshape(-1).tolist():
            self.tokens.put(int(token))

    def end(self) -> None:
        pass


class _Cancelled(StoppingCriteria):
    """Stops generation once the consumer has gone away or the call was cancelled."""

    def __init__(self, flag: threading.Event | CancelScope) -> None:
        self.flag = flag

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        stop = self.flag.is_set() if isinstance(self.flag, threading.Event) else self.flag.cancelled
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


class _StopStrings(StoppingCriteria):
    """Ends a row once its generated text contains a stop string (nextword cuts the text after)."""

    def __init__(self, generator: HFGenerator, stops: Sequence[str], prompt_width: int) -> None:
        self.generator = generator
        self.stops = stops
        self.width = prompt_width

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        texts = [self.generator.detokenize(row) for row in input_ids[:, self.width :].tolist()]
        hits = [any(s in t for s in self.stops) for t in texts]
        return torch.tensor(hits, dtype=torch.bool, device=input_ids.device)


def _context_length(config: Any, tokenizer: Any) -> int:
    for name in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 10**9:
        return limit
    raise ModelLoadError("cannot tell the model's context length from its config")
