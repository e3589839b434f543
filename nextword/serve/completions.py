"""Running a completion request on a generator and writing OpenAI's response objects.

Everything here is synchronous and runs in a worker thread while the request holds a slot of
the server's fair queue (see :mod:`nextword.serve.scheduling`). Log-probabilities are those of the raw model (before
temperature, penalties or filters), as vLLM reports them by default.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from nextword._contract.protocol import Generator
from nextword._decoding.detok import context_for, piece_text
from nextword._decoding.logprobs import TopLogprobs, top_logprobs
from nextword._types.results import Completion, FinishReason, Generation
from nextword.serve.errors import RequestError
from nextword.serve.requests import CompletionRequest

__all__ = ["CompletionRunner", "finish_reason", "new_id"]


def new_id(prefix: str = "cmpl") -> str:
    """A fresh response id."""
    return f"{prefix}-{uuid.uuid4().hex}"


def finish_reason(reason: FinishReason) -> str:
    """OpenAI's name for a nextword finish reason (an end-of-text token is a ``stop``)."""
    return "length" if reason == "length" else "stop"


class CompletionRunner:
    """Runs completions for one model (``name``) and formats them as OpenAI does."""

    def __init__(self, generator: Generator, name: str) -> None:
        self.generator = generator
        self.name = name

    # ---- generation ---------------------------------------------------------------------------

    def generate(self, req: CompletionRequest, prompt: str | list[int]) -> Generation:
        """One prompt's generation (``req.n`` sequences; a greedy one is computed once)."""
        gen = self.generator
        if isinstance(prompt, str):
            if req.echo and req.config.max_new_tokens == 0:
                return self._no_generation(prompt, gen.tokenize(prompt) if prompt else [])
            result = gen.generate(prompt, req.config)
        else:
            result = gen.generate_tokens(prompt, req.config)
        if req.n > 1 and len(result.sequences) == 1:  # greedy: every copy is the same
            result = Generation(result.prompt, result.prompt_token_ids, result.sequences * req.n, result.settings)
        return result

    def _no_generation(self, prompt: str, ids: list[int]) -> Generation:
        if not ids:
            raise RequestError(400, "the prompt is empty", param="prompt")
        empty = Completion("", (), "length")
        return Generation(prompt, tuple(ids), (empty,), self.generator.settings)

    def choices(self, req: CompletionRequest, results: Sequence[Generation]) -> list[dict[str, Any]]:
        """The ``choices`` of a non-streamed response, ``n`` per prompt in prompt order."""
        out: list[dict[str, Any]] = []
        for result in results:
            for seq in result.sequences:
                choice: dict[str, Any] = {
                    "index": len(out),
                    "text": (result.prompt if req.echo else "") + seq.text,
                    "logprobs": self.logprobs(req, result, seq) if req.logprobs is not None else None,
                    "finish_reason": finish_reason(seq.finish_reason),
                    "stop_reason": self._stop_reason(seq),
                }
                if req.return_token_ids:
                    choice["prompt_token_ids"] = list(result.prompt_token_ids)
                    choice["token_ids"] = list(seq.token_ids)
                out.append(choice)
        return out

    def _stop_reason(self, seq: Completion) -> int | None:
        if seq.finish_reason == "eos" and seq.token_ids:
            return seq.token_ids[-1]
        return None

    def response(self, req: CompletionRequest, results: Sequence[Generation]) -> dict[str, Any]:
        """The whole ``text_completion`` object."""
        return self.response_from(self.choices(req, results), results)

    def response_from(self, choices: list[dict[str, Any]], results: Sequence[Generation]) -> dict[str, Any]:
        """The ``text_completion`` object of ``choices`` (made by :meth:`choices`, in order),
        with the usage of ``results``."""
        prompt_tokens = sum(r.prompt_tokens for r in results)
        completion_tokens = sum(r.completion_tokens for r in results)
        return {
            "id": new_id(),
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.name,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    # ---- log-probabilities ---------------------------------------------------------------------

    def logprobs(self, req: CompletionRequest, result: Generation, seq: Completion) -> dict[str, Any]:
        """OpenAI's ``logprobs`` object for one sequence (the prompt's tokens first with ``echo``;
        the first prompt token has no context and gets ``null``)."""
        assert req.logprobs is not None
        prompt_ids = list(result.prompt_token_ids)
        ids = prompt_ids + list(seq.token_ids)
        start = 0 if req.echo else len(prompt_ids)
        positions = self._position_logprobs(ids, max(start, 1), req.logprobs)
        detok = self.generator.detokenize
        tokens: list[str] = []
        token_logprobs: list[float | None] = []
        tops: list[dict[str, float] | None] = []
        offsets: list[int] = []
        offset = 0
        for i in range(start, len(ids)):
            token = ids[i]
            text = piece_text(detok, context_for(detok, ids[:i]), token)
            tokens.append(self._key(token, text, req))
            offsets.append(offset)
            offset += len(text)
            if i == 0:
                token_logprobs.append(None)
                tops.append(None)
                continue
            chosen, top = positions[i]
            token_logprobs.append(finite(chosen))
            entry: dict[str, float] = {}
            for t, lp in zip(top.token_ids, top.logprobs, strict=True):
                key = self._key(t, piece_text(detok, context_for(detok, ids[:i]), t), req)
                entry.setdefault(key, finite(lp))  # texts can collide: keep the more likely token's value
            tops.append(entry)
        return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": tops, "text_offset": offsets}

    @staticmethod
    def _key(token: int, text: str, req: CompletionRequest) -> str:
        return f"token_id:{token}" if req.token_id_keys else text

    def _position_logprobs(self, ids: list[int], first: int, n: int) -> dict[int, tuple[float, TopLogprobs]]:
        """For each position ``i >= first``: the log-probability of ``ids[i]`` after ``ids[:i]``
        and the ``n`` most likely tokens there."""
        gen = self.generator
        out: dict[int, tuple[float, TopLogprobs]] = {}
        if first >= len(ids):
            return out
        full = gen.capabilities.logits
        if full:
            # Chosen tokens scored as `score` scores them (one evaluation of the sequence).
            chosen = _token_logprobs(gen, ids)
            for i, logits in zip(range(first, len(ids)), _logits_along(gen, ids, first), strict=False):
                top = TopLogprobs.from_logits(logits, n) if n else TopLogprobs((), ())
                out[i] = (chosen[i - 1], top)
            return out
        for i in range(first, len(ids)):
            listed = top_logprobs(gen, ids[:i], max(n, 1))
            lp = listed.as_dict().get(ids[i])
            if lp is None:
                raise RequestError(
                    400,
                    "the backend behind this server returns only its top log-probabilities and the "
                    f"token at position {i} is not among them",
                    param="logprobs",
                )
            out[i] = (lp, TopLogprobs(listed.token_ids[:n], listed.logprobs[:n]))
        return out


def _token_logprobs(gen: Generator, ids: list[int]) -> list[float]:
    return [float(x) for x in gen.token_logprobs(ids)]


def _logits_along(gen: Generator, ids: list[int], first: int) -> Iterator[Any]:
    """Logits after ``ids[:i]`` for ``i = first .. len(ids) - 1``, read by one session."""
    session = gen.open_session(ids[:first])
    for i in range(first, len(ids)):
        yield session.logits()
        if i + 1 < len(ids):
            session.feed(ids[i])


def usage_chunk(name: str, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """The last chunk of a stream when ``stream_options.include_usage`` is set."""
    return {
        "id": new_id(),
        "object": "text_completion",
        "created": int(time.time()),
        "model": name,
        "choices": [],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def finite(x: float) -> float:
    """``x``, with -inf written as -9999.0 as vLLM does (JSON has no infinities)."""
    return x if math.isfinite(x) else -9999.0
