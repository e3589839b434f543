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
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import torch
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    MinPLogitsWarper,
    StoppingCriteria,
    StoppingCriteriaList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
)
from transformers.generation.streamers import BaseStreamer

from nextword import (
    BackendSpec,
    BaseGenerator,
    DecodingConfig,
    InvalidConfig,
    InvalidInput,
    InvalidState,
    ModelLoadError,
)
from nextword.backend import CancelScope, EngineThread, StepScheduler, default_threads, utf8_bytes
from nextword.errors import Cancelled
from nextword_hf.batching import BATCH_MODES, MAX_BATCH_ROWS, GenerationRequest, Prompt, plan_batches
from nextword_hf.loading import load_pretrained, locate
from nextword_hf.token_bytes import TokenBytes

STREAM_LOOKAHEAD = 4
"""Most tokens a stream generates ahead of its reader before it pauses and frees the model."""

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
        # Every forward pass runs on one thread of its own: see nextword._runtime.engine_thread for why.
        self._engine = engine or EngineThread("nextword-hf")
        self._batching = str(options.get("batching", "exact"))
        self._scheduler: StepScheduler[GenerationRequest] = StepScheduler(self._execute, max_group=MAX_BATCH_ROWS)

    @property
    def hf_model(self) -> Any:
        """The transformers model; :class:`~nextword.InvalidState` once the generator is closed."""
        if self._closed:
            raise InvalidState(f"this {self.backend} generator for {self.model!r} was closed; load the model again")
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
        batching: str = "exact",
        spec: BackendSpec,
    ) -> HFGenerator:
        """Load ``model`` (hub id, local folder or .gguf file) on ``device`` in ``dtype``;
        ``cache="static"`` makes ``generate`` use a preallocated KV cache. ``batching="fast"``
        runs concurrent generations as one batch (see the class). Without ``threads``,
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
        engine = EngineThread("nextword-hf")
        location = locate(model)
        tokenizer, hf_model = engine.call(
            lambda: load_pretrained(location, dtype=torch_dtype, device=str(dev)), abandon=True
        )
        options = {
            "device": device,
            "dtype": dtype,
            "threads": threads or torch.get_num_threads(),
            "cache": cache,
            "batching": batching,
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

    def open_session(self, prompt_ids: Sequence[int]) -> _KVSession:
        """A KV-cache state: each :meth:`~_KVSession.feed` costs one token of compute."""
        return _KVSession(self, prompt_ids)

    def open_branches(self, prompt_ids: Sequence[int]) -> _Branches:
        """Continuations of ``prompt_ids`` evaluated together: one forward pass of all the
        paths (right-padded) over copies of the prompt's KV cache (see
        :mod:`nextword._decoding.branches`)."""
        ids = self.check_token_ids(prompt_ids)
        return _Branches(self, ids)

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
        randoms = [_random_generator(seed, self.device) for seed in seeds] if config.sampling else []
        processors = _sampling_processors(config, self.device, randoms)
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
        :data:`STREAM_LOOKAHEAD` tokens ahead of the reader.

        When the reader falls that far behind (a stream left half-read), the worker pauses:
        ``generate`` returns, the model is free for other calls, and the KV cache and random
        generator are kept; reading on resumes ``generate`` from them, so the tokens are the ones
        an uninterrupted run gives. Closing the iterator or the generator stops the worker at its
        next step."""
        if n_new == 0:
            return iter(())
        return _PausableStream(self, list(prompt_ids), config, n_new).tokens()

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
        criteria = StoppingCriteriaList([_Cancelled(row_scopes or [scope])])
        if budgets is not None:
            criteria.append(_RowBudgets(width, budgets))
        if config.stop:
            criteria.append(_StopStrings(self, config.stop, width if stop_width is None else stop_width))
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
            # Neutral values: the sampling options run in _sampling_processors instead, and a
            # model's own generation_config.json defaults (e.g. top_k=64) must never leak in.
            kwargs.update(temperature=1.0, top_k=0, top_p=1.0, min_p=None, typical_p=1.0)
        return GenerationConfig(**kwargs)

    def close(self) -> None:
        self._closed = True
        self._engine.stop()
        self._hf_model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _random_generator(seed: int | None, device: torch.device) -> torch.Generator:
    """A prompt's own random generator: seeded with ``seed``, or from fresh entropy when None."""
    random = torch.Generator(device=device)
    if seed is None:
        random.seed()  # fresh entropy: unseeded calls differ from each other
    else:
        random.manual_seed(seed)
    return random


def _sampling_processors(
    config: DecodingConfig, device: torch.device, randoms: Sequence[torch.Generator] | None = None
) -> LogitsProcessorList:
    """For sampling: transformers' own warpers for the sampling options, in transformers' order,
    then :class:`_OwnRandomChoice`, so each prompt draws from its own random generator
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
    processors.append(_OwnRandomChoice(list(randoms) if randoms else [_random_generator(config.seed, device)]))
    return LogitsProcessorList(processors)


class _OwnRandomChoice(LogitsProcessor):
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
            out = gen._on_engine(lambda: gen.hf_model(input_ids=ids, use_cache=True, **{gen.cache_kwarg: self._past}))
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


class _QueueStreamer(BaseStreamer):
    """Receives a stream's tokens from ``generate`` (skipping its input) and hands them to the reader."""

    def __init__(self, stream: _PausableStream) -> None:
        self.stream = stream
        self.seen_input = False

    def put(self, value: torch.Tensor) -> None:
        if not self.seen_input:
            self.seen_input = True
            return
        for token in value.reshape(-1).tolist():
            self.stream.produced.append(int(token))
            self.stream.queue.put(int(token))

    def end(self) -> None:
        pass


class _Cancelled(StoppingCriteria):
    """Stops the rows whose cancel scope was cancelled (one scope for all rows, or one per row)."""

    def __init__(self, scopes: Sequence[CancelScope]) -> None:
        self.scopes = scopes

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        n = input_ids.shape[0]
        if len(self.scopes) == 1:
            return torch.full((n,), self.scopes[0].cancelled, dtype=torch.bool, device=input_ids.device)
        return torch.tensor([s.cancelled for s in self.scopes], dtype=torch.bool, device=input_ids.device)


class _RowBudgets(StoppingCriteria):
    """Ends each row once it holds its own budget of new tokens (rows of one batch may differ)."""

    def __init__(self, prompt_width: int, budgets: Sequence[int]) -> None:
        self.width = prompt_width
        self.budgets = torch.tensor(list(budgets))

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return (self.budgets <= input_ids.shape[1] - self.width).to(input_ids.device)


class _PausableStream:
    """One stream's state across the ``generate`` runs it takes (see :meth:`HFGenerator.token_stream`)."""

    def __init__(self, generator: HFGenerator, prompt_ids: list[int], config: DecodingConfig, n_new: int) -> None:
        self.generator = generator
        self.prompt_ids = prompt_ids
        self.config = config
        self.n_new = n_new
        self.processors = _sampling_processors(config, generator.device)  # one random generator throughout
        self.produced: list[int] = []
        self.cache: Any = None
        self.queue: queue.Queue[Any] = queue.Queue()
        self.stop = threading.Event()  # the reader has gone: stop at the next step

    def tokens(self) -> Iterator[int]:
        """The reader's side: starts a ``generate`` run whenever it needs tokens and none runs."""
        done, paused = object(), object()
        try:
            while True:
                worker = threading.Thread(target=self._run, args=(done, paused), name="nextword-hf-stream", daemon=True)
                worker.start()
                try:
                    while (item := self.queue.get()) is not paused:
                        if item is done:
                            return
                        if isinstance(item, BaseException):
                            raise item
                        yield item
                except BaseException:  # closed by the reader (GeneratorExit) or failed: stop now
                    self.stop.set()
                    raise
                finally:
                    worker.join()
        finally:
            self.stop.set()
            self.cache = None

    def backlog(self) -> int:
        """Tokens produced that the reader has not taken yet."""
        return self.queue.qsize()

    def _run(self, done: object, paused: object) -> None:
        gen = self.generator
        pause = _Pause(self)
        try:
            if self.stop.is_set() or len(self.produced) >= self.n_new:
                self.queue.put(done)
                return
            cfg = self.config
            if cfg.min_new_tokens and self.produced:
                cfg = cfg.replace(min_new_tokens=max(cfg.min_new_tokens - len(self.produced), 0))
            _, _, self.cache = gen._run_generate(
                [self.prompt_ids + self.produced],
                cfg,
                self.n_new - len(self.produced),
                self.processors,
                streamer=_QueueStreamer(self),
                extra_stop=pause,
                stop_width=len(self.prompt_ids),
                cache=self.cache,
            )
            ended = len(self.produced) >= self.n_new or (bool(self.produced) and self.produced[-1] in gen.eos_token_ids)
            self.queue.put(paused if pause.fired and not ended else done)
        except BaseException as exc:  # re-raised in the reader's thread
            self.queue.put(exc)


class _Pause(StoppingCriteria):
    """Ends a stream's ``generate`` run when the reader is :data:`STREAM_LOOKAHEAD` tokens behind,
    has gone, or the generator was closed."""

    def __init__(self, stream: _PausableStream) -> None:
        self.stream = stream
        self.fired = False

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        s = self.stream
        if s.stop.is_set() or s.generator.closed or s.backlog() >= STREAM_LOOKAHEAD:
            self.fired = True
        return torch.full((input_ids.shape[0],), self.fired, dtype=torch.bool, device=input_ids.device)


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
