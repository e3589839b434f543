"""The engine: a character-level n-gram language model with Witten-Bell interpolation, in NumPy.

Nothing in this module knows about nextword. It plays the part that transformers or llama.cpp
play for the built-in backends: something that turns a context into next-token scores.
"""

from __future__ import annotations

import string
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

#: Characters every model knows, whatever its training text: printable ASCII and a few more.
BASE_CHARS = string.printable.replace("\x0b", "").replace("\x0c", "")

EOS_TEXT = "<|end|>"
"""How the end-of-text token is rendered when it is detokenized on its own."""

UNK_TEXT = "\ufffd"
"""How the unknown-character token is rendered."""

# A tiny, fixed preference for lower token ids, far below any real difference in probability.
# It only matters when two tokens have exactly the same counts at every order: then it makes the
# ranking strict, as Hugging Face's top_k (which keeps every token tied with the k-th) needs for
# top_k=1 to agree with greedy decoding.
_TIE_BREAK = 1e-9


class CharNGramModel:
    """Counts of characters after every context of up to ``order - 1`` characters.

    The vocabulary is the characters of the training text and `BASE_CHARS`, then an
    end-of-text token and an unknown-character token. Unknown characters can be read but are
    never predicted (their probability is 0).
    """

    def __init__(self, documents: Iterable[str], order: int = 5) -> None:
        if order < 1:
            raise ValueError(f"order must be at least 1, got {order}")
        documents = [d for d in documents if d]
        if not documents:
            raise ValueError("the training text is empty")
        self.order = order
        chars = sorted(set(BASE_CHARS).union(*documents))
        self.chars = chars
        self.index = {c: i for i, c in enumerate(chars)}
        self.eos_id = len(chars)
        self.unk_id = len(chars) + 1
        self.vocab_size = len(chars) + 2
        self._counts = self._count(documents)
        self._jitter = -_TIE_BREAK * np.arange(self.vocab_size) / self.vocab_size

    # ---- tokens ---------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """One token per character; characters outside the vocabulary become the unknown token."""
        return [self.index.get(c, self.unk_id) for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids``; the special tokens are rendered as `EOS_TEXT` and `UNK_TEXT`."""
        special = {self.eos_id: EOS_TEXT, self.unk_id: UNK_TEXT}
        return "".join(special.get(i) or self.chars[i] for i in ids)

    # ---- training -------------------------------------------------------------------------------

    def _count(self, documents: list[str]) -> list[dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]]]:
        """For each context length 0..order-1: context -> (next token ids, their counts)."""
        counters: list[defaultdict[tuple[int, ...], Counter[int]]] = [defaultdict(Counter) for _ in range(self.order)]
        for doc in documents:
            ids = self.encode(doc) + [self.eos_id]
            for i, token in enumerate(ids):
                for n in range(min(i, self.order - 1) + 1):
                    counters[n][tuple(ids[i - n : i])][token] += 1
        return [
            {
                ctx: (np.fromiter(c.keys(), dtype=np.int64), np.fromiter(c.values(), dtype=np.float64))
                for ctx, c in level.items()
            }
            for level in counters
        ]

    # ---- prediction -----------------------------------------------------------------------------

    # --8<-- [start:prediction]
    def probabilities(self, history: Sequence[int]) -> npt.NDArray[np.float64]:
        """P(next token | the last ``order - 1`` tokens of ``history``), Witten-Bell interpolated.

        Starts from the uniform distribution and mixes in each longer context that was seen in
        training: ``p = (counts + types * p_shorter) / (total + types)``, where ``types`` is how
        many different tokens followed that context.
        """
        p = np.full(self.vocab_size, 1.0 / (self.vocab_size - 1))
        p[self.unk_id] = 0.0
        for n in range(min(len(history), self.order - 1) + 1):
            ctx = tuple(history[len(history) - n :]) if n else ()
            seen = self._counts[n].get(ctx)
            if seen is None:
                break  # a longer context containing this one cannot have been seen either
            ids, counts = seen
            types = float(len(ids))
            mixed = types * p
            mixed[ids] += counts
            p = mixed / (counts.sum() + types)
        return p

    def logits(self, history: Sequence[int]) -> npt.NDArray[np.float64]:
        """Log-probabilities of the next token (the unknown token gets ``-inf``)."""
        with np.errstate(divide="ignore"):
            return np.log(self.probabilities(history)) + self._jitter

    # --8<-- [end:prediction]
