"""A byte-level BPE tokenizer (GPT-2's) read from a Hugging Face folder for GGUF: ``tokenizer.json``,
or ``vocab.json`` + ``merges.txt`` of a slow tokenizer."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from nextword.errors import ModelLoadError
from nextword_llamacpp.convert.checkpoint import read_json
from nextword_llamacpp.convert.source_model import Vocab

__all__ = ["read_byte_level_bpe"]

logger = logging.getLogger(__name__)


def read_byte_level_bpe(src: Path, config: dict[str, Any], n_vocab: int) -> Vocab:
    """Read the tokenizer of ``src`` (tokenizer.json, else vocab.json + merges.txt) for GGUF.

    Ids without a token (embedding rows past the tokenizer) become ``[PAD<id>]`` of type UNUSED;
    special added tokens are CONTROL, other added tokens USER_DEFINED, the rest NORMAL.
    """
    tok_config = read_json(src / "tokenizer_config.json") if (src / "tokenizer_config.json").is_file() else {}
    special_map = read_json(src / "special_tokens_map.json") if (src / "special_tokens_map.json").is_file() else {}
    if (src / "tokenizer.json").is_file():
        id_of, merges, added = _read_tokenizer_json(src / "tokenizer.json")
    elif (src / "vocab.json").is_file() and (src / "merges.txt").is_file():
        id_of, merges, added = _read_vocab_merges(src, tok_config)
    else:
        raise ModelLoadError(f"{src} has no tokenizer: expected tokenizer.json, or vocab.json and merges.txt")

    too_big = [tok for tok, i in id_of.items() if not 0 <= i < n_vocab]
    if too_big:
        raise ModelLoadError(
            f"the tokenizer has ids outside the model's {n_vocab}-row embedding "
            f"(e.g. {too_big[0]!r} = {id_of[too_big[0]]})"
        )
    tokens = [f"[PAD{i}]" for i in range(n_vocab)]
    types = [5] * n_vocab  # gguf.TokenType.UNUSED
    for tok, i in id_of.items():
        tokens[i] = tok
        special = added.get(tok)
        types[i] = 1 if special is None else (3 if special else 4)  # NORMAL / CONTROL / USER_DEFINED

    def special_id(name: str) -> int | None:
        for source in (tok_config, special_map):
            value = source.get(name)
            if isinstance(value, dict):
                value = value.get("content")
            if isinstance(value, str) and value in id_of:
                return id_of[value]
        config_id = config.get(f"{name}_id")
        if isinstance(config_id, int) and 0 <= config_id < n_vocab and config_id in id_of.values():
            return config_id
        return None

    bos, eos, pad = special_id("bos_token"), special_id("eos_token"), special_id("pad_token")
    if eos is None and "<|endoftext|>" in id_of:
        eos = id_of["<|endoftext|>"]
    if bos is None:
        bos = eos
    if eos is None:
        logger.warning("%s: the tokenizer names no EOS token; llama.cpp will assume id 11", src)
    return Vocab(
        tokens=tokens,
        token_types=types,
        merges=merges,
        bos_id=bos,
        eos_id=eos,
        pad_id=pad,
        add_bos=bool(tok_config.get("add_bos_token", False)),
    )


def _read_tokenizer_json(path: Path) -> tuple[dict[str, int], list[str], dict[str, bool]]:
    """Vocabulary, merges (as ``"a b"``) and added tokens (content -> special) of a tokenizer.json."""
    data = read_json(path)
    model = data.get("model") or {}
    if model.get("type") != "BPE":
        raise ModelLoadError(f"{path}: the tokenizer is {model.get('type')!r}, not byte-level BPE as GPT-2 needs")
    if "ByteLevel" not in json.dumps(data.get("pre_tokenizer")):
        raise ModelLoadError(f"{path}: the tokenizer has no ByteLevel pre-tokenizer")
    if _adds_prefix_space(data.get("pre_tokenizer")):
        raise ModelLoadError(
            f"{path}: the tokenizer adds a prefix space, which llama.cpp's gpt-2 pre-tokenizer does not do"
        )
    id_of = {str(tok): int(i) for tok, i in (model.get("vocab") or {}).items()}
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    added: dict[str, bool] = {}
    for entry in data.get("added_tokens") or []:
        id_of[entry["content"]] = int(entry["id"])
        added[entry["content"]] = bool(entry.get("special", False))
    return id_of, merges, added


def _adds_prefix_space(node: Any) -> bool:
    """True if any ByteLevel pre-tokenizer in the tokenizer.json subtree ``node`` adds a prefix space."""
    if isinstance(node, dict):
        if node.get("type") == "ByteLevel" and node.get("add_prefix_space"):
            return True
        return any(_adds_prefix_space(v) for v in node.values())
    if isinstance(node, list):
        return any(_adds_prefix_space(v) for v in node)
    return False


def _read_vocab_merges(src: Path, tok_config: dict[str, Any]) -> tuple[dict[str, int], list[str], dict[str, bool]]:
    """Vocabulary, merges and added tokens of a slow GPT2Tokenizer (vocab.json + merges.txt)."""
    if tok_config.get("add_prefix_space"):
        raise ModelLoadError(
            f"{src}: the tokenizer adds a prefix space, which llama.cpp's gpt-2 pre-tokenizer does not do"
        )
    id_of = {str(tok): int(i) for tok, i in read_json(src / "vocab.json").items()}
    merges = [
        line
        for line in (src / "merges.txt").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#version")
    ]
    added: dict[str, bool] = {}
    if (src / "added_tokens.json").is_file():
        for tok, i in read_json(src / "added_tokens.json").items():
            id_of[str(tok)] = int(i)
            added[str(tok)] = False
    for i, entry in (tok_config.get("added_tokens_decoder") or {}).items():
        id_of[entry["content"]] = int(i)
        added[entry["content"]] = bool(entry.get("special", False))
    for name in ("bos_token", "eos_token", "unk_token", "pad_token"):
        value = tok_config.get(name)
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str) and value in id_of:
            added[value] = True
    return id_of, merges, added
