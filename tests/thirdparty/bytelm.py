"""A third-party-style backend, written the way an outside plugin author would: a byte-level
bigram language model in NumPy, registered through nextword's public hooks only.

Its tokens are single UTF-8 bytes (plus an end-of-text token), so multi-byte characters span
several tokens: a real test of UTF-8-safe streaming.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

import nextword
from nextword import BackendSpec, BaseGenerator, Capabilities, OptionSpec, Support

EOS = 256
VOCAB = 257


class BigramSession:
    """Only the last token matters to a bigram model, so a step costs one table lookup."""

    def __init__(self, table: npt.NDArray[np.float32], last: int) -> None:
        self.table = table
        self.last = last

    def logits(self) -> npt.NDArray[np.float32]:
        return self.table[self.last]

    def feed(self, token_id: int) -> None:
        self.last = token_id


class ByteBigramGenerator(BaseGenerator):
    """Random-but-seeded bigram logits over bytes; ``model`` is the seed, as a string."""

    def __init__(self, model: str, *, spec: BackendSpec, context: int = 256, scale: float = 3.0) -> None:
        super().__init__(model, {"context": context, "scale": scale}, spec=spec)
        try:
            seed = int(model)
        except ValueError:
            raise nextword.ModelLoadError(f"bytelm models are integer seeds, got {model!r}") from None
        rng = np.random.default_rng(seed)
        table = rng.normal(0.0, scale, size=(VOCAB, VOCAB)).astype(np.float32)
        # Favour ASCII letters and spaces so the text looks like text, but keep every byte possible.
        table[:, 97:123] += 2.0
        table[:, 32] += 2.5
        table[:, 0xC3] += 1.5  # lead byte of é, ü, ...
        table[:, EOS] -= 3.0
        self.table = table
        self._context = context

    @property
    def context_length(self) -> int:
        return self._context

    @property
    def eos_token_ids(self) -> frozenset[int]:
        return frozenset({EOS})

    def tokenize(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return b"".join(b"<eos>" if t == EOS else bytes([t]) for t in token_ids).decode("utf-8", errors="replace")

    def next_token_logits(self, token_ids: Sequence[int]) -> npt.NDArray[np.float32]:
        return self.table[token_ids[-1]].copy()

    def open_session(self, prompt_ids: Sequence[int]) -> BigramSession:
        return BigramSession(self.table, prompt_ids[-1])


def _load(model: str, **options: Any) -> ByteBigramGenerator:
    return ByteBigramGenerator(model, spec=SPEC, **options)


#: The backend's one declaration (name, options, capabilities); the generator is handed it.
SPEC = BackendSpec(
    name="bytelm",
    load=_load,
    default_model="0",
    description="byte-level bigram LM (test plugin)",
    options={
        "context": OptionSpec(int, "context window in bytes", default=256, minimum=8),
        "scale": OptionSpec(float, "spread of the random logits", default=3.0),
    },
    capabilities=Capabilities.all(Support.EMULATED),
)


class BytelmPlugin:
    """The plugin object: nothing but the public hook."""

    @nextword.hookimpl
    def register_backends(self, register: Callable[[BackendSpec], None]) -> None:
        register(SPEC)
