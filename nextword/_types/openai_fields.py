"""How the fields of an OpenAI-style completions request map onto :class:`DecodingConfig`.

One table for both directions: ``nextword serve`` reads a request's fields into a config with it,
and the ``openai`` backend writes a config into a request with it (each server dialect then
keeps the fields it honours, under its own names where they differ).
"""

from __future__ import annotations

import dataclasses

__all__ = ["OPENAI_FIELDS", "OpenAIField", "openai_field_names"]


@dataclasses.dataclass(frozen=True)
class OpenAIField:
    """One request field and the :class:`DecodingConfig` option it sets."""

    name: str
    """The request field (OpenAI's or vLLM's name)."""
    option: str
    """The DecodingConfig field."""
    kind: type
    """The JSON type of the field's value (ints are taken for floats)."""
    off: object
    """The value that leaves the option unset (the request means "not asked for")."""
    plain: bool = True
    """The value is the option's value as it stands; False where the mapping needs a rule of its
    own (``temperature`` 0 means greedy, ``top_k`` 0 is off too, ``stop`` may be one string,
    ``n`` is ``num_return_sequences`` only when sampling)."""


OPENAI_FIELDS: tuple[OpenAIField, ...] = (
    OpenAIField("max_tokens", "max_new_tokens", int, 16, plain=False),
    OpenAIField("temperature", "temperature", float, 1.0, plain=False),
    OpenAIField("top_k", "top_k", int, -1, plain=False),
    OpenAIField("top_p", "top_p", float, 1.0),
    OpenAIField("min_p", "min_p", float, 0.0),
    OpenAIField("typical_p", "typical_p", float, 1.0),
    OpenAIField("repetition_penalty", "repetition_penalty", float, 1.0),
    OpenAIField("min_tokens", "min_new_tokens", int, 0),
    OpenAIField("no_repeat_ngram_size", "no_repeat_ngram_size", int, 0),
    OpenAIField("seed", "seed", int, None, plain=False),
    OpenAIField("stop", "stop", list, None, plain=False),
    OpenAIField("n", "num_return_sequences", int, 1, plain=False),
)


def openai_field_names(*options: str) -> dict[str, str]:
    """``{DecodingConfig option: request field}`` for ``options``: the fields under which a server
    that uses OpenAI's and vLLM's names takes them. An option without a field raises KeyError."""
    names = {f.option: f.name for f in OPENAI_FIELDS}
    return {option: names[option] for option in options}
