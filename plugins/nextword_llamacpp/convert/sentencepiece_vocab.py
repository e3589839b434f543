"""A SentencePiece-style tokenizer (Gemma's) read from a Hugging Face ``tokenizer.json`` and laid out
as llama.cpp's ``llama`` vocabulary: tokens, scores and token types.

Transformers stores such a tokenizer as a byte-fallback BPE whose pieces mark spaces with ``▁``.
llama.cpp's SentencePiece tokenizer merges adjacent pieces by score, highest first, so the scores
must rank the normal pieces in the order the model's merges do: a piece's score is minus its rank
among the normal pieces (ids are in merge-priority order in these files). Byte pieces ``<0xNN>``
are BYTE (score 0); added special tokens CONTROL and other added tokens USER_DEFINED (score
-1000, as SentencePiece writes them); Gemma's runs of two or more spaces, which its SentencePiece
model declares as user-defined symbols and transformers spells with ``▁``, become USER_DEFINED
pieces of real spaces again.
"""

from __future__ import annotations

import re
from pathlib import Path

from nextword.errors import ModelLoadError
from nextword_llamacpp.convert.checkpoint import read_json
from nextword_llamacpp.convert.source_model import Vocab

__all__ = ["read_sentencepiece_bpe"]

_BYTE_PIECE = re.compile(r"<0x[0-9A-F]{2}>")
_SPACE_RUN = re.compile(r"▁{2,}")
# gguf.TokenType values
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6


def read_sentencepiece_bpe(src: Path, n_vocab: int, *, space_runs_user_defined: bool) -> Vocab:
    """The tokenizer of ``src`` (its ``tokenizer.json``) as a llama.cpp SentencePiece vocabulary
    of ``n_vocab`` entries (ids past the tokenizer become UNUSED ``[PAD<id>]`` pieces)."""
    path = src / "tokenizer.json"
    if not path.is_file():
        raise ModelLoadError(f"{src} has no tokenizer.json (needed for a SentencePiece-style vocabulary)")
    data = read_json(path)
    model = data.get("model", {})
    if model.get("type") != "BPE" or not model.get("byte_fallback"):
        raise ModelLoadError(f"{path} is not a byte-fallback BPE tokenizer (SentencePiece style)")
    vocab: dict[str, int] = model.get("vocab", {})
    added = {int(a["id"]): bool(a.get("special")) for a in data.get("added_tokens", [])}
    unk_piece = model.get("unk_token")
    tokens = [f"[PAD{i}]" for i in range(n_vocab)]
    types = [_UNUSED] * n_vocab
    for piece, i in vocab.items():
        if not 0 <= i < n_vocab:
            raise ModelLoadError(f"the tokenizer has ids outside the model's {n_vocab}-row embedding ({piece!r} = {i})")
        tokens[i] = piece
        if i in added:
            types[i] = _CONTROL if added[i] else _USER_DEFINED
        elif _BYTE_PIECE.fullmatch(piece):
            types[i] = _BYTE
        elif space_runs_user_defined and _SPACE_RUN.fullmatch(piece):
            tokens[i] = piece.replace("▁", " ")
            types[i] = _USER_DEFINED
        else:
            types[i] = _NORMAL
    for i in added:
        if 0 <= i < n_vocab and tokens[i].startswith("[PAD"):
            raise ModelLoadError(f"added token id {i} is missing from the tokenizer's vocabulary")
    if unk_piece in vocab:
        types[vocab[unk_piece]] = _CONTROL if vocab[unk_piece] in added else _UNKNOWN
    scores = [0.0] * n_vocab
    rank = 0
    for i, kind in enumerate(types):
        if kind == _NORMAL:
            scores[i] = -float(rank)
            rank += 1
        elif kind in (_CONTROL, _USER_DEFINED, _UNKNOWN):
            scores[i] = -1000.0

    config = read_json(src / "tokenizer_config.json") if (src / "tokenizer_config.json").is_file() else {}

    def piece_id(name: str) -> int | None:
        piece = config.get(name)
        if isinstance(piece, dict):
            piece = piece.get("content")
        return vocab.get(piece) if isinstance(piece, str) else None

    add_bos = config.get("add_bos_token", True)
    add_eos = config.get("add_eos_token", False)
    return Vocab(
        tokens=tokens,
        token_types=types,
        merges=[],
        bos_id=piece_id("bos_token"),
        eos_id=piece_id("eos_token"),
        pad_id=piece_id("pad_token"),
        unk_id=vocab.get(unk_piece) if isinstance(unk_piece, str) else None,
        add_bos=bool(add_bos),
        add_eos=bool(add_eos),
        add_space_prefix=False,
        model="llama",
        pre="default",
        scores=scores,
    )
