"""The OpenAI-compatible ASGI application over one nextword generator (Starlette).

Endpoints: ``POST /v1/completions`` (streamed as server-sent events on request), ``GET /v1/models``,
``GET /health``, ``POST /tokenize`` and ``POST /detokenize`` (vLLM's shapes), and nextword's own
``POST /v1/next_words`` and ``POST /v1/explain``. Every error is OpenAI's error JSON with a 4xx
status for the client's mistakes and 5xx for the server's; no request can stop the server.
"""

from __future__ import annotations

import hmac
import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from nextword.errors import InvalidInput
from nextword.protocol import Generator
from nextword.serve.completions import CompletionRunner, finish_reason, new_id, usage_chunk
from nextword.serve.errors import RequestError, error_body, from_exception
from nextword.serve.requests import Limits, field, parse_completion
from nextword.serve.static import playground_routes
from nextword.serve.worker import ModelSlot

__all__ = ["create_app"]

Handler = Callable[[Request], Awaitable[Response]]


class _Server:
    def __init__(self, generator: Generator, name: str, api_key: str | None, limits: Limits) -> None:
        self.generator = generator
        self.name = name
        self.api_key = api_key
        self.limits = limits
        self.slot = ModelSlot(limits.max_queue, limits.parallel)
        self.runner = CompletionRunner(generator, name)
        self.created = int(time.time())
        self.vocab_size = _vocab_size(generator)

    @property
    def max_logprobs(self) -> int:
        limit = self.generator.capabilities.max_logprobs
        return self.vocab_size if limit is None else min(limit, self.vocab_size)

    # ---- plumbing -----------------------------------------------------------------------------

    def endpoint(self, handler: Handler, *, auth: bool = True) -> Handler:
        async def wrapped(request: Request) -> Response:
            try:
                if auth:
                    self._authorize(request)
                return await handler(request)
            except Exception as exc:  # every failure becomes an OpenAI error response
                err = from_exception(exc)
                return JSONResponse(err.body(), status_code=err.status)

        return wrapped

    def _authorize(self, request: Request) -> None:
        if self.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
            raise RequestError(
                401, "missing or incorrect API key (send 'Authorization: Bearer KEY')", code="invalid_api_key"
            )

    async def body(self, request: Request) -> Any:
        limit = self.limits.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise RequestError(413, f"the request body is larger than {limit} bytes")
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > limit:
                raise RequestError(413, f"the request body is larger than {limit} bytes")
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RequestError(400, f"the request body is not valid JSON: {exc}") from None

    def check_model(self, model: Any) -> None:
        if model is not None and model != self.name:
            raise RequestError(
                404,
                f"the model {model!r} does not exist here; this server serves {self.name!r}",
                param="model",
                code="model_not_found",
            )

    # ---- endpoints ----------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def models(self, request: Request) -> Response:
        gen = self.generator
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {
                        "id": self.name,
                        "object": "model",
                        "created": self.created,
                        "owned_by": "nextword",
                        "max_model_len": gen.context_length,
                        "nextword": {
                            "backend": gen.backend,
                            "model": gen.model,
                            "vocab_size": self.vocab_size,
                            "max_logprobs": self.max_logprobs,
                            "eos_token_ids": sorted(gen.eos_token_ids),
                            "capabilities": gen.capabilities.to_dict(),
                            "limits": {"max_tokens": self.limits.max_tokens, "max_n": self.limits.max_n},
                        },
                    }
                ],
            }
        )

    async def completions(self, request: Request) -> Response:
        req = parse_completion(await self.body(request), self.limits, max_logprobs=self.max_logprobs)
        self.check_model(req.model)
        for prompt in req.prompts:
            if isinstance(prompt, list):
                bad = [t for t in prompt if not 0 <= t < self.vocab_size]
                if bad:
                    raise RequestError(
                        400, f"token id {bad[0]} is outside the vocabulary (0 to {self.vocab_size - 1})", param="prompt"
                    )
        if req.stream:
            return await self._stream(req)

        def run() -> dict[str, Any]:
            return self.runner.response(req, [self.runner.generate(req, p) for p in req.prompts])

        return JSONResponse(await self.slot.run(run))

    async def _stream(self, req: Any) -> Response:
        prompt = req.prompts[0]
        await self.slot.acquire()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.slot.release()

        try:
            stream, stream_prompt = await anyio.to_thread.run_sync(self._open_stream, req, prompt)
        except BaseException:
            release()
            raise
        chunks = iter(stream)
        response_id = new_id()
        created = int(time.time())

        def event(choices: list[dict[str, Any]], **extra: Any) -> str:
            data = {
                "id": response_id,
                "object": "text_completion",
                "created": created,
                "model": self.name,
                "choices": choices,
                **extra,
            }
            return f"data: {json.dumps(data)}\n\n"

        async def events() -> AsyncIterator[str]:
            if req.echo:
                yield event([{"index": 0, "text": stream_prompt, "logprobs": None, "finish_reason": None}])
            while True:
                try:
                    chunk = await anyio.to_thread.run_sync(next, chunks, None)
                except Exception as exc:
                    err = from_exception(exc)
                    yield f"data: {json.dumps(err.body())}\n\n"
                    return
                if chunk is None:
                    break
                yield event([{"index": 0, "text": chunk, "logprobs": None, "finish_reason": None}])
            result = stream.result
            seq = result.sequences[0]
            logprobs = None
            if req.logprobs is not None:
                logprobs = await anyio.to_thread.run_sync(self.runner.logprobs, req, result, seq)
            last: dict[str, Any] = {
                "index": 0,
                "text": "",
                "logprobs": logprobs,
                "finish_reason": finish_reason(seq.finish_reason),
                "stop_reason": seq.token_ids[-1] if seq.finish_reason == "eos" and seq.token_ids else None,
            }
            if req.return_token_ids:
                last["prompt_token_ids"] = list(result.prompt_token_ids)
                last["token_ids"] = list(seq.token_ids)
            yield event([last])
            if req.include_usage:
                yield f"data: {json.dumps(usage_chunk(self.name, result.prompt_tokens, result.completion_tokens))}\n\n"
            yield "data: [DONE]\n\n"

        async def cleanup() -> None:
            try:
                await anyio.to_thread.run_sync(stream.close)
            finally:
                release()

        return _StreamingResponse(events(), cleanup)

    def _open_stream(self, req: Any, prompt: str | list[int]) -> tuple[Any, str]:
        gen = self.generator
        if isinstance(prompt, str):
            return gen.stream(prompt, req.config), prompt
        method = getattr(gen, "stream_tokens", None)
        if method is None:
            raise RequestError(400, f"the {gen.backend!r} backend takes text prompts only", param="prompt")
        return method(prompt, req.config), gen.detokenize(prompt)

    async def tokenize(self, request: Request) -> Response:
        body = await self.body(request)
        if not isinstance(body, dict):
            raise RequestError(400, "the request body must be a JSON object")
        self.check_model(field(body, "model", str))
        prompt = field(body, "prompt", str)
        if prompt is None:
            raise RequestError(400, "'prompt' (a string) is required", param="prompt")
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

        return JSONResponse(await self.slot.run(run))

    async def detokenize(self, request: Request) -> Response:
        body = await self.body(request)
        if not isinstance(body, dict):
            raise RequestError(400, "the request body must be a JSON object")
        self.check_model(field(body, "model", str))
        tokens = field(body, "tokens", list)
        if tokens is None or not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
            raise RequestError(400, "'tokens' (a list of token ids) is required", param="tokens")
        bad = [t for t in tokens if not 0 <= t < self.vocab_size]
        if bad:
            raise RequestError(
                400, f"token id {bad[0]} is outside the vocabulary (0 to {self.vocab_size - 1})", param="tokens"
            )
        text = await self.slot.run(self.generator.detokenize, tokens)
        return JSONResponse({"prompt": text})

    async def next_words(self, request: Request) -> Response:
        body = await self.body(request)
        if not isinstance(body, dict):
            raise RequestError(400, "the request body must be a JSON object")
        known = {"model", "prompt", "k", "unit", "beam_width", "min_prob", "max_tokens", "complete"}
        unknown = sorted(set(body) - known)
        if unknown:
            raise RequestError(400, f"unknown field {unknown[0]!r}", param=unknown[0])
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
            from nextword.complete import predict_or_complete
            from nextword.words import DEFAULT_MAX_TOKENS

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

        return JSONResponse(await self.slot.run(run))

    async def explain(self, request: Request) -> Response:
        body = await self.body(request)
        if not isinstance(body, dict):
            raise RequestError(400, "the request body must be a JSON object")
        unknown = sorted(set(body) - {"model", "text", "top", "complete"})
        if unknown:
            raise RequestError(400, f"unknown field {unknown[0]!r}", param=unknown[0])
        self.check_model(field(body, "model", str))
        text = field(body, "text", str)
        if text is None:
            raise RequestError(400, "'text' (a string) is required", param="text")
        top = field(body, "top", int, 5)
        if not 0 <= top <= 100:
            raise RequestError(400, f"'top' must be in 0..100, got {top}", param="top")
        complete = field(body, "complete", str, "auto")
        if complete not in ("auto", "word", "next"):
            raise RequestError(400, f"'complete' must be 'auto', 'word' or 'next', got {complete!r}", param="complete")
        gen = self.generator

        def run() -> dict[str, Any]:
            from nextword.explanation import explain, to_json

            data = to_json(explain(gen, text, top=top, complete=complete))
            return {"object": "explanation", "model": self.name, **data}

        return JSONResponse(await self.slot.run(run))


class _StreamingResponse(StreamingResponse):
    """A server-sent-event stream that runs ``cleanup`` however it ends: finished, failed, or
    its client gone (which frees the model's slot for the next request)."""

    def __init__(self, content: AsyncIterator[str], cleanup: Callable[[], Awaitable[None]]) -> None:
        super().__init__(content, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        self._cleanup = cleanup

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._cleanup()


def _vocab_size(generator: Generator) -> int:
    """How many token ids the model has (its logits' length; the limit of a top-N backend)."""
    size = getattr(generator, "vocab_size", None)
    if isinstance(size, int) and size > 0:
        return size
    if getattr(generator.capabilities, "logits", True):
        ids = generator.tokenize("a")
        return int(len(generator.next_token_logits(ids)))
    limit = generator.capabilities.max_logprobs
    if limit is None:
        raise InvalidInput("the backend gives neither its vocabulary size nor full logits")
    return limit


def create_app(
    generator: Generator, *, name: str | None = None, api_key: str | None = None, limits: Limits | None = None
) -> Starlette:
    """The ASGI application serving ``generator`` under the model name ``name`` (default: the
    generator's model). With ``api_key`` every endpoint but ``/health`` needs
    ``Authorization: Bearer <api_key>``."""
    server = _Server(generator, name or generator.model, api_key, limits or Limits())
    ep = server.endpoint
    routes = [
        Route("/health", ep(server.health, auth=False), methods=["GET"]),
        Route("/v1/models", ep(server.models), methods=["GET"]),
        Route("/v1/completions", ep(server.completions), methods=["POST"]),
        Route("/tokenize", ep(server.tokenize), methods=["POST"]),
        Route("/detokenize", ep(server.detokenize), methods=["POST"]),
        Route("/v1/next_words", ep(server.next_words), methods=["POST"]),
        Route("/v1/explain", ep(server.explain), methods=["POST"]),
        *playground_routes(),  # the browser playground at / (static files, no data, no key)
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
        kind = "invalid_request_error" if status < 500 else "server_error"
        return JSONResponse(error_body(f"{detail}: {request.method} {request.url.path}", kind), status_code=status)

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: http_error})
    app.state.server = server
    return app
