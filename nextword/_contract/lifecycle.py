"""The lifecycle part of the backend contract: after ``close()`` a generator refuses every call.

:class:`~nextword._contract.base.BaseGenerator` applies these wrappers to a subclass's own
methods when the subclass is defined, so a backend cannot forget either half: its ``close``
marks the generator closed, and its engine methods and public overrides raise
:class:`~nextword.errors.InvalidState` afterwards.
"""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["GUARDED", "marking_closed", "refusing_when_closed"]

# Methods a backend may define that the base refuses to run once the generator is closed.
GUARDED = (
    "tokenize",
    "detokenize",
    "next_token_logits",
    "open_session",
    "open_branches",
    "token_stream",
    "generate_ids",
    "generate_completions",
    "completion_stream",
    "native_word_prediction",
    "next_token_top_logprobs",
    "token_logprobs",
    "sequence_logits",
    "token_bytes",
    "generate",
    "generate_tokens",
    "stream",
    "stream_tokens",
    "predict_next",
    "score",
)


def refusing_when_closed(method: Any) -> Any:
    @functools.wraps(method)
    def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self._nextword_closed:
            self._refuse_closed()
        return method(self, *args, **kwargs)

    return guarded


def marking_closed(close: Any) -> Any:
    @functools.wraps(close)
    def closing(self: Any) -> None:
        try:
            close(self)
        finally:
            self._nextword_closed = True

    return closing
