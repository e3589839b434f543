"""The OpenAI-compatible ASGI application over one nextword generator (Starlette).

Endpoints: ``POST /v1/completions`` (streamed as server-sent events on request), ``GET /v1/models``,
``GET /health``, ``POST /tokenize`` and ``POST /detokenize`` (vLLM's shapes), nextword's own
``POST /v1/next_words`` and ``POST /v1/explain``, and ``GET /metrics`` (Prometheus, with
``metrics=True``). Every error is OpenAI's error JSON with a 4xx status for the client's mistakes
and 5xx for the server's; no request can stop the server.

Every request is checked against the server's :class:`~nextword.serve.limits.Limits` before any
engine work; its engine work then runs in units through the fair queue, in its own cancel scope
(see :mod:`nextword.serve.scheduling`): a client that disconnects, a request past its timeout
and a server shutting down all stop the engine at its next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from nextword._contract.protocol import Generator
from nextword._types.results import Generation
from nextword.errors import Cancelled, InvalidInput
from nextword.serve.bodies import parse_json, read_body
from nextword.serve.channel import END, Channel
from nextword.serve.completions import CompletionRunner, finish_reason, new_id, usage_chunk
from nextword.serve.errors import RequestError, error_body, from_exception
from nextword.serve.limits import Limits, default_parallel, display_name
from nextword.serve.metrics import CONTENT_TYPE, Metrics
from nextword.serve.requests import CompletionRequest, parse_completion
from nextword.serve.scheduling import FairQueue, RequestContext, Workers
from nextword.serve.static import playground_routes
from nextword.serve.utility import UtilityEndpoints

__all__ = ["create_app"]

T = TypeVar("T")

Handler = Callable[[Request], Awaitable[Response]]
EngineHandler = Callable[[Any, RequestContext], Awaitable[Response]]


class _Tracker:
    """Counts one sequence's tokens as they are generated (for ``/metrics``), and the first
    token of its request (time to first token)."""

    def __init__(self, server: _Server, ctx: RequestContext) -> None:
        self.server = server
        self.ctx = ctx
        self.counted = 0
        self.last_at: float | None = None

    def update(self, count: int) -> None:
        delta = count - self.counted
        if delta <= 0:
            return
        now = time.monotonic()
        metrics = self.server.metrics
        metrics.count("generation_tokens", delta)
        with self.server.first_token_lock:
            first = self.ctx.first_token_at is None
            if first:
                self.ctx.first_token_at = now
        if first:
            metrics.observe("ttft", now - self.ctx.arrived)
        if self.last_at is not None:
            metrics.observe("tpot", (now - self.last_at) / delta)
        self.counted = count
        self.last_at = now


class _Server(UtilityEndpoints):
    def __init__(
        self, generator: Generator, name: str, api_key: str | None, limits: Limits, metrics: bool = False
    ) -> None:
        self.generator = generator
        self.name = name
        self.api_key = api_key
        self.limits = limits
        self.metrics_enabled = metrics
        self.parallel = limits.parallel or default_parallel(generator)
        self.queue = FairQueue(self.parallel, limits.max_queue)
        self.workers = Workers(self.parallel + 8)
        self.metrics = Metrics(lambda: self.queue.waiting, lambda: self.queue.running_requests)
        self.runner = CompletionRunner(generator, name)
        self.created = int(time.time())
        self.vocab_size = _vocab_size(generator)
        self.contexts: set[RequestContext] = set()
        self.first_token_lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._grace: asyncio.TimerHandle | None = None
        self._hidden = _hidden_names(generator, name)

    @property
    def max_logprobs(self) -> int:
        """Most log-probabilities per position a request may ask for: the server's limit, within
        what the backend gives."""
        return min(self.limits.max_logprobs, self.backend_max_logprobs)

    @property
    def backend_max_logprobs(self) -> int:
        limit = self.generator.capabilities.max_logprobs
        return self.vocab_size if limit is None else min(limit, self.vocab_size)

    # ---- plumbing -----------------------------------------------------------------------------

    def endpoint(self, path: str, handler: Handler, *, auth: bool = True) -> Handler:
        """``handler`` with the API key checked and every failure turned into an OpenAI error."""

        async def wrapped(request: Request) -> Response:
            started = time.monotonic()
            try:
                if auth:
                    self._authorize(request)
                response = await handler(request)
            except Exception as exc:  # every failure becomes an OpenAI error response
                response = self._error_response(exc)
            self._count(path, response, started)
            return response

        return wrapped

    def engine_endpoint(self, path: str, handler: EngineHandler) -> Handler:
        """An endpoint whose work runs in the engine: the API key, the body (size and nesting
        bounds), admission to the queue (503 when full), a request context cancelled when the
        client disconnects or the timeout passes, and errors as OpenAI errors."""

        async def wrapped(request: Request) -> Response:
            started = time.monotonic()
            ctx: RequestContext | None = None
            watcher: asyncio.Task[None] | None = None
            response: Response
            try:
                self._authorize(request)
                body = await self.body(request)
                ctx = RequestContext(self.limits.request_timeout_s)
                self.queue.admit(ctx)
                self.contexts.add(ctx)
                watcher = asyncio.ensure_future(_watch_disconnect(request.receive, ctx))
                response = await handler(body, ctx)
            except Exception as exc:
                response = self._error_response(exc, ctx)
            finally:
                if watcher is not None:
                    watcher.cancel()
            if isinstance(response, _EventStream):
                response.server_started = started  # counted when the stream ends
                return response
            if ctx is not None:
                self._done(ctx)
            self._count(path, response, started)
            return response

        return wrapped

    def _done(self, ctx: RequestContext) -> None:
        """A request's life is over: it leaves the queue's books and the shutdown's list."""
        if ctx.cancelled and ctx.reason != "failed":
            self.metrics.count("cancellations", reason=ctx.reason or "unknown")
        ctx.finish()
        self.queue.leave(ctx)
        self.contexts.discard(ctx)

    def _count(self, path: str, response: Response, started: float) -> None:
        self.metrics.count("requests", endpoint=path, status=str(response.status_code))
        self.metrics.observe("duration", time.monotonic() - started)

    def _error_response(self, exc: BaseException, ctx: RequestContext | None = None) -> Response:
        err = self.error_for(exc, ctx)
        if err.status < 500 or err.code in ("queue_full", "server_shutting_down"):
            if ctx is None or not ctx.cancelled:
                self.metrics.count("rejections", reason=err.reason)
        return JSONResponse(self.redacted(err.body()), status_code=err.status, headers=err.headers)

    def error_for(self, exc: BaseException, ctx: RequestContext | None) -> RequestError:
        """The error answer for ``exc``: a cancelled request's reason when it was cancelled."""
        if ctx is not None and ctx.cancelled and ctx.reason != "failed" and isinstance(exc, Cancelled):
            return ctx.error()
        return from_exception(exc)

    def redacted(self, body: dict[str, Any]) -> dict[str, Any]:
        """An error body with the model's local path replaced by its served name."""
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            message = error["message"]
            for hidden in self._hidden:
                message = message.replace(hidden, self.name)
            error["message"] = message
        return body

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
        """The request's JSON body within the size and nesting limits."""
        data = await read_body(request.headers.get("content-length"), request.stream(), self.limits)
        return parse_json(data, self.limits)

    def check_model(self, model: Any) -> None:
        if model is not None and model != self.name and model != self.generator.model:
            raise RequestError(
                404,
                f"the model {model!r} does not exist here; this server serves {self.name!r}",
                param="model",
                code="model_not_found",
            )

    async def unit(self, ctx: RequestContext, fn: Callable[[], T]) -> T:
        """Run ``fn`` (engine work) in a worker thread once the fair queue gives ``ctx`` a slot."""
        await self.queue.acquire(ctx)
        started = time.monotonic()
        try:
            return await self.workers.run(ctx, fn)
        finally:
            self.queue.release(ctx, time.monotonic() - started)

    async def units(self, ctx: RequestContext, fns: Sequence[Callable[[], T]]) -> list[T]:
        """Run every ``fn`` as a unit (they queue and run concurrently); their results in order.
        The first failure cancels the others and is raised (a cancelled request's reason first)."""
        if len(fns) == 1:
            return [await self.unit(ctx, fns[0])]
        tasks = [asyncio.ensure_future(self.unit(ctx, fn)) for fn in fns]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            if not all(t.done() for t in tasks):
                ctx.cancel("failed")  # a unit failed (or this task is cancelled): stop the others
                await asyncio.wait(tasks)
        failures = [t.exception() for t in tasks if t.exception() is not None]
        failures.sort(key=lambda e: isinstance(e, Cancelled))
        if failures:
            raise failures[0]  # type: ignore[misc]
        return [t.result() for t in tasks]

    # ---- shutdown -------------------------------------------------------------------------------

    def begin_shutdown(self, grace_s: float) -> None:
        """Stop admitting requests; after ``grace_s`` seconds cancel every request still running
        (a stream then ends with an error event and ``[DONE]``). Call on the event loop."""
        if self.queue.closed:
            return
        self.queue.closed = True
        if not self.contexts:
            return
        self._grace = asyncio.get_running_loop().call_later(grace_s, self.cancel_all, "shutdown")

    def cancel_all(self, reason: str) -> None:
        """Cancel every request in progress."""
        for ctx in list(self.contexts):
            ctx.cancel(reason)

    # ---- endpoints ----------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def metrics_endpoint(self, request: Request) -> Response:
        return PlainTextResponse(self.metrics.render(), media_type=CONTENT_TYPE)

    async def models(self, request: Request) -> Response:
        gen = self.generator
        limits = self.limits.as_dict()
        limits["parallel"] = self.parallel
        limits["max_logprobs"] = self.max_logprobs
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
                            "model": self.name,
                            "vocab_size": self.vocab_size,
                            "max_logprobs": self.max_logprobs,
                            "eos_token_ids": sorted(gen.eos_token_ids),
                            "capabilities": gen.capabilities.to_dict(),
                            "limits": limits,
                        },
                    }
                ],
            }
        )

    async def completions(self, body: Any, ctx: RequestContext) -> Response:
        req = parse_completion(
            body, self.limits, max_logprobs=self.backend_max_logprobs, context_length=self.generator.context_length
        )
        self.check_model(req.model)
        for prompt in req.prompts:
            if isinstance(prompt, list):
                bad = [t for t in prompt if not 0 <= t < self.vocab_size]
                if bad:
                    raise RequestError(
                        400, f"token id {bad[0]} is outside the vocabulary (0 to {self.vocab_size - 1})", param="prompt"
                    )
        if req.stream:
            return await self._stream(req, ctx)
        parts = await self.units(ctx, [_bind(self._complete_prompt, req, p, ctx) for p in req.prompts])
        results = [result for result, _ in parts]
        choices = [choice for _, prompt_choices in parts for choice in prompt_choices]
        for i, choice in enumerate(choices):
            choice["index"] = i
        self.metrics.count("prompt_tokens", sum(r.prompt_tokens for r in results))
        return JSONResponse(self.runner.response_from(choices, results))

    def _complete_prompt(
        self, req: CompletionRequest, prompt: str | list[int], ctx: RequestContext
    ) -> tuple[Generation, list[dict[str, Any]]]:
        """One prompt's generation and its choices (in a worker thread). Its tokens are counted
        as they come: one sequence at a time is streamed (greedy ``n`` copies it); sampled
        ``n > 1`` runs as one call and is counted when it ends."""
        sampled_many = req.n > 1 and req.config.do_sample
        if req.config.max_new_tokens == 0 or sampled_many:
            result = self.runner.generate(req, prompt)
            self.metrics.count("generation_tokens", result.completion_tokens)
            self.metrics.count("sequences", len(result.sequences), outcome="finished")
        else:
            result = self._run_stream(req, prompt, ctx, None)
            if req.n > 1:
                result = Generation(result.prompt, result.prompt_token_ids, result.sequences * req.n, result.settings)
        return result, self.runner.choices(req, [result])

    def _run_stream(
        self, req: CompletionRequest, prompt: str | list[int], ctx: RequestContext, channel: Channel | None
    ) -> Generation:
        """Generate one sequence through the backend's stream (in a worker thread), counting its
        tokens; with a ``channel``, hand each chunk to the response (echoed prompt first). The
        stream is opened, read and closed by this one thread."""
        stream, prompt_text = self._open_stream(req, prompt)
        tracker = _Tracker(self, ctx)
        chunks = 0
        finished = False
        try:
            if channel is not None:
                channel.put(("open", None))
                if req.echo:
                    channel.put(("text", prompt_text))
            for chunk in stream:
                chunks += 1
                count = stream.token_count
                tracker.update(count if count is not None else chunks)
                if channel is not None:
                    channel.put(("text", chunk))
            result: Generation = stream.result
            tracker.update(result.completion_tokens)
            finished = True
            return result
        finally:
            stream.close()
            if not finished:
                count = stream.token_count
                tracker.update(count if count is not None else chunks)
            self.metrics.count("sequences", 1, outcome="finished" if finished else "cancelled")

    def _open_stream(self, req: CompletionRequest, prompt: str | list[int]) -> tuple[Any, str]:
        gen = self.generator
        if isinstance(prompt, str):
            return gen.stream(prompt, req.config), prompt
        return gen.stream_tokens(prompt, req.config), gen.detokenize(prompt)

    async def _stream(self, req: CompletionRequest, ctx: RequestContext) -> Response:
        prompt = req.prompts[0]
        loop = asyncio.get_running_loop()
        channel = Channel(loop)
        ctx.on_cancel(channel.close)

        def produce() -> tuple[Generation, dict[str, Any] | None]:
            result = self._run_stream(req, prompt, ctx, channel)
            logprobs = None
            if req.logprobs is not None:
                logprobs = self.runner.logprobs(req, result, result.sequences[0])
            return result, logprobs

        task = asyncio.ensure_future(self.unit(ctx, produce))
        task.add_done_callback(lambda _: channel.end())
        try:
            first = await channel.get()  # "open" once the stream is opened and checked
        except BaseException:
            channel.close()
            ctx.scope.cancel()
            await asyncio.wait([task])
            raise
        if first is END:
            await asyncio.wait([task])
            task.result()  # raises the request's error (a 400 for a prompt too long, ...)
            raise RequestError(500, "the stream ended before it began", type="server_error")
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
            while True:
                item = await channel.get()
                if item is END:
                    break
                kind, text = item
                if kind == "text":
                    yield event([{"index": 0, "text": text, "logprobs": None, "finish_reason": None}])
            error = task.exception() if not task.cancelled() else Cancelled("the request was cancelled")
            if error is not None:
                err = self.error_for(error, ctx)
                yield f"data: {json.dumps(self.redacted(err.body()))}\n\n"
                yield "data: [DONE]\n\n"
                return
            result, logprobs = task.result()
            self.metrics.count("prompt_tokens", result.prompt_tokens)
            seq = result.sequences[0]
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
            if not task.done():
                ctx.cancel("disconnect")  # the response ended early: its client is gone
            channel.close()
            await asyncio.wait([task])
            if not task.cancelled():
                task.exception()  # retrieved
            self._done(ctx)

        return _EventStream(events(), cleanup, self, ctx, working=lambda: not task.done())


class _EventStream(StreamingResponse):
    """A server-sent-event stream that runs ``cleanup`` however it ends: finished, failed, or
    its client gone (the request is then cancelled and its engine work stops at the next step).
    It is counted in the server's metrics when it ends."""

    def __init__(
        self,
        content: AsyncIterator[str],
        cleanup: Callable[[], Awaitable[None]],
        server: _Server,
        ctx: RequestContext,
        *,
        working: Callable[[], bool],
    ) -> None:
        super().__init__(content, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        self._cleanup = cleanup
        self._server = server
        self._ctx = ctx
        self._working = working
        self.server_started = time.monotonic()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watcher = asyncio.ensure_future(_watch_disconnect(receive, self._ctx, self._working))
        try:
            await super().__call__(scope, receive, send)
        finally:
            watcher.cancel()
            with anyio.CancelScope(shield=True):
                await self._cleanup()
                self._server._count("/v1/completions", self, self.server_started)


async def _watch_disconnect(receive: Receive, ctx: RequestContext, working: Callable[[], bool] = lambda: True) -> None:
    """Cancel ``ctx`` when its client disconnects while its engine work goes on (``working()``;
    the request's body has been read already, so the next message the server gives is the
    disconnection, or the end of the response)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if working():
                ctx.cancel("disconnect")
            return


def _bind(fn: Callable[..., T], *args: Any) -> Callable[[], T]:
    return lambda: fn(*args)


def _hidden_names(generator: Generator, name: str) -> list[str]:
    """The spellings of the model's local path that error messages must not show (longest
    first, so a full path is replaced before a part of it)."""
    model = str(generator.model)
    if display_name(model) == model:
        return []
    names = {model, model.rstrip("/\\")}
    with contextlib.suppress(OSError, ValueError):
        names.add(str(Path(model).expanduser().resolve()))
    names.update(str(path) for path in generator.model_files)
    return sorted((n for n in names if n and n != name), key=len, reverse=True)


def _vocab_size(generator: Generator) -> int:
    """How many token ids the model has (its logits' length; the limit of a top-N backend)."""
    size = generator.vocab_size
    if size is not None:
        return size
    limit = generator.capabilities.max_logprobs
    if limit is None:
        raise InvalidInput("the backend gives neither its vocabulary size nor full logits")
    return limit


def create_app(
    generator: Generator,
    *,
    name: str | None = None,
    api_key: str | None = None,
    limits: Limits | None = None,
    metrics: bool = False,
) -> Starlette:
    """The ASGI application serving ``generator`` under the model name ``name`` (default: the
    model's file or folder name for a local path, else the model as named). With ``api_key``
    every endpoint but ``/health`` needs ``Authorization: Bearer <api_key>``; with ``metrics``
    ``GET /metrics`` answers in Prometheus' text format (behind the key, when there is one).
    ``app.state.server.begin_shutdown(grace_s)`` starts a graceful shutdown (see
    :func:`nextword.serve.run.serve`)."""
    server = _Server(generator, name or display_name(generator.model), api_key, limits or Limits(), metrics)
    ep = server.endpoint
    eng = server.engine_endpoint
    routes = [
        Route("/health", ep("/health", server.health, auth=False), methods=["GET"]),
        Route("/v1/models", ep("/v1/models", server.models), methods=["GET"]),
        Route("/v1/completions", eng("/v1/completions", server.completions), methods=["POST"]),
        Route("/tokenize", eng("/tokenize", server.tokenize), methods=["POST"]),
        Route("/detokenize", eng("/detokenize", server.detokenize), methods=["POST"]),
        Route("/v1/next_words", eng("/v1/next_words", server.next_words), methods=["POST"]),
        Route("/v1/explain", eng("/v1/explain", server.explain), methods=["POST"]),
        *playground_routes(),  # the browser playground at / (static files, no data, no key)
    ]
    if metrics:
        routes.append(Route("/metrics", ep("/metrics", server.metrics_endpoint), methods=["GET"]))

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
        kind = "invalid_request_error" if status < 500 else "server_error"
        return JSONResponse(error_body(f"{detail}: {request.method} {request.url.path}", kind), status_code=status)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        server.loop = asyncio.get_running_loop()
        try:
            yield
        finally:
            server.workers.shutdown()

    app = Starlette(
        routes=routes, exception_handlers={HTTPException: http_error, Exception: http_error}, lifespan=lifespan
    )
    app.state.server = server
    return app
