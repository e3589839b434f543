"""Checks on what callers pass in, shared by every entry point (generation, prediction, scoring,
word search, explain) so that each reports bad input the same way, before the engine runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from nextword.errors import ContextLengthExceeded, InvalidConfig, InvalidInput

if TYPE_CHECKING:
    from nextword._types.decoding_config import DecodingConfig

__all__ = ["added_first_token", "check_length", "check_min_new", "encode_text", "prompt_list", "utf8_bytes"]


def encode_text(generator: Any, text: object, what: str = "prompt") -> list[int]:
    """``generator.tokenize(text)`` after checking that ``text`` is a non-empty string and before
    returning at least one token; otherwise :class:`~nextword.errors.InvalidInput` naming
    ``what`` ("prompt", "text") and what was wrong."""
    if not isinstance(text, str):
        raise InvalidInput(f"the {what} must be a string, got {type(text).__name__}")
    if not text:
        raise InvalidInput(f"the {what} is empty; give at least one character of text")
    ids = list(generator.tokenize(text))
    if not ids:
        raise InvalidInput(f"the {what} {text!r} produced no tokens")
    return ids


def added_first_token(generator: Any, ids: Sequence[int], text: str) -> bool:
    """Whether the tokenizer put a token of its own (a BOS token) before ``text``, whose tokens
    are ``ids``."""
    return bool(generator.detokenize(list(ids)) != text and generator.detokenize(list(ids[1:])) == text)


def utf8_bytes(text: str) -> bytes:
    """``text`` encoded as UTF-8, or :class:`~nextword.errors.InvalidInput` saying where it is not
    valid Unicode (a lone surrogate, which Python strings may hold but no tokenizer can read)."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"the text is not valid Unicode ({exc.reason} at position {exc.start})") from None


def check_length(n_prompt: int, n_new: int, limit: int, what: str = "prompt") -> None:
    """Raise :class:`~nextword.errors.ContextLengthExceeded` unless ``n_prompt`` tokens plus
    ``n_new`` more fit a context window of ``limit`` tokens; the message says by how much and
    what to change."""
    if n_prompt + n_new <= limit:
        return
    if n_prompt > limit or n_new == 0:
        msg = f"the {what} has {n_prompt} tokens but the model's context window holds {limit}; shorten the {what}"
    elif n_prompt >= limit:
        msg = (
            f"the {what} has {n_prompt} tokens and fills the model's context window of {limit}; "
            f"no room is left for new tokens; shorten the {what}"
        )
    else:
        msg = (
            f"the {what} has {n_prompt} tokens and {n_new} new tokens were asked for, "
            f"{n_prompt + n_new} in all, more than the model's context window of {limit}; "
            f"shorten the {what} or lower max_new_tokens (or max_length)"
        )
    raise ContextLengthExceeded(msg, n_tokens=n_prompt + n_new, limit=limit)


def check_min_new(cfg: DecodingConfig, n_new: int) -> None:
    """Refuse a ``min_new_tokens`` larger than the ``n_new`` tokens a prompt leaves to generate."""
    if cfg.min_new_tokens > n_new:
        raise InvalidConfig(
            f"min_new_tokens={cfg.min_new_tokens} is more than the {n_new} tokens this prompt leaves to "
            "generate (max_length counts the prompt); lower min_new_tokens or raise the limit"
        )


def prompt_list(prompts: object) -> list[str]:
    """``prompts`` as a non-empty list of prompts, or :class:`~nextword.errors.InvalidInput`."""
    if not isinstance(prompts, Sequence) or isinstance(prompts, (bytes, bytearray)):
        raise InvalidInput(f"prompt must be a string or a list of strings, got {type(prompts).__name__}")
    if not prompts:
        raise InvalidInput("the list of prompts is empty")
    return list(prompts)
