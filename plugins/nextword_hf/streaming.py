"""The pieces of a streamed generation on transformers' ``generate``: the queue that hands
tokens over, the stopping criteria (cancellation, budgets, stop strings), and the stream that
pauses when its reader falls behind."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch
from transformers import (
    StoppingCriteria,
)
from transformers.generation.streamers import BaseStreamer

from nextword import (
    DecodingConfig,
)
from nextword.backend import CancelScope
from nextword_hf.sampling import sampling_processors

if TYPE_CHECKING:
    from nextword_hf.generator import HFGenerator

STREAM_LOOKAHEAD = 4
"""Most tokens a stream generates ahead of its reader before it pauses and frees the model."""


class QueueStreamer(BaseStreamer):
    """Receives a stream's tokens from ``generate`` (skipping its input) and hands them to the reader."""

    def __init__(self, stream: PausableStream) -> None:
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


class CancelledCriterion(StoppingCriteria):
    """Stops the rows whose cancel scope was cancelled (one scope for all rows, or one per row)."""

    def __init__(self, scopes: Sequence[CancelScope]) -> None:
        self.scopes = scopes

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        n = input_ids.shape[0]
        if len(self.scopes) == 1:
            return torch.full((n,), self.scopes[0].cancelled, dtype=torch.bool, device=input_ids.device)
        return torch.tensor([s.cancelled for s in self.scopes], dtype=torch.bool, device=input_ids.device)


class RowBudgets(StoppingCriteria):
    """Ends each row once it holds its own budget of new tokens (rows of one batch may differ)."""

    def __init__(self, prompt_width: int, budgets: Sequence[int]) -> None:
        self.width = prompt_width
        self.budgets = torch.tensor(list(budgets))

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return (self.budgets <= input_ids.shape[1] - self.width).to(input_ids.device)


class PausableStream:
    """One stream's state across the ``generate`` runs it takes (see :meth:`HFGenerator.token_stream`)."""

    def __init__(self, generator: HFGenerator, prompt_ids: list[int], config: DecodingConfig, n_new: int) -> None:
        self.generator = generator
        self.prompt_ids = prompt_ids
        self.config = config
        self.n_new = n_new
        self.processors = sampling_processors(config, generator.device)  # one random generator throughout
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
        pause = Pause(self)
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
                streamer=QueueStreamer(self),
                extra_stop=pause,
                stop_width=len(self.prompt_ids),
                cache=self.cache,
            )
            ended = len(self.produced) >= self.n_new or (bool(self.produced) and self.produced[-1] in gen.eos_token_ids)
            self.queue.put(paused if pause.fired and not ended else done)
        except BaseException as exc:  # re-raised in the reader's thread
            self.queue.put(exc)


class Pause(StoppingCriteria):
    """Ends a stream's ``generate`` run when the reader is :data:`STREAM_LOOKAHEAD` tokens behind,
    has gone, or the generator was closed."""

    def __init__(self, stream: PausableStream) -> None:
        self.stream = stream
        self.fired = False

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        s = self.stream
        if s.stop.is_set() or s.generator.closed or s.backlog() >= STREAM_LOOKAHEAD:
            self.fired = True
        return torch.full((input_ids.shape[0],), self.fired, dtype=torch.bool, device=input_ids.device)


class StopStrings(StoppingCriteria):
    """Ends a row once its generated text contains a stop string (nextword cuts the text after)."""

    def __init__(self, generator: HFGenerator, stops: Sequence[str], prompt_width: int) -> None:
        self.generator = generator
        self.stops = stops
        self.width = prompt_width

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        texts = [self.generator.detokenize(row) for row in input_ids[:, self.width :].tolist()]
        hits = [any(s in t for s in self.stops) for t in texts]
        return torch.tensor(hits, dtype=torch.bool, device=input_ids.device)
