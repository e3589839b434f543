"""``HFGenerator``: nextword's Generator on a transformers causal LM.

Generation runs transformers' own ``model.generate`` (its logits processors implement every
decoding option natively); stop strings use nextword's shared stop handling. Streaming runs
``generate`` in a worker thread and hands tokens over a queue.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import torch
from transformers import (
    GenerationConfig,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.generation.streamers import BaseStreamer

from nextword import (
    BackendSpec,
    BaseGenerator,
    DecodingConfig,
    InvalidConfig,
    InvalidState,
    ModelLoadError,
)
from nextword.backend import CancelScope, EngineThread, StepScheduler, default_threads, utf8_bytes
from nextword.errors import Cancelled
from nextword_hf.batching import BATCH_MODES, MAX_BATCH_ROWS, GenerationRequest, Prompt, plan_batches
from nextword_hf.gguf_cache import resolve as resolve_gguf_cache
from nextword_hf.loading import load_pretrained, locate
from nextword_hf.sampling import random_generator, sampling_processors
from nextword_hf.sessions import HFBranches, KVSession, PromptStates
from nextword_hf.streaming import CancelledCriterion, PausableStream, RowBudgets, StopStrings
from nextword_hf.token_bytes import TokenBytes

T = TypeVar("T")

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


class HFGenerator(BaseGenerator):
    """A transformers causal LM behind nextword's API.

    Calls from many threads are safe. With the load option ``batching="exact"`` (the default)
    generations take turns on the model, each prompt on its own, so a result never depends on
    what else runs. With ``batching="fast"``, concurrent ``generate`` calls (and the prompts of a
    list) whose options allow it run together as one left-padded batch
    (:mod:`nextword_hf.batching`); their logits then differ from a call alone in the last bits.
    """

    def __init__(
        self,
        model: str,
        tokenizer: Any,
        hf_model: Any,
        options: dict[str, Any],
        *,
        spec: BackendSpec,
        engine: EngineThread | None = None,
    ) -> None:
        """Wrap a loaded tokenizer and model (use :meth:`load` to make them); ``spec`` is the
        backend's declaration (:data:`nextword_hf.plugin.SPEC`); ``engine`` the thread that runs
        the model (a new one by default)."""
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
        self._prompt_states = PromptStates()
        # Every forward pass runs on one thread, the same for every OpenMP engine of the process
        # (one OpenMP team): see nextword._runtime.engine_thread for why.
        self._engine = engine or EngineThread("nextword-hf", shared="openmp")
        self._batching = str(options.get("batching", "exact"))
        self._scheduler: StepScheduler[GenerationRequest] = StepScheduler(self._execute, max_group=MAX_BATCH_ROWS)

    @property
    def hf_model(self) -> Any:
        """The transformers model; :class:`~nextword.InvalidState` once the generator is closed."""
        if self._closed:
            raise InvalidState(f"this {self.backend} generator for {self.model!r} was closed; load the model again")
        return self._hf_model

    # ---- seams for diagnostics and tests -----------------------------------------------------

    @property
    def scheduler(self) -> StepScheduler[GenerationRequest]:
        """The step scheduler that groups concurrent generations into batches (its ``queued``,
        ``busy`` and ``stats``)."""
        return self._scheduler

    @property
    def batching(self) -> str:
        """``"exact"`` (concurrent generations one after another) or ``"fast"`` (batched)."""
        return self._batching

    @property
    def prompt_states(self) -> PromptStates:
        """The KV caches of the prompts word searches start from (``open_branches``), kept at the
        ends of their blocks (:func:`nextword.backend.prompt_blocks`): a prompt that extends a kept
        one is read from there. ``evaluated_tokens`` counts the tokens read."""
        return self._prompt_states

    def reset_cache(self) -> None:
        """Forget the kept prompt states (the next word search reads its prompt in full)."""
        self._prompt_states.clear()

    @contextlib.contextmanager
    def holding_engine(self) -> Iterator[None]:
        """Hold the model for the block: no forward pass runs until it ends, so concurrent calls
        made meanwhile queue up and reach the scheduler together."""
        with self._lock:
            yield

    def batch_step_logits(self, prompts_ids: Sequence[Sequence[int]], n_new: int) -> list[np.ndarray]:
        """Diagnostics for the ``fast`` batching bound: the raw logits of each of ``n_new`` greedy
        steps when the prompts are decoded together in one left-padded batch, as the batching
        schedule runs them (one float64 array of shape ``(len(prompts_ids), vocab)`` per step)."""
        batch = [self.check_token_ids(ids, room=n_new) for ids in prompts_ids]
        steps: list[np.ndarray] = []

        def keep(input_ids: Any, scores: Any) -> Any:
            steps.append(scores.double().numpy())
            return scores

        self._run_generate(batch, DecodingConfig(max_new_tokens=n_new), n_new, LogitsProcessorList([keep]))
        return steps

    @classmethod
    def load(
        cls,
        model: str,
        *,
        device: str = "auto",
        dtype: str = "float32",
        threads: int | None = None,
        cache: str = "dynamic",
        batching: str = "exact",
        gguf_cache: str = "default",
        spec: BackendSpec,
    ) -> HFGenerator:
        """Load ``model`` (hub id, local folder or .gguf file) on ``device`` in ``dtype``;
        ``cache="static"`` makes ``generate`` use a preallocated KV cache. ``batching="fast"``
        runs concurrent generations as one batch (see the class). ``gguf_cache`` ("default",
        "off" or a folder): where the float32 conversion of a ``.gguf`` file is kept for the next
        load (:mod:`nextword_hf.gguf_cache`). Without ``threads``,
        torch's thread count is lowered to :func:`nextword._runtime.cpu.default_threads` where it is
        higher (torch counts the machine's cores, not the process's affinity or cgroup quota).
        ``spec`` is the backend's declaration the generator reports: the plugin passes its own
        (:data:`nextword_hf.plugin.SPEC`; ``SPEC.load(model, **options)`` loads a generator
        without nextword's cache). This module never imports the plugin module."""
        if batching not in BATCH_MODES:
            raise InvalidConfig(f"hf option 'batching' must be one of {', '.join(BATCH_MODES)}, got {batching!r}")
        if threads:
            torch.set_num_threads(threads)
        elif torch.get_num_threads() > default_threads():
            torch.set_num_threads(default_threads())
        dev = resolve_device(device)
        if dtype == "auto":
            torch_dtype = torch.float16 if dev.type == "cuda" else torch.float32
        else:
            torch_dtype = _DTYPES[dtype]
        # Loaded on the thread that will run the model: a thread that does tensor work keeps an
        # OpenMP team, and one team more than the engine's slows every later forward pass.
        engine = EngineThread("nextword-hf", shared="openmp")
        location = locate(model)
        kept = resolve_gguf_cache(gguf_cache)
        tokenizer, hf_model = engine.call(
            lambda: load_pretrained(location, dtype=torch_dtype, device=str(dev), gguf_cache=kept), abandon=True
        )
        options = {
            "device": device,
            "dtype": dtype,
            "threads": threads or torch.get_num_threads(),
            "cache": cache,
            "batching": batching,
            "gguf_cache": gguf_cache,
        }
        generator = cls(model, tokenizer, hf_model, options, spec=spec, engine=engine)
        # The first forward pass after loading does not always give the bits of later ones: on
        # the 2-core CI machine (torch 2.13, 2 threads), a first sequence_logits differed from
        # the same call repeated in 3 and 6 of 14 fresh processes, by up to 2e-4 in a logit,
        # and never with 1 thread. One pass of one token here, and the first call is as every
        # later one (16 of 16).
        try:
            generator.next_token_logits([0])
        except Exception as exc:
            generator.close()
            raise ModelLoadError(f"{model!r} loaded, but a forward pass of one token failed: {exc}") from exc
        return generator

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
        """The bytes ``token_id`` adds to a text (a split character's share included); ``b""``
        for a special token or an id the tokenizer does not know."""
        return self._token_bytes(token_id)

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return str(
            self.tokenizer.decode(list(token_ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)
        )

    def _on_engine(self, fn: Callable[[], T]) -> T:
        """``fn()`` on the generator's engine thread, in inference mode (which is per thread)."""

        def run() -> T:
            with torch.inference_mode():
                return fn()

        return self._engine.call(run)

    def next_token_logits(self, token_ids: Sequence[int]) -> npt.NDArray[np.floating]:
        ids = torch.tensor([list(token_ids)], device=self.device)
        return self._on_engine(lambda: self.hf_model(input_ids=ids).logits[0, -1].float().cpu().numpy())

    def open_session(self, prompt_ids: Sequence[int]) -> KVSession:
        """A KV-cache state: each :meth:`~KVSession.feed` costs one token of compute."""
        return KVSession(self, prompt_ids)

    def open_branches(self, prompt_ids: Sequence[int]) -> HFBranches:
        """Continuations of ``prompt_ids`` evaluated together: one forward pass of all the
        paths (right-padded) over copies of the prompt's KV cache (see
        :mod:`nextword._decoding.branches`)."""
        ids = self.check_token_ids(prompt_ids)
        return HFBranches(self, ids)

    @property
    def vocab_size(self) -> int:
        """Rows of the output layer: the length of every logits vector (it may exceed the
        tokenizer's size where the layer is padded)."""
        return int(self.hf_model.get_output_embeddings().weight.shape[0])

    def sequence_logits(self, token_ids: Sequence[int]) -> npt.NDArray[np.float32]:
        """Raw logits after every prefix of ``token_ids`` in one forward pass: row ``i`` is the
        distribution after ``token_ids[: i + 1]`` (shape ``(len(token_ids), vocab)``, float32)."""
        ids = torch.tensor([list(token_ids)], device=self.device)
        return self._on_engine(lambda: self.hf_model(input_ids=ids).logits[0].float().cpu().numpy())

    def token_logprobs(self, token_ids: Sequence[int]) -> list[float]:
        ids = torch.tensor([list(token_ids)], device=self.device)

        def run() -> list[float]:
            logits = self.hf_model(input_ids=ids).logits[0, :-1].float()
            logp = torch.log_softmax(logits, dim=-1)
            return list(logp.gather(1, ids[0, 1:, None])[:, 0].double().cpu().tolist())

        return self._on_engine(run)

    # ---- generation on transformers' generate -------------------------------------------------

    def generate_ids(
        self, prompts_ids: Sequence[Sequence[int]], config: DecodingConfig, n_new: Sequence[int]
    ) -> list[list[Iterable[int]]]:
        """With ``batching="exact"``, each prompt runs on its own ``generate`` call (so a list
        equals its prompts one by one, bit for bit). With ``"fast"``, the call joins the
        scheduler: the prompts of this and of concurrent calls that can share a batch run as
        one left-padded batch. Sampling draws each prompt's tokens from its own random
        generator seeded with ``config.seed`` in both modes."""
        if self._batching == "fast":
            request = GenerationRequest(prompts_ids, config, n_new)
            with self._scheduler.participant():
                self._scheduler.run(request)
            if request.error is not None:
                raise request.error
            return [list(p.rows or []) for p in request.prompts]
        out: list[list[Iterable[int]]] = []
        for ids, n in zip(prompts_ids, n_new, strict=True):
            out.append(list(self._generate_rows([Prompt(ids, n)], config)))
        return out

    def _execute(self, requests: Sequence[GenerationRequest]) -> None:
        """The scheduler's executor (``batching="fast"``): every batch of the waiting requests'
        prompts in one ``generate`` call each; failures and cancellations go on the requests."""
        for batch in plan_batches(requests):
            live = [(r, p) for r, p in batch if r.error is None and not r.scope.cancelled]
            if not live:
                continue
            try:
                self._generate_rows(
                    [p for _, p in live],
                    live[0][0].config,
                    scopes=[r.scope for r, _ in live],
                    seeds=[r.config.seed for r, _ in live],
                )
            except Exception as exc:  # this batch's failure, reported to each of its callers
                for r, _ in live:
                    r.error = exc
        for r in requests:
            if r.error is None and r.scope.cancelled:
                r.error = Cancelled("the generation was cancelled")

    def _generate_rows(
        self,
        prompts: Sequence[Prompt],
        config: DecodingConfig,
        *,
        scopes: Sequence[CancelScope] | None = None,
        seeds: Sequence[int | None] | None = None,
    ) -> list[list[int]]:
        """Generate for ``prompts`` in one left-padded batch; set and return each prompt's rows
        (``num_return_sequences`` each, cut at the prompt's budget and first EOS). Each prompt
        samples from its own random generator, seeded with its entry of ``seeds`` (default:
        ``config.seed`` for all); ``scopes`` (one per prompt, default: the caller's) stop a
        prompt's rows when cancelled, and a cancelled caller's scope raises
        :class:`~nextword.errors.Cancelled`."""
        per = config.num_return_sequences
        budgets = [p.n_new for p in prompts for _ in range(per)]
        n_max = max(budgets)
        if n_max == 0:
            for p in prompts:
                p.rows = [[] for _ in range(per)]
            return [[] for _ in budgets]
        seeds = [config.seed] * len(prompts) if seeds is None else seeds
        randoms = [random_generator(seed, self.device) for seed in seeds] if config.sampling else []
        processors = sampling_processors(config, self.device, randoms)
        row_scopes = None if scopes is None else [sc for sc in scopes for _ in range(per)]
        sequences, width, _ = self._run_generate(
            [p.ids for p in prompts],
            config,
            n_max,
            processors,
            row_scopes=row_scopes,
            budgets=budgets if min(budgets) < n_max else None,
        )
        rows = []
        for row, budget in zip(sequences[:, width:].tolist(), budgets, strict=True):
            row = row[:budget]
            end = next((k + 1 for k, t in enumerate(row) if t in self._eos), len(row))
            rows.append(row[:end])
        for i, p in enumerate(prompts):
            p.rows = rows[i * per : (i + 1) * per]
        return rows

    def token_stream(
        self, prompt_ids: Sequence[int], config: DecodingConfig, n_new: int, rng: np.random.Generator
    ) -> Iterator[int]:
        """Tokens as ``model.generate`` produces them, in a worker thread that runs at most
        :data:`~nextword_hf.streaming.STREAM_LOOKAHEAD` tokens ahead of the reader.

        When the reader falls that far behind (a stream left half-read), the worker pauses:
        ``generate`` returns, the model is free for other calls, and the KV cache and random
        generator are kept; reading on resumes ``generate`` from them, so the tokens are the ones
        an uninterrupted run gives. Closing the iterator or the generator stops the worker at its
        next step."""
        if n_new == 0:
            return iter(())
        return PausableStream(self, list(prompt_ids), config, n_new).tokens()

    @torch.inference_mode()
    def _run_generate(
        self,
        batch: Sequence[Sequence[int]],
        config: DecodingConfig,
        n_new: int,
        processors: LogitsProcessorList,
        *,
        streamer: BaseStreamer | None = None,
        extra_stop: StoppingCriteria | None = None,
        stop_width: int | None = None,
        cache: Any = None,
        row_scopes: Sequence[CancelScope] | None = None,
        budgets: Sequence[int] | None = None,
    ) -> tuple[torch.Tensor, int, Any]:
        """Run ``generate``; returns the sequences, the prompt width (left padding included) and,
        when ``cache`` was given or a stream asks for it (``extra_stop``), the KV cache.
        ``stop_width`` is where the text checked for stop strings starts (default: the width).
        ``row_scopes`` (one per output row) stop rows whose scope is cancelled; without them the
        caller's scope stops all rows and raises :class:`~nextword.errors.Cancelled`.
        ``budgets`` (one per output row) end each row after that many new tokens."""
        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), self._pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, ids in enumerate(batch):
            input_ids[i, width - len(ids) :] = torch.tensor(list(ids))
            mask[i, width - len(ids) :] = 1
        scope = CancelScope.nested()  # cancelled with the caller's scope (an asyncio task)
        criteria = StoppingCriteriaList([CancelledCriterion(row_scopes or [scope])])
        if budgets is not None:
            criteria.append(RowBudgets(width, budgets))
        if config.stop:
            criteria.append(StopStrings(self, config.stop, width if stop_width is None else stop_width))
        if extra_stop is not None:
            criteria.append(extra_stop)
        gen_config = self._generation_config(config, n_new)
        extra: dict[str, Any] = {}
        if cache is not None:
            gen_config.cache_implementation = None  # the cache given is the one to continue
            extra[self.cache_kwarg] = cache
        if extra_stop is not None:
            gen_config.return_dict_in_generate = True
        with self._lock:
            out = self._engine.call(
                lambda: self.hf_model.generate(
                    input_ids=input_ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    generation_config=gen_config,
                    logits_processor=processors,
                    stopping_criteria=criteria,
                    streamer=streamer,
                    **extra,
                ),
                on_interrupt=scope.cancel,
            )
        if row_scopes is None and scope.cancelled:
            raise Cancelled("the generation was cancelled")
        if isinstance(out, torch.Tensor):
            return out, width, None
        return out.sequences, width, getattr(out, self.cache_kwarg, None)

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
            # Neutral values: the sampling options run in sampling_processors instead, and a
            # model's own generation_config.json defaults (e.g. top_k=64) must never leak in.
            kwargs.update(temperature=1.0, top_k=0, top_p=1.0, min_p=None, typical_p=1.0)
        return GenerationConfig(**kwargs)

    def close(self) -> None:
        self._closed = True
        self._prompt_states.clear()
        self._engine.stop()
        self._hf_model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _context_length(config: Any, tokenizer: Any) -> int:
    for name in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 10**9:
        return limit
    raise ModelLoadError("cannot tell the model's context length from its config")
