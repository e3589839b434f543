"""Reading OpenAI-style request bodies into nextword's own types, strictly.

Every field is type-checked; a field nextword does not know, or an OpenAI option it cannot honour
(``presence_penalty``, ``logit_bias``, ``best_of``, ``suffix``), is refused with a 400 naming it,
never silently ignored. Defaults are OpenAI's (``temperature=1``, ``max_tokens=16``), so a client
that names no option gets what it would get from OpenAI or vLLM; ``temperature=0`` is greedy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from nextword._types.decoding_config import DecodingConfig
from nextword.errors import InvalidConfig
from nextword.serve.errors import RequestError

__all__ = ["CompletionRequest", "Limits", "parse_completion", "field"]

_OPENAI_DEFAULT_MAX_TOKENS = 16


@dataclasses.dataclass(frozen=True)
class Limits:
    """Bounds the server enforces on every request."""

    max_body_bytes: int = 1 << 20
    """Largest request body accepted (413 above)."""
    max_tokens: int = 4096
    """Most new tokens one completion may ask for (also bounded by the context window)."""
    max_prompts: int = 64
    """Most prompts in one list prompt."""
    max_n: int = 16
    """Most completions per prompt (``n``)."""
    max_queue: int = 256
    """Most requests waiting for one model at once (503 above)."""
    parallel: int = 1
    """Requests that may call the generator at once (more than 1 only for thread-safe backends,
    such as the built-in ones; ``llamacpp`` then batches concurrent generations)."""


_COMPLETION_FIELDS = {
    # OpenAI
    "model",
    "prompt",
    "max_tokens",
    "temperature",
    "top_p",
    "n",
    "stream",
    "stream_options",
    "logprobs",
    "echo",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "best_of",
    "suffix",
    "user",
    # vLLM's extra fields
    "top_k",
    "min_p",
    "repetition_penalty",
    "min_tokens",
    "return_tokens_as_token_ids",
    "return_token_ids",
    # nextword's own extra fields
    "typical_p",
    "no_repeat_ngram_size",
}


@dataclasses.dataclass(frozen=True)
class CompletionRequest:
    """A parsed ``POST /v1/completions`` body."""

    model: str | None
    prompts: list[str | list[int]]
    config: DecodingConfig
    n: int
    stream: bool
    include_usage: bool
    logprobs: int | None
    echo: bool
    token_id_keys: bool
    return_token_ids: bool


_MISSING = object()


def field(body: Mapping[str, Any], name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    """``body[name]`` checked against ``kind`` (``None`` allowed, meaning ``default``); bools are
    never taken for numbers, ints are taken for floats."""
    value = body.get(name, _MISSING)
    if value is _MISSING or value is None:
        return default
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if not ok and float in kinds and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        names = " or ".join(k.__name__ for k in kinds)
        raise RequestError(400, f"{name!r} must be of type {names}, got {type(value).__name__}", param=name)
    return value


def _prompts(body: Mapping[str, Any], limits: Limits) -> list[str | list[int]]:
    prompt = body.get("prompt", _MISSING)
    if prompt is _MISSING or prompt is None:
        raise RequestError(400, "'prompt' is required", param="prompt")
    if isinstance(prompt, str):
        return [prompt]
    if not isinstance(prompt, list) or not prompt:
        raise RequestError(
            400, "'prompt' must be a string, a list of strings, a list of token ids or a list of those", param="prompt"
        )
    if all(_is_int(t) for t in prompt):
        return [list(prompt)]
    if len(prompt) > limits.max_prompts:
        raise RequestError(400, f"at most {limits.max_prompts} prompts per request, got {len(prompt)}", param="prompt")
    out: list[str | list[int]] = []
    for item in prompt:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, list) and item and all(_is_int(t) for t in item):
            out.append(list(item))
        else:
            raise RequestError(
                400, "each prompt of a list must be a string or a non-empty list of token ids", param="prompt"
            )
    return out


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_completion(body: Any, limits: Limits, *, max_logprobs: int) -> CompletionRequest:
    """Check a completions body and translate it to a :class:`DecodingConfig` and the response
    options. Raises :class:`RequestError` (400) naming the first problem."""
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    unknown = sorted(set(body) - _COMPLETION_FIELDS)
    if unknown:
        raise RequestError(
            400, f"unknown field {unknown[0]!r} (nextword refuses options it would ignore)", param=unknown[0]
        )
    for name, neutral in (("presence_penalty", 0.0), ("frequency_penalty", 0.0)):
        value = field(body, name, float, neutral)
        if value != neutral:
            raise RequestError(
                400, f"{name!r} is not supported by nextword; use repetition_penalty instead", param=name
            )
    if field(body, "logit_bias", dict, {}):
        raise RequestError(400, "'logit_bias' is not supported by nextword", param="logit_bias")
    if field(body, "suffix", str, None) is not None:
        raise RequestError(400, "'suffix' (insertion) is not supported by nextword", param="suffix")
    field(body, "user", str)

    model = field(body, "model", str)
    prompts = _prompts(body, limits)
    max_tokens = field(body, "max_tokens", int, _OPENAI_DEFAULT_MAX_TOKENS)
    if not 0 <= max_tokens <= limits.max_tokens:
        raise RequestError(400, f"'max_tokens' must be in 0..{limits.max_tokens}, got {max_tokens}", param="max_tokens")
    n = field(body, "n", int, 1)
    if not 1 <= n <= limits.max_n:
        raise RequestError(400, f"'n' must be in 1..{limits.max_n}, got {n}", param="n")
    best_of = field(body, "best_of", int, n)
    if best_of != n:
        raise RequestError(400, "'best_of' other than n is not supported by nextword", param="best_of")
    logprobs = field(body, "logprobs", int)
    if logprobs is not None and not 0 <= logprobs <= max_logprobs:
        raise RequestError(400, f"'logprobs' must be in 0..{max_logprobs}, got {logprobs}", param="logprobs")
    stream = field(body, "stream", bool, False)
    stream_options = field(body, "stream_options", dict, {})
    if set(stream_options) - {"include_usage"}:
        raise RequestError(400, "'stream_options' takes only 'include_usage'", param="stream_options")
    include_usage = field(stream_options, "include_usage", bool, False)
    if stream and (len(prompts) != 1 or n != 1):
        raise RequestError(400, "a streamed completion takes one prompt and n=1", param="stream")

    options: dict[str, Any] = {"max_new_tokens": max_tokens}
    temperature = field(body, "temperature", float, 1.0)
    if temperature == 0.0:
        options["do_sample"] = False
    else:
        options["do_sample"] = True
        options["temperature"] = temperature
    top_p = field(body, "top_p", float, 1.0)
    if top_p != 1.0:
        options["top_p"] = top_p
    top_k = field(body, "top_k", int, -1)
    if top_k not in (-1, 0):
        options["top_k"] = top_k
    for name in ("min_p",):
        value = field(body, name, float, 0.0)
        if value != 0.0:
            options[name] = value
    typical_p = field(body, "typical_p", float, 1.0)
    if typical_p != 1.0:
        options["typical_p"] = typical_p
    penalty = field(body, "repetition_penalty", float, 1.0)
    if penalty != 1.0:
        options["repetition_penalty"] = penalty
    min_tokens = field(body, "min_tokens", int, 0)
    if min_tokens:
        options["min_new_tokens"] = min_tokens
    ngram = field(body, "no_repeat_ngram_size", int, 0)
    if ngram:
        options["no_repeat_ngram_size"] = ngram
    stop = body.get("stop")
    if stop is not None:
        if isinstance(stop, str):
            stop = [stop]
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop) or len(stop) > 16:
            raise RequestError(400, "'stop' must be a string or a list of at most 16 strings", param="stop")
        if stop:
            options["stop"] = tuple(stop)
    seed = field(body, "seed", int)
    if seed is not None:
        options["seed"] = seed
    if n > 1 and options["do_sample"]:
        options["num_return_sequences"] = n
    try:
        config = DecodingConfig(**options)
    except InvalidConfig as exc:
        raise RequestError(400, str(exc)) from None
    return CompletionRequest(
        model=model,
        prompts=prompts,
        config=config,
        n=n,
        stream=stream,
        include_usage=include_usage,
        logprobs=logprobs,
        echo=field(body, "echo", bool, False),
        token_id_keys=field(body, "return_tokens_as_token_ids", bool, False),
        return_token_ids=field(body, "return_token_ids", bool, False),
    )
