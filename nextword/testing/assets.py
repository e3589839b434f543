"""Where the testing kit finds its asset files: GPT-2's tokenizer files.

The kit's tiny GPT-2 fixture (:func:`~nextword.testing.models.build_tiny_gpt2`) uses the real
GPT-2 vocabulary, read from GPT-2's plain Hugging Face tokenizer files ``vocab.json`` (token ->
id) and ``merges.txt`` (the BPE merges, in rank order). They are looked for in an asset folder
(:func:`default_asset_dir`, or ``$NEXTWORD_ASSET_DIR``). The kit never downloads them: where they
come from is up to the project that runs the tests (nextword's own repository fetches them at
install time with ``python -m tests.assets``; the plugin author's guide shows other ways).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from nextword.errors import NextwordError

__all__ = [
    "ASSET_DIR_ENV",
    "FETCH_COMMAND",
    "GPT2_MERGES_NAME",
    "GPT2_VOCAB_NAME",
    "AssetUnavailable",
    "VocabFiles",
    "default_asset_dir",
    "gpt2_vocab_files",
]

ASSET_DIR_ENV = "NEXTWORD_ASSET_DIR"
"""Environment variable naming the folder that holds the asset files."""

GPT2_VOCAB_NAME = "vocab.json"
"""File name of GPT-2's vocabulary (a JSON object: token -> id) in the asset folder."""

GPT2_MERGES_NAME = "merges.txt"
"""File name of GPT-2's BPE merges (one ``left right`` pair per line) in the asset folder."""

FETCH_COMMAND = "python -m tests.assets"
"""The command that fetches the asset files in a checkout of nextword's repository."""


class AssetUnavailable(NextwordError):
    """A test asset is not in the asset folder (the message names the folder and how to fill it)."""


@dataclass(frozen=True)
class VocabFiles:
    """Paths to GPT-2's tokenizer files, as a Hugging Face GPT-2 checkpoint folder holds them."""

    vocab: Path
    """``vocab.json``: the 50257 tokens and their ids."""
    merges: Path
    """``merges.txt``: the 50000 merges, after a ``#version`` line."""


def default_asset_dir() -> Path:
    """Return the folder assets are looked for in when none is given.

    ``$NEXTWORD_ASSET_DIR`` when it is set and not empty; otherwise ``assets`` inside nextword's
    per-user cache folder (``~/.cache/nextword/assets`` on Linux, as ``platformdirs`` places it on
    other systems). The folder may not exist.
    """
    configured = os.environ.get(ASSET_DIR_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    return platformdirs.user_cache_path("nextword", appauthor=False) / "assets"


def gpt2_vocab_files(asset_dir: Path | str | None = None) -> VocabFiles:
    """Return the paths of GPT-2's ``vocab.json`` and ``merges.txt`` in ``asset_dir`` (default:
    :func:`default_asset_dir`). Reads nothing and never downloads.

    Raises :class:`AssetUnavailable` when either file is missing; the message names the folder,
    the files and the command that fetches them.
    """
    directory = Path(asset_dir).expanduser() if asset_dir is not None else default_asset_dir()
    files = VocabFiles(vocab=directory / GPT2_VOCAB_NAME, merges=directory / GPT2_MERGES_NAME)
    missing = [path.name for path in (files.vocab, files.merges) if not path.is_file()]
    if missing:
        raise AssetUnavailable(
            f"GPT-2's tokenizer files ({' and '.join(missing)}) are not in the asset folder {directory}, and "
            f"the testing kit never downloads. Put GPT-2's {GPT2_VOCAB_NAME} and {GPT2_MERGES_NAME} there, or set "
            f"{ASSET_DIR_ENV} to a folder that holds them: in nextword's repository `{FETCH_COMMAND}` "
            "fetches them (scripts/setup.sh runs it); elsewhere see 'Test fixtures' in the plugin author's guide."
        )
    return files
