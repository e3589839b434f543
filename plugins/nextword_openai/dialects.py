"""What each kind of OpenAI-compatible server takes, and under which names.

Servers accept different extra fields and most silently ignore fields they do not know, so the
backend never guesses: it recognises the server (``owned_by`` in ``GET /v1/models``, or the
``server`` load option) and sends only fields that server is known to honour. A decoding option
without a field on that server raises :class:`~nextword.UnsupportedOption`.

Measured here (the tests run both): ``nextword`` (``nextword serve``) and ``llama-cpp-python``
(``python -m llama_cpp.server``, 0.3.x: ignores ``n`` and ``min_tokens``, takes only text prompts,
applies ``repeat_penalty=1.1`` unless sent 1.0, and its prompt log-probabilities are shifted by one
position, so nextword does not score through it). From the servers' documentation, not run here:
``vllm`` and ``llama.cpp`` (``llama-server``).
"""

from __future__ import annotations

import dataclasses

from nextword.backend import openai_field_names

__all__ = ["DIALECTS", "Dialect", "detect"]


@dataclasses.dataclass(frozen=True)
class Dialect:
    """One server kind: the request field for each nextword decoding option it honours, and its
    other abilities."""

    name: str
    fields: dict[str, str]
    """nextword option -> the server's request field."""
    token_prompts: bool
    """Takes prompts as lists of token ids."""
    max_logprobs: int | None
    """Most ``logprobs`` per position it returns (None: whatever it reports, else unlimited)."""
    prompt_logprobs: bool
    """``echo`` with ``logprobs`` returns the prompt's log-probabilities (scoring)."""
    token_id_keys: bool
    """Understands ``return_tokens_as_token_ids`` (log-probability keys ``token_id:N``)."""
    returns_token_ids: bool
    """Understands ``return_token_ids`` (the generated ids in each choice)."""
    tokenize_path: str | None
    detokenize_path: str | None
    neutral: dict[str, object] = dataclasses.field(default_factory=dict)
    """Fields sent on every request to switch off the server's own defaults."""


_COMMON = ("temperature", "top_p", "seed", "stop")

DIALECTS: dict[str, Dialect] = {
    "nextword": Dialect(
        "nextword",
        openai_field_names(
            *_COMMON,
            "top_k",
            "min_p",
            "typical_p",
            "repetition_penalty",
            "min_new_tokens",
            "no_repeat_ngram_size",
            "num_return_sequences",
        ),
        token_prompts=True,
        max_logprobs=None,
        prompt_logprobs=True,
        token_id_keys=True,
        returns_token_ids=True,
        tokenize_path="/tokenize",
        detokenize_path="/detokenize",
    ),
    "vllm": Dialect(
        "vllm",
        openai_field_names(*_COMMON, "top_k", "min_p", "repetition_penalty", "min_new_tokens", "num_return_sequences"),
        token_prompts=True,
        max_logprobs=20,
        prompt_logprobs=True,
        token_id_keys=True,
        returns_token_ids=True,
        tokenize_path="/tokenize",
        detokenize_path="/detokenize",
    ),
    "llama-cpp-python": Dialect(
        "llama-cpp-python",
        {**openai_field_names(*_COMMON, "top_k", "min_p", "typical_p"), "repetition_penalty": "repeat_penalty"},
        token_prompts=False,
        max_logprobs=None,
        # Measured (0.3.36): with echo, each prompt token's log-probability is read from the
        # distribution *after* it, not before it (abetlen/llama-cpp-python#1983): unusable.
        prompt_logprobs=False,
        token_id_keys=False,
        returns_token_ids=False,
        tokenize_path="/extras/tokenize",
        detokenize_path="/extras/detokenize",
        neutral={"repeat_penalty": 1.0, "top_k": 0, "min_p": 0.0, "typical_p": 1.0, "top_p": 1.0},
    ),
    "llama.cpp": Dialect(
        "llama.cpp",
        {
            **openai_field_names(*_COMMON, "top_k", "min_p", "typical_p", "num_return_sequences"),
            "repetition_penalty": "repeat_penalty",
        },
        token_prompts=True,
        max_logprobs=None,
        prompt_logprobs=False,
        token_id_keys=False,
        returns_token_ids=False,
        tokenize_path="/tokenize",
        detokenize_path="/detokenize",
        neutral={"repeat_penalty": 1.0, "top_k": 0, "min_p": 0.0, "typical_p": 1.0, "top_p": 1.0},
    ),
    "openai": Dialect(
        "openai",
        openai_field_names(*_COMMON, "num_return_sequences"),
        token_prompts=True,
        max_logprobs=5,
        prompt_logprobs=True,
        token_id_keys=False,
        returns_token_ids=False,
        tokenize_path=None,
        detokenize_path=None,
    ),
}

_OWNERS = {"nextword": "nextword", "vllm": "vllm", "me": "llama-cpp-python", "llamacpp": "llama.cpp"}


def detect(models: object) -> str:
    """The dialect a ``GET /v1/models`` answer points to (``openai`` when nothing is recognised)."""
    try:
        owner = models["data"][0]["owned_by"]  # type: ignore[index]
    except (KeyError, IndexError, TypeError):
        return "openai"
    return _OWNERS.get(str(owner), "openai")
