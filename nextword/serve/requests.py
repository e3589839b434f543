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
from nextword._types.openai_fields import OPENAI_FIELDS
from nextword.errors import InvalidConfig
from nextword.serve.errors import RequestError
from nextword.serve.limits import Limits, over_limit

__all__ = ["CompletionRequest", "Limits", "check_cost", "parse_completion", "field"]

_OPENAI_DEFAULT_MAX_TOKENS = 16


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
        raise over_limit("max_prompts", limits.max_prompts, f"{len(prompt)} prompts", param="prompt")
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


def parse_completion(
    body: Any, limits: Limits, *, max_logprobs: int, context_length: int | None = None
) -> CompletionRequest:
    """Check a completions body and translate it to a :class:`DecodingConfig` and the response
    options. ``max_logprobs`` is what the backend can give (its vocabulary, or its top-N); the
    server's own ``limits`` bound that and the request's whole cost (:func:`check_cost`).
    Raises :class:`RequestError` (400) naming the first problem, or the limit a request is over."""
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    _refuse_unsupported(body)
    model = field(body, "model", str)
    prompts = _prompts(body, limits)
    max_tokens, n, logprobs = _sizes(body, limits, max_logprobs)
    stream = field(body, "stream", bool, False)
    stream_options = field(body, "stream_options", dict, {})
    if set(stream_options) - {"include_usage"}:
        raise RequestError(400, "'stream_options' takes only 'include_usage'", param="stream_options")
    include_usage = field(stream_options, "include_usage", bool, False)
    if stream and (len(prompts) != 1 or n != 1):
        raise RequestError(400, "a streamed completion takes one prompt and n=1", param="stream")
    options = decoding_options(body, max_tokens, n)
    echo = field(body, "echo", bool, False)
    check_cost(prompts, n, max_tokens, logprobs, echo, limits, context_length)
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
        echo=echo,
        token_id_keys=field(body, "return_tokens_as_token_ids", bool, False),
        return_token_ids=field(body, "return_token_ids", bool, False),
    )


def _refuse_unsupported(body: dict[str, Any]) -> None:
    """Refuse unknown fields and OpenAI options nextword would otherwise have to ignore."""
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


def _sizes(body: dict[str, Any], limits: Limits, max_logprobs: int) -> tuple[int, int, int | None]:
    """``max_tokens``, ``n`` and ``logprobs``, each checked against its range and the limits."""
    max_tokens = field(body, "max_tokens", int, _OPENAI_DEFAULT_MAX_TOKENS)
    if max_tokens < 0:
        raise RequestError(400, f"'max_tokens' must be at least 0, got {max_tokens}", param="max_tokens")
    if max_tokens > limits.max_tokens:
        raise over_limit("max_tokens", limits.max_tokens, f"'max_tokens' is {max_tokens}", param="max_tokens")
    n = field(body, "n", int, 1)
    if n < 1:
        raise RequestError(400, f"'n' must be at least 1, got {n}", param="n")
    if n > limits.max_n:
        raise over_limit("max_n", limits.max_n, f"'n' is {n}", param="n")
    if field(body, "best_of", int, n) != n:
        raise RequestError(400, "'best_of' other than n is not supported by nextword", param="best_of")
    logprobs = field(body, "logprobs", int)
    if logprobs is not None and logprobs < 0:
        raise RequestError(400, f"'logprobs' must be at least 0, got {logprobs}", param="logprobs")
    if logprobs is not None and logprobs > limits.max_logprobs:
        raise over_limit("max_logprobs", limits.max_logprobs, f"'logprobs' is {logprobs}", param="logprobs")
    if logprobs is not None and logprobs > max_logprobs:
        raise RequestError(
            400, f"'logprobs' must be in 0..{max_logprobs} (what the backend gives), got {logprobs}", param="logprobs"
        )
    return max_tokens, n, logprobs


def decoding_options(body: dict[str, Any], max_tokens: int, n: int) -> dict[str, Any]:
    """The :class:`DecodingConfig` options a completions body asks for, by the table of
    :data:`~nextword._types.openai_fields.OPENAI_FIELDS`: its plain fields one to one, and the
    rules of the others (``temperature`` 0 is greedy, any other samples; ``top_k`` -1 or 0 is
    off; ``stop`` is a string or at most 16; ``n`` sampled sequences, greedy ones being computed
    once and repeated)."""
    options: dict[str, Any] = {"max_new_tokens": max_tokens}
    temperature = field(body, "temperature", float, 1.0)
    options["do_sample"] = temperature != 0.0
    if options["do_sample"]:
        options["temperature"] = temperature
    top_k = field(body, "top_k", int, -1)
    if top_k not in (-1, 0):
        options["top_k"] = top_k
    for spec in OPENAI_FIELDS:
        if spec.plain:
            value = field(body, spec.name, spec.kind, spec.off)
            if value != spec.off:
                options[spec.option] = value
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
    return options


def check_cost(
    prompts: list[str | list[int]],
    n: int,
    max_tokens: int,
    logprobs: int | None,
    echo: bool,
    limits: Limits,
    context_length: int | None,
) -> None:
    """Refuse a completion whose whole work is over the server's limits, before any engine
    work: the new tokens it asks for (prompts x ``n`` x ``max_tokens``, ``max_request_tokens``)
    and its log-probability entries (``max_logprob_entries``; see :class:`Limits`)."""
    sequences = len(prompts) * n
    new_tokens = sequences * max_tokens
    if new_tokens > limits.max_request_tokens:
        raise over_limit(
            "max_request_tokens",
            limits.max_request_tokens,
            f"the request asks for {len(prompts)} prompt(s) x n={n} x max_tokens={max_tokens}"
            f" = {new_tokens} new tokens",
            param="max_tokens",
        )
    if logprobs is None:
        return
    positions = 0
    for prompt in prompts:
        per_sequence = max_tokens
        if echo:
            length = len(prompt) if isinstance(prompt, list) else len(prompt.encode("utf-8", "surrogatepass")) + 1
            per_sequence += length if context_length is None else min(length, context_length)
        positions += per_sequence * n
    entries = positions * (logprobs + 1)
    if entries > limits.max_logprob_entries:
        raise over_limit(
            "max_logprob_entries",
            limits.max_logprob_entries,
            f"the request asks for log-probabilities at up to {positions} positions x (logprobs={logprobs} + 1)"
            f" = {entries} entries",
            param="logprobs",
        )
