"""The endpoints beside completions: ``/tokenize`` and ``/detokenize`` (vLLM's shapes), and
nextword's own ``/v1/next_words`` and ``/v1/explain``. Each checks its body against the limits
before any engine work and runs that work as one unit of the fair queue."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.responses import JSONResponse, Response

from nextword._contract.protocol import Generator
from nextword.serve.errors import RequestError
from nextword.serve.limits import Limits, over_limit
from nextword.serve.requests import field
from nextword.serve.scheduling import RequestContext

T = TypeVar("T")

__all__ = ["UtilityEndpoints"]


class UtilityEndpoints:
    """The utility endpoints, mixed into the server (which provides the members declared here)."""

    generator: Generator
    name: str
    limits: Limits
    vocab_size: int

    if TYPE_CHECKING:

        @property
        def max_logprobs(self) -> int: ...

        def check_model(self, model: Any) -> None: ...

        async def unit(self, ctx: RequestContext, fn: Callable[[], T]) -> T: ...

    async def tokenize(self, body: Any, ctx: RequestContext) -> Response:
        if not isinstance(body, dict):
            raise RequestError(400, "the request body must be a JSON object")
        refuse_unknown(body, {"model", "prompt", "add_special_tokens", "return_token_strs"})
        self.check_model(field(body, "model", str))
        prompt = field(body, "prompt", str)
        if prompt is None:
            raise RequestError(400, "'prompt' (a string) is required", param="prompt")
        if len(prompt) > self.limits.max_tokenize_chars:
            raise over_limit(
                "max_tokenize_chars",
                self.limits.max_tokenize_chars,
                f"'prompt' has {len(prompt)} characters",
                param="prompt",
            )
        if not field(body, "add_special_tokens", bool, True):
            raise RequestError(
                400,
                "nextword tokenizes as the model reads text (with its BOS token, if any); "
                "add_special_tokens=false is not supported",
                param="add_special_tokens",
            )
        want_strs = field(body, "return_token_strs", bool, False)
        gen = self.generator

        def run() -> dict[str, Any]:
            tokens = gen.tokenize(prompt) if prompt else []
            out: dict[str, Any] = {"count": len(tokens), "max_model_len": gen.context_length, "tokens": tokens}
            if want_strs:
                out["token_strs"] = [gen.detokenize([t]) for t in tokens]
            return out

        return JSONResponse(await self.unit(ctx, run))

    async def detokenize(self, body: Any, ctx: RequestContext) -> Response:
        if not isinstance(body, dict):
            raise RequestError(400, "the request body must be a JSON object")
        refuse_unknown(body, {"model", "tokens"})
        self.check_model(field(body, "model", str))
        tokens = field(body, "tokens", list)
        if tokens is None or not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
            raise RequestError(400, "'tokens' (a list of token ids) is required", param="tokens")
        if len(tokens) > self.limits.max_detokenize_tokens:
            raise over_limit(
                "max_detokenize_tokens",
                self.limits.max_detokenize_tokens,
                f"'tokens' has {len(tokens)} ids",
                param="tokens",
            )
        bad = [t for t in tokens if not 0 <= t < self.vocab_size]
        if bad:
            raise RequestError(
                400, f"token id {bad[0]} is outside the vocabulary (0 to {self.vocab_size - 1})", param="tokens"
            )
        text = await self.unit(ctx, lambda: self.generator.detokenize(tokens))
        return JSONResponse({"prompt": text})

    async def next_words(self, body: Any, ctx: RequestContext) -> Response:
        if not isinstance(body, dict):
            raise RequestError(400, "the request body must be a JSON object")
        refuse_unknown(body, {"model", "prompt", "k", "unit", "beam_width", "min_prob", "max_tokens", "complete"})
        self.check_model(field(body, "model", str))
        prompt = field(body, "prompt", str)
        if prompt is None:
            raise RequestError(400, "'prompt' (a string) is required", param="prompt")
        k = field(body, "k", int, 5)
        if not 1 <= k <= 100:
            raise RequestError(400, f"'k' must be in 1..100, got {k}", param="k")
        unit = field(body, "unit", str, "word")
        complete = field(body, "complete", str, "auto")
        if complete not in ("auto", "word", "next"):
            raise RequestError(400, f"'complete' must be 'auto', 'word' or 'next', got {complete!r}", param="complete")
        if unit not in ("word", "token"):
            raise RequestError(400, f"'unit' must be 'word' or 'token', got {unit!r}", param="unit")
        bounds = {
            "beam_width": field(body, "beam_width", int),
            "min_prob": field(body, "min_prob", float, 0.0),
            "max_tokens": field(body, "max_tokens", int),
        }
        if unit == "token" and (
            bounds["beam_width"] is not None or bounds["max_tokens"] is not None or bounds["min_prob"]
        ):
            raise RequestError(400, "beam_width, min_prob and max_tokens apply to unit='word' only", param="unit")
        if bounds["beam_width"] is not None and not 1 <= bounds["beam_width"] <= 256:
            raise RequestError(400, "'beam_width' must be in 1..256", param="beam_width")
        gen = self.generator

        def run() -> dict[str, Any]:
            from nextword._words.complete import predict_or_complete
            from nextword._words.search import DEFAULT_MAX_TOKENS

            if unit == "token":
                prediction = gen.predict_next(prompt, k, unit="token")
            else:
                max_tokens = bounds["max_tokens"] if bounds["max_tokens"] is not None else DEFAULT_MAX_TOKENS
                prediction = predict_or_complete(
                    gen,
                    prompt,
                    k,
                    complete=complete,
                    beam_width=bounds["beam_width"],
                    min_prob=bounds["min_prob"],
                    max_tokens=max_tokens,
                )
            return {
                "object": "next_words",
                "model": self.name,
                "prompt": prompt,
                "unit": prediction.unit,
                "unexplored_mass": prediction.unexplored_mass,
                "typed": prediction.typed,
                "candidates": [
                    {
                        "text": c.text,
                        "token_ids": list(c.token_ids),
                        "prob": c.prob,
                        "logprob": c.logprob if math.isfinite(c.logprob) else -9999.0,
                        "remaining": c.remaining,
                    }
                    for c in prediction.candidates
                ],
            }

        return JSONResponse(await self.unit(ctx, run))

    async def explain(self, body: Any, ctx: RequestContext) -> Response:
        if not isinstance(body, dict):
            raise RequestError(400, "the request body must be a JSON object")
        refuse_unknown(body, {"model", "text", "top", "complete"})
        self.check_model(field(body, "model", str))
        text = field(body, "text", str)
        if text is None:
            raise RequestError(400, "'text' (a string) is required", param="text")
        if len(text) > self.limits.max_explain_chars:
            raise over_limit(
                "max_explain_chars", self.limits.max_explain_chars, f"'text' has {len(text)} characters", param="text"
            )
        top = field(body, "top", int, 5)
        if top < 0:
            raise RequestError(400, f"'top' must be at least 0, got {top}", param="top")
        if top > self.max_logprobs:
            raise over_limit("max_logprobs", self.max_logprobs, f"'top' is {top}", param="top")
        complete = field(body, "complete", str, "auto")
        if complete not in ("auto", "word", "next"):
            raise RequestError(400, f"'complete' must be 'auto', 'word' or 'next', got {complete!r}", param="complete")
        gen = self.generator

        def run() -> dict[str, Any]:
            from nextword._analysis.explanation import explain, to_json

            data = to_json(explain(gen, text, top=top, complete=complete))
            return {"object": "explanation", "model": self.name, **data}

        return JSONResponse(await self.unit(ctx, run))


def refuse_unknown(body: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(set(body) - known)
    if unknown:
        raise RequestError(
            400, f"unknown field {unknown[0]!r} (nextword refuses options it would ignore)", param=unknown[0]
        )
