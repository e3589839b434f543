"""Fixture models built on the spot: no model hub needed.

* :func:`gpt2_tokenizer` builds GPT-2's Hugging Face fast tokenizer from its plain tokenizer files
  (``vocab.json`` and ``merges.txt``, found by :func:`nextword.testing.assets.gpt2_vocab_files`).
* :func:`build_tiny_gpt2` and :func:`build_gpt2_124m` save random-weight GPT-2 models with the real
  GPT-2 vocabulary; :func:`build_tiny_openai_gpt` saves a random-weight GPT-1 with a small
  tokenizer of its own. Each writes a folder that ``AutoModelForCausalLM.from_pretrained`` and
  ``AutoTokenizer.from_pretrained`` load offline.

Random weights are enough for everything except text quality: speed does not depend on weight
values, and engines can be compared token for token on any weights. The builders are
deterministic: the same arguments give bit-identical weights. Besides the usual initialisation they
also draw the biases and layer-norm parameters at random (the usual ones are exactly 0 and 1), so
that a converter or engine that drops or swaps one of them produces visibly different logits.

torch, transformers and tokenizers are imported inside the functions, so importing this
module costs nothing.
"""

from __future__ import annotations

import functools
import json
import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nextword.errors import ModelLoadError
from nextword.testing.assets import GPT2_MERGES_NAME, GPT2_VOCAB_NAME, VocabFiles, gpt2_vocab_files

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

__all__ = [
    "build_gpt2_124m",
    "build_tiny_gpt2",
    "build_tiny_openai_gpt",
    "gpt2_tokenizer",
]

_GPT2_END_OF_TEXT = "<|endoftext|>"

# Standard deviations of the random biases and layer-norm parameters (see the module docstring).
_BIAS_STD = 0.05
_NORM_WEIGHT_STD = 0.1


# --------------------------------------------------------------------------------------------------
# GPT-2 tokenizer from vocab.json + merges.txt


def gpt2_tokenizer(
    files: VocabFiles | str | os.PathLike[str], *, model_max_length: int | None = None
) -> PreTrainedTokenizerFast:
    """Build GPT-2's fast tokenizer from its plain tokenizer files ``vocab.json`` and ``merges.txt``.

    ``files`` is a :class:`~nextword.testing.assets.VocabFiles` or a folder holding the two files
    (a Hugging Face GPT-2 checkpoint folder does). The result is a byte-level BPE exactly like
    GPT-2's: no prefix space, GPT-2's regex pre-tokenization (the ``ByteLevel`` pre-tokenizer),
    ``ByteLevel`` decoder, nothing added on encode. Token ids are ``vocab.json``'s;
    ``<|endoftext|>`` is a special token and serves as BOS, EOS and unknown token, as in GPT-2.
    ``model_max_length`` is set when given (the files do not say it).

    On GPT-2's files the result reproduces every one of llama.cpp's GPT-2 tokenizer test vectors
    and decodes each back to its input text. The parsed files are cached per process, keyed by
    path, size and modification time.

    Raises :class:`~nextword.errors.ModelLoadError` when a file cannot be read or is not in
    GPT-2's format, or the vocabulary has no ``<|endoftext|>``.
    """
    from tokenizers import Tokenizer

    if not isinstance(files, VocabFiles):
        folder = Path(files)
        files = VocabFiles(vocab=folder / GPT2_VOCAB_NAME, merges=folder / GPT2_MERGES_NAME)
    key: list[tuple[str, int, int]] = []
    for path in (files.vocab, files.merges):
        resolved = path.resolve()
        try:
            stat = resolved.stat()
        except OSError as exc:
            raise ModelLoadError(f"cannot read the GPT-2 tokenizer file {resolved}: {exc}") from exc
        key.append((str(resolved), stat.st_size, stat.st_mtime_ns))
    tokenizer_json = _read_gpt2_files(key[0], key[1])

    extra: dict[str, Any] = {}
    if model_max_length is not None:
        extra["model_max_length"] = model_max_length
    return _fast_tokenizer_class("GPT2")(
        tokenizer_object=Tokenizer.from_str(tokenizer_json),
        bos_token=_GPT2_END_OF_TEXT,
        eos_token=_GPT2_END_OF_TEXT,
        unk_token=_GPT2_END_OF_TEXT,
        add_prefix_space=False,
        **extra,
    )


@functools.lru_cache(maxsize=4)
def _read_gpt2_files(vocab_key: tuple[str, int, int], merges_key: tuple[str, int, int]) -> str:
    """Parse ``vocab.json`` and ``merges.txt`` (path, size, mtime: the cache key) into a
    ``tokenizers`` JSON string."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    vocab_path, merges_path = vocab_key[0], merges_key[0]
    try:
        vocab = json.loads(Path(vocab_path).read_bytes().decode("utf-8"))
        merge_lines = Path(merges_path).read_bytes().decode("utf-8").split("\n")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelLoadError(f"cannot read GPT-2's tokenizer files {vocab_path} / {merges_path}: {exc}") from exc
    if (
        not isinstance(vocab, dict)
        or not vocab
        or not all(isinstance(token, str) and type(index) is int for token, index in vocab.items())
    ):
        raise ModelLoadError(f"{vocab_path} is not a vocabulary (a JSON object of token -> integer id)")
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise ModelLoadError(f"{vocab_path}: the ids are not 0..{len(vocab) - 1}, each once")
    if _GPT2_END_OF_TEXT not in vocab:
        raise ModelLoadError(f"{vocab_path} has no {_GPT2_END_OF_TEXT} token: not GPT-2's vocabulary")

    merge_pairs: list[tuple[str, str]] = []
    for number, line in enumerate(merge_lines, start=1):
        if not line or (number == 1 and line.startswith("#version")):
            continue
        left, sep, right = line.partition(" ")
        if not sep or not left or not right or " " in right:
            raise ModelLoadError(f"{merges_path}, line {number}: malformed merge {line!r}")
        merge_pairs.append((left, right))

    backend = Tokenizer(
        models.BPE(
            vocab=vocab,
            merges=merge_pairs,
            dropout=None,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
        )
    )
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    backend.add_special_tokens([AddedToken(_GPT2_END_OF_TEXT, special=True, normalized=False)])
    tokenizer_json: str = backend.to_str()
    return tokenizer_json


# --------------------------------------------------------------------------------------------------
# GPT-2 models


def build_tiny_gpt2(
    out_dir: str | os.PathLike[str],
    *,
    tokenizer: str | os.PathLike[str] | VocabFiles | PreTrainedTokenizerBase = "gpt2",
    n_layer: int = 2,
    n_embd: int = 64,
    n_head: int = 2,
    n_positions: int = 256,
    seed: int = 0,
    initializer_range: float = 0.2,
    asset_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Save a tiny random-weight ``GPT2LMHeadModel`` with the real GPT-2 vocabulary into ``out_dir``.

    ``tokenizer`` is ``"gpt2"`` (the real GPT-2 vocabulary, 50257 tokens: ``vocab.json`` and
    ``merges.txt`` in ``asset_dir``, default :func:`nextword.testing.assets.default_asset_dir`),
    a :class:`~nextword.testing.assets.VocabFiles`, a folder holding GPT-2 style ``vocab.json`` and
    ``merges.txt``, or a ready tokenizer object; the model's vocabulary size is the tokenizer's
    length. BOS = EOS = the tokenizer's EOS token (50256 for GPT-2).

    The folder receives ``config.json``, ``generation_config.json``, ``model.safetensors`` and the
    tokenizer files (its ``model_max_length`` set to ``n_positions``); it is created if needed and
    returned. Weights depend only on the arguments: the same ``seed`` gives identical weights, and
    the global torch RNG state is left as it was. The large default ``initializer_range`` (0.2, ten
    times GPT-2's) keeps greedy choices away from near-ties. Takes about 0.2 s, plus about 4 s the
    first time in a process (importing torch and transformers, reading the vocabulary).

    Raises :class:`~nextword.testing.assets.AssetUnavailable` when the GPT-2 vocabulary is needed
    and is not in the asset folder (nothing is downloaded).
    """
    return _build_gpt2(
        out_dir,
        tokenizer=tokenizer,
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        n_positions=n_positions,
        seed=seed,
        initializer_range=initializer_range,
        asset_dir=asset_dir,
    )


def build_gpt2_124m(
    out_dir: str | os.PathLike[str],
    *,
    tokenizer: str | os.PathLike[str] | VocabFiles | PreTrainedTokenizerBase = "gpt2",
    seed: int = 0,
    initializer_range: float = 0.02,
    asset_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Save a random-weight GPT-2 of the real GPT-2 small shape (124M parameters) into ``out_dir``.

    12 layers, 768 wide, 12 heads, 1024 positions, real GPT-2 vocabulary: for benchmarks, where
    speed and memory do not depend on the weight values. ``initializer_range`` defaults to GPT-2's
    own 0.02. Otherwise the same promises as :func:`build_tiny_gpt2` (deterministic, safetensors,
    tokenizer saved alongside); writes about 500 MB and takes a few seconds.
    """
    return _build_gpt2(
        out_dir,
        tokenizer=tokenizer,
        n_layer=12,
        n_embd=768,
        n_head=12,
        n_positions=1024,
        seed=seed,
        initializer_range=initializer_range,
        asset_dir=asset_dir,
    )


def _build_gpt2(
    out_dir: str | os.PathLike[str],
    *,
    tokenizer: str | os.PathLike[str] | VocabFiles | PreTrainedTokenizerBase,
    n_layer: int,
    n_embd: int,
    n_head: int,
    n_positions: int,
    seed: int,
    initializer_range: float,
    asset_dir: str | os.PathLike[str] | None,
) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    hf_tokenizer = _resolve_gpt2_tokenizer(tokenizer, asset_dir)
    hf_tokenizer.model_max_length = n_positions
    end_of_text = hf_tokenizer.eos_token_id
    config = GPT2Config(
        vocab_size=len(hf_tokenizer),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        initializer_range=initializer_range,
        bos_token_id=end_of_text,
        eos_token_id=end_of_text,
    )
    model = _seeded_model(GPT2LMHeadModel, config, seed)
    return _save(model, hf_tokenizer, out_dir)


def _resolve_gpt2_tokenizer(
    tokenizer: str | os.PathLike[str] | VocabFiles | PreTrainedTokenizerBase,
    asset_dir: str | os.PathLike[str] | None,
) -> PreTrainedTokenizerBase:
    """Turn the ``tokenizer`` argument of the GPT-2 builders into a tokenizer object (a fresh copy)."""
    import copy

    if isinstance(tokenizer, str) and tokenizer == "gpt2":
        return gpt2_tokenizer(gpt2_vocab_files(Path(asset_dir) if asset_dir is not None else None))
    if isinstance(tokenizer, VocabFiles):
        return gpt2_tokenizer(tokenizer)
    if isinstance(tokenizer, (str, os.PathLike)):
        folder = Path(tokenizer)
        if not (folder / GPT2_VOCAB_NAME).is_file() or not (folder / GPT2_MERGES_NAME).is_file():
            raise ValueError(
                f"tokenizer must be 'gpt2', VocabFiles, a folder holding {GPT2_VOCAB_NAME} and {GPT2_MERGES_NAME}, "
                f"or a tokenizer; got {str(tokenizer)!r}"
            )
        return gpt2_tokenizer(folder)
    return copy.deepcopy(tokenizer)


# --------------------------------------------------------------------------------------------------
# GPT-1 (openai-gpt) model

# A little English of our own from which the GPT-1 fixture's merges are learned.
_OPENAI_GPT_CORPUS = """
i love cats because they are soft and warm and they sleep in the sun all day .
the cat sat on the mat and the dog sat on the rug .
my dog likes to run in the park with the other dogs every morning .
we like to read books about the sea , the stars and the moon .
she said that the weather would be nice today , so we went out for a walk .
there is a small house near the river where an old man lives with his wife .
he reads the news in the morning and he writes letters in the evening .
it was a long day , and the children were tired when they came home from school .
what do you want to eat for dinner tonight ? i think we should have fish .
the quick brown fox jumps over the lazy dog .
people often talk about the past and about what the future will bring .
this is the best time of the year to visit the mountains and the lakes .
they played music and sang songs until late at night .
you can find the answer if you look at the problem from another side .
one , two , three , four , five , six , seven , eight , nine , ten .
"""

_OPENAI_GPT_BASE_SYMBOLS = "abcdefghijklmnopqrstuvwxyz0123456789.,!?'\"-:;()"
_OPENAI_GPT_UNK = "<unk>"
_END_OF_WORD = "</w>"


def build_tiny_openai_gpt(
    out_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    n_layer: int = 2,
    n_embd: int = 32,
    n_head: int = 2,
    n_positions: int = 128,
    initializer_range: float = 0.2,
    n_merges: int = 300,
) -> Path:
    """Save a tiny random-weight GPT-1 (``OpenAIGPTLMHeadModel``, model_type ``openai-gpt``) into ``out_dir``.

    Its tokenizer is GPT-1's kind: lower-casing BERT-style normalisation and pre-tokenization
    (words and punctuation), then BPE with ``</w>`` end-of-word markers. The vocabulary is built
    here: ``<unk>`` (id 0), every letter, digit and common punctuation mark with and without
    ``</w>``, and up to ``n_merges`` merges learned from a small built-in English text. Any
    lower-case English text made of words separated by single spaces encodes without ``<unk>`` and
    decodes back to itself (punctuation comes back with spaces around it, as in GPT-1). Like GPT-1,
    the model has no BOS, EOS or padding token, and it has no key/value cache.

    The folder receives ``config.json``, ``generation_config.json``, ``model.safetensors``,
    ``vocab.json``, ``merges.txt`` and the tokenizer files, loads with ``AutoTokenizer`` and
    ``AutoModelForCausalLM``, and is returned. Deterministic in the same way as
    :func:`build_tiny_gpt2`; takes a fraction of a second.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import OpenAIGPTConfig, OpenAIGPTLMHeadModel

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab, merges = _openai_gpt_vocabulary(n_merges)

    backend = Tokenizer(
        models.BPE(
            vocab=vocab,
            merges=merges,
            dropout=None,
            continuing_subword_prefix="",
            end_of_word_suffix=_END_OF_WORD,
            fuse_unk=False,
            unk_token=_OPENAI_GPT_UNK,
        )
    )
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.BPEDecoder(suffix=_END_OF_WORD)
    hf_tokenizer = _fast_tokenizer_class("OpenAIGPT")(
        tokenizer_object=backend, unk_token=_OPENAI_GPT_UNK, model_max_length=n_positions
    )

    config = OpenAIGPTConfig(
        vocab_size=len(vocab),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        initializer_range=initializer_range,
    )
    model = _seeded_model(OpenAIGPTLMHeadModel, config, seed)
    _save(model, hf_tokenizer, out)
    # GPT-1's original vocabulary format too, for tools that read it rather than tokenizer.json.
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    merge_lines = "".join(f"{left} {right}\n" for left, right in merges)
    (out / "merges.txt").write_text("#version: 0.2\n" + merge_lines, encoding="utf-8")
    return out


def _openai_gpt_vocabulary(n_merges: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Learn a deterministic GPT-1 style BPE vocabulary (with ``</w>``) from the built-in corpus."""
    word_counts = Counter(_OPENAI_GPT_CORPUS.split())
    words: dict[tuple[str, ...], int] = {
        tuple(word[:-1]) + (word[-1] + _END_OF_WORD,): count for word, count in sorted(word_counts.items())
    }
    merges: list[tuple[str, str]] = []
    for _ in range(n_merges):
        pairs: Counter[tuple[str, str]] = Counter()
        for symbols, count in words.items():
            for pair in zip(symbols, symbols[1:], strict=False):
                pairs[pair] += count
        if not pairs:
            break
        # Most frequent pair; ties go to the alphabetically first one, so the result never varies.
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        if pairs[best] < 2:
            break
        merges.append(best)
        words = {_apply_merge(symbols, best): count for symbols, count in words.items()}

    vocab: dict[str, int] = {_OPENAI_GPT_UNK: 0}
    for symbol in _OPENAI_GPT_BASE_SYMBOLS:
        for form in (symbol, symbol + _END_OF_WORD):
            vocab.setdefault(form, len(vocab))
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    return vocab, merges


def _apply_merge(symbols: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    merged: list[str] = []
    i = 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            merged.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            merged.append(symbols[i])
            i += 1
    return tuple(merged)


# --------------------------------------------------------------------------------------------------
# Shared helpers


def _fast_tokenizer_class(model_name: str) -> type[PreTrainedTokenizerFast]:
    """Return transformers' fast tokenizer class for ``model_name`` (e.g. ``GPT2TokenizerFast``).

    transformers 5 renamed these classes (``GPT2Tokenizer`` is now the fast one) and keeps the old
    ``...Fast`` names only as runtime aliases, so the class is looked up by name.
    """
    import transformers

    tokenizer_class: type[PreTrainedTokenizerFast] = getattr(transformers, f"{model_name}TokenizerFast")
    return tokenizer_class


def _seeded_model(model_class: Any, config: Any, seed: int) -> Any:
    """Instantiate ``model_class(config)`` with weights drawn from ``seed``, leaving torch's RNG as it was."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config)
        _randomize_biases_and_norms(model)
    return model.eval()


def _randomize_biases_and_norms(model: torch.nn.Module) -> None:
    """Redraw biases (normally 0) and layer-norm scales (normally 1) with the current torch RNG."""
    import torch

    with torch.no_grad():
        for module in model.modules():
            weight = getattr(module, "weight", None)
            bias = getattr(module, "bias", None)
            if isinstance(module, torch.nn.LayerNorm):
                if isinstance(weight, torch.nn.Parameter):
                    weight.normal_(1.0, _NORM_WEIGHT_STD)
            if isinstance(bias, torch.nn.Parameter):
                bias.normal_(0.0, _BIAS_STD)


def _save(model: Any, tokenizer: PreTrainedTokenizerBase, out_dir: str | os.PathLike[str]) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
