"""The vocabulary's token bytes, indexed for "consistent with these typed bytes" queries: what
the completion of a typed word (:mod:`nextword._words.complete`) enumerates its paths from."""

from __future__ import annotations

import bisect
import dataclasses
from typing import Any

import numpy as np
import numpy.typing as npt

from nextword._contract.protocol import Generator
from nextword._words.cache import PerGenerator
from nextword._words.rule import REPLACEMENT, eos_ids, piece_reader

__all__ = ["PieceIndex", "piece_index"]

_INDEXES = PerGenerator()


@dataclasses.dataclass(frozen=True)
class PieceIndex:
    """Every token's bytes (UTF-8 of its text as it reads after other text), sorted for
    "consistent with these bytes" queries. ``pieces[t]`` is None for tokens left out: end-of-text
    and unknown ids, and, where ``token_bytes()`` gives None (bytes unknown), tokens holding part of a
    character (their text has U+FFFD, so their bytes are unknown; ``unknown`` maps the bytes
    before the U+FFFD to them, so that their mass is counted as unresolved rather than lost)."""

    keys: tuple[bytes, ...]
    ids: npt.NDArray[np.int64]
    lengths: npt.NDArray[np.int64]
    by_bytes: dict[bytes, tuple[int, ...]]
    pieces: tuple[bytes | None, ...]
    unknown: dict[bytes, tuple[int, ...]]

    @classmethod
    def build(cls, generator: Generator, vocab: int) -> PieceIndex:
        eos = eos_ids(generator)
        read: Any = None  # the tokens' texts, read only when the backend does not know their bytes
        pieces: list[bytes | None] = []
        unknown: dict[bytes, list[int]] = {}
        for t in range(vocab):
            piece: bytes | None = None
            if t not in eos:
                try:
                    piece = generator.token_bytes(t)
                    if piece is None:
                        read = read or piece_reader(generator)
                        text = read(t)
                        if REPLACEMENT in text:  # its bytes are unknown: only what comes before
                            unknown.setdefault(text.split(REPLACEMENT, 1)[0].encode("utf-8"), []).append(t)
                        else:
                            piece = text.encode("utf-8")
                except Exception:  # an id the tokenizer does not know (padding rows of the output layer)
                    piece = None
            pieces.append(piece or None)
        order = sorted((p, t) for t, p in enumerate(pieces) if p is not None)
        by_bytes: dict[bytes, list[int]] = {}
        for piece, t in order:
            by_bytes.setdefault(piece, []).append(t)
        return cls(
            keys=tuple(o[0] for o in order),
            ids=np.array([o[1] for o in order], dtype=np.int64),
            lengths=np.array([len(p or b"") for p in pieces], dtype=np.int64),
            by_bytes={k: tuple(v) for k, v in by_bytes.items()},
            pieces=tuple(pieces),
            unknown={k: tuple(v) for k, v in unknown.items()},
        )

    def consistent(self, rest: bytes) -> npt.NDArray[np.int64]:
        """Tokens whose bytes are a proper prefix of ``rest`` or begin with ``rest``."""
        heads = [t for j in range(1, len(rest)) for t in self.by_bytes.get(rest[:j], ())]
        lo = bisect.bisect_left(self.keys, rest)
        end = rest.rstrip(b"\xff")
        hi = len(self.keys) if not end else bisect.bisect_left(self.keys, end[:-1] + bytes([end[-1] + 1]))
        return np.concatenate([np.array(heads, dtype=np.int64), self.ids[lo:hi]])

    def maybe_consistent(self, rest: bytes) -> list[int]:
        """Tokens of unknown bytes (a split character, where ``token_bytes()`` gives None)
        that could be consistent with ``rest``: what their text shows is a prefix of it, followed
        there by a non-ASCII character."""
        out: list[int] = []
        for j in range(len(rest)):
            if rest[j] >= 0x80:
                out.extend(self.unknown.get(rest[:j], ()))
        return out


def piece_index(generator: Generator, vocab: int) -> PieceIndex:
    indexes: dict[int, PieceIndex] = _INDEXES.get(generator, dict)
    index = indexes.get(vocab)
    if index is None:
        index = indexes[vocab] = PieceIndex.build(generator, vocab)
    return index
