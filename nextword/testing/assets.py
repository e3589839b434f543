"""Test assets that nextword fetches on demand: the GPT-2 vocabulary and llama.cpp's tokenizer vectors.

llama.cpp keeps, for each tokenizer it supports, a vocabulary-only GGUF file together with a set of
test vectors (input texts and the token ids llama.cpp must produce for them). The ones for GPT-2
(``ggml-vocab-gpt-2.gguf`` and ``ggml-vocab-gpt-2.gguf.inp`` / ``.out``) are the real GPT-2
vocabulary (50257 tokens, 50000 merges) and an independent check of any tokenizer built from it.

They ship inside the llama-cpp-python source distribution, under ``vendor/llama.cpp/models/``.
:func:`gpt2_vocab_files` looks for them in a cache folder and, when they are not there, downloads a
pinned version of that sdist with pip and extracts just those three files.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import platformdirs

from nextword.errors import NextwordError

__all__ = [
    "ASSET_DIR_ENV",
    "LLAMA_CPP_PYTHON_VERSION",
    "AssetUnavailable",
    "VocabFiles",
    "default_asset_dir",
    "gpt2_vocab_files",
    "read_tokenizer_vectors",
]

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
"""The llama-cpp-python release whose sdist the assets are taken from."""

ASSET_DIR_ENV = "NEXTWORD_ASSET_DIR"
"""Environment variable naming a folder that holds (or receives) the asset files."""

_GGUF_NAME = "ggml-vocab-gpt-2.gguf"
_INP_NAME = _GGUF_NAME + ".inp"
_OUT_NAME = _GGUF_NAME + ".out"
_MEMBER_DIR = "vendor/llama.cpp/models/"
_SDIST_NAME = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz"

# SHA-256 of the three files as they are in the pinned sdist; checked after every extraction.
_SHA256 = {
    _GGUF_NAME: "cedc56ca6e2e89f63e781696d1fd76b4b1d49e6720dee86463e915f6e90016ac",
    _INP_NAME: "be0a11f7071f0c67d3053a2d377d8f35f0dbcb77ff11a60300fb57d36b477cf0",
    _OUT_NAME: "48e8c4cb3ad5c37915b225f872222567c1c4dd4d66951aa53460c8d152ff6d60",
}

# The line llama.cpp puts after every input text in a ``.inp`` file (see tests/test-tokenizer-0.cpp).
_CASE_SEPARATOR = "\n__ggml_vocab_test__\n"

_PIP_TIMEOUT_S = 1800.0


class AssetUnavailable(NextwordError):
    """A test asset is neither in the cache folder nor could it be downloaded."""


@dataclass(frozen=True)
class VocabFiles:
    """Paths to llama.cpp's GPT-2 vocabulary file and its tokenizer test vectors."""

    gguf: Path
    """``ggml-vocab-gpt-2.gguf``: a GGUF file with the tokenizer metadata and no tensors."""
    inp: Path
    """``ggml-vocab-gpt-2.gguf.inp``: the input texts."""
    out: Path
    """``ggml-vocab-gpt-2.gguf.out``: the expected token ids, one line per input text."""


def default_asset_dir() -> Path:
    """Return the folder assets are looked for in and downloaded to when none is given.

    ``$NEXTWORD_ASSET_DIR`` when it is set and not empty; otherwise ``assets`` inside nextword's
    per-user cache folder (``~/.cache/nextword/assets`` on Linux, as ``platformdirs`` places it on
    other systems). The folder may not exist yet.
    """
    configured = os.environ.get(ASSET_DIR_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    return platformdirs.user_cache_path("nextword", appauthor=False) / "assets"


def gpt2_vocab_files(cache_dir: Path | str | None = None, *, fetch: bool = True) -> VocabFiles:
    """Return the GPT-2 vocabulary GGUF and its tokenizer test vectors, fetching them if needed
    (and allowed: with ``fetch=False`` a missing file raises at once).

    The three files are looked for in ``cache_dir`` (default: :func:`default_asset_dir`). When one is
    missing, the llama-cpp-python sdist of version :data:`LLAMA_CPP_PYTHON_VERSION` is taken from
    that folder if it lies there, and otherwise downloaded with
    ``python -m pip download --no-deps --no-binary :all:`` (about a minute: pip also prepares the
    sdist's metadata). The three members are extracted, checked against pinned SHA-256 digests,
    and moved into the cache folder atomically, so concurrent callers never see a partial file.
    Files already in the cache folder are used as they are.

    Raises :class:`AssetUnavailable` when the files are missing and cannot be obtained; the message
    says what failed and how to provide them by hand.
    """
    directory = Path(cache_dir).expanduser() if cache_dir is not None else default_asset_dir()
    files = VocabFiles(
        gguf=directory / _GGUF_NAME,
        inp=directory / _INP_NAME,
        out=directory / _OUT_NAME,
    )
    if all(path.is_file() for path in (files.gguf, files.inp, files.out)):
        return files
    if not fetch:
        raise AssetUnavailable(
            f"the GPT-2 vocabulary is not in {directory} and tests never download it; fetch it once with "
            f"`python -m nextword.testing.assets` (scripts/setup.sh does), or {_how_to_provide(directory)}"
        )

    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AssetUnavailable(
            f"cannot create the asset folder {directory}: {exc}. {_how_to_provide(directory)}"
        ) from exc

    local_sdist = directory / _SDIST_NAME
    if local_sdist.is_file():
        _extract_members(local_sdist, directory)
    else:
        with tempfile.TemporaryDirectory(prefix="nextword-sdist-") as download_dir:
            sdist = _download_sdist(Path(download_dir), directory)
            _extract_members(sdist, directory)
    return files


def read_tokenizer_vectors(files: VocabFiles | str | os.PathLike[str]) -> list[tuple[str, list[int]]]:
    """Parse llama.cpp tokenizer test vectors into ``(text, expected token ids)`` pairs, in file order.

    ``files`` is a :class:`VocabFiles` or the path of the ``.gguf`` file (its vectors are then the
    files next to it with ``.inp`` and ``.out`` appended). The format is the one llama.cpp's
    ``test-tokenizer-0`` reads: the ``.inp`` file holds the input texts, each one followed by a line
    ``__ggml_vocab_test__``; the ``.out`` file holds one line per input, the token ids separated by
    spaces (an empty line for an empty input). Texts are returned exactly as stored (UTF-8, with
    their own newlines and tabs). No special tokens (BOS) are part of the expected ids.

    Raises :class:`ValueError` when the two files do not have the same number of cases.
    """
    if isinstance(files, VocabFiles):
        inp_path, out_path = files.inp, files.out
    else:
        base = Path(files)
        inp_path = base.with_name(base.name + ".inp")
        out_path = base.with_name(base.name + ".out")

    # Read bytes, so that no platform newline translation touches the texts.
    raw_inp = inp_path.read_bytes().decode("utf-8")
    raw_out = out_path.read_bytes().decode("utf-8")

    texts: list[str] = []
    pos = 0
    while pos < len(raw_inp):
        end = raw_inp.find(_CASE_SEPARATOR, pos)
        if end == -1:
            texts.append(raw_inp[pos:])
            break
        texts.append(raw_inp[pos:end])
        pos = end + len(_CASE_SEPARATOR)

    lines = raw_out.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) != len(texts):
        raise ValueError(f"{inp_path} holds {len(texts)} test texts but {out_path} holds {len(lines)} lines of ids")
    return [(text, [int(tok) for tok in line.split()]) for text, line in zip(texts, lines, strict=True)]


def _how_to_provide(directory: Path) -> str:
    return (
        f"To provide them by hand, put {_GGUF_NAME}, {_INP_NAME} and {_OUT_NAME} (from {_MEMBER_DIR} "
        f"in the llama-cpp-python {LLAMA_CPP_PYTHON_VERSION} sdist), or that sdist {_SDIST_NAME} itself, "
        f"into a folder and set {ASSET_DIR_ENV} to that folder (the folder looked in was {directory})."
    )


def _download_sdist(download_dir: Path, cache_dir: Path) -> Path:
    """Download the pinned llama-cpp-python sdist into ``download_dir`` with pip; return its path."""
    requirement = f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}"
    command = [
        sys.executable, "-m", "pip", "download",
        "--no-deps", "--no-binary", ":all:", "--disable-pip-version-check",
        requirement, "-d", str(download_dir),
    ]  # fmt: skip
    try:
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=_PIP_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AssetUnavailable(
            f"could not run `pip download {requirement}` to fetch the GPT-2 vocabulary: {exc}. "
            f"{_how_to_provide(cache_dir)}"
        ) from exc
    if result.returncode != 0:
        tail = _tail(result.stderr or result.stdout)
        raise AssetUnavailable(
            f"`pip download {requirement}` failed (exit status {result.returncode}), so the GPT-2 "
            f"vocabulary could not be fetched. pip said:\n{tail}\n{_how_to_provide(cache_dir)}"
        )
    candidates = sorted(download_dir.glob("*.tar.gz"))
    if not candidates:
        raise AssetUnavailable(
            f"`pip download {requirement}` succeeded but left no .tar.gz sdist in {download_dir}. "
            f"{_how_to_provide(cache_dir)}"
        )
    return candidates[0]


def _tail(text: str, n_lines: int = 15) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join("    " + line for line in lines[-n_lines:])


def _extract_members(sdist: Path, cache_dir: Path) -> None:
    """Copy the three asset members out of ``sdist`` into ``cache_dir``, checked and atomically."""
    wanted = {_MEMBER_DIR + name: name for name in _SHA256}
    staged: dict[str, Path] = {}
    try:
        try:
            # Stream through the archive once; the members sit about half way into it.
            with tarfile.open(sdist, mode="r|gz") as archive:
                for member in archive:
                    name = _member_relative_name(member.name)
                    if name not in wanted or not member.isfile():
                        continue
                    source = archive.extractfile(member)
                    if source is None:
                        continue
                    staged[wanted[name]] = _write_temp(source, cache_dir, wanted[name])
                    if len(staged) == len(wanted):
                        break
        except (OSError, tarfile.TarError, EOFError) as exc:
            raise AssetUnavailable(f"could not read {sdist}: {exc}. {_how_to_provide(cache_dir)}") from exc
        missing = sorted(set(wanted.values()) - set(staged))
        if missing:
            raise AssetUnavailable(
                f"{sdist} does not contain {', '.join(missing)} under {_MEMBER_DIR}. {_how_to_provide(cache_dir)}"
            )
        for name, temp_path in staged.items():
            digest = _sha256(temp_path)
            if digest != _SHA256[name]:
                raise AssetUnavailable(
                    f"{name} extracted from {sdist} has SHA-256 {digest}, expected {_SHA256[name]}. "
                    f"{_how_to_provide(cache_dir)}"
                )
        for name, temp_path in staged.items():
            os.replace(temp_path, cache_dir / name)
    finally:
        for temp_path in staged.values():
            temp_path.unlink(missing_ok=True)


def _member_relative_name(name: str) -> str:
    """Strip the sdist's top-level folder (``llama_cpp_python-X.Y.Z/``) from a member name."""
    _, _, rest = name.partition("/")
    return rest


def _write_temp(source: IO[bytes], directory: Path, name: str) -> Path:
    """Copy ``source`` into a new hidden temporary file in ``directory``; return its path."""
    handle, temp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=directory)
    with os.fdopen(handle, "wb") as sink:
        while chunk := source.read(1 << 20):
            sink.write(chunk)
    os.chmod(temp_name, 0o644)  # mkstemp makes it private; the asset is not secret
    return Path(temp_name)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    """``python -m nextword.testing.assets [FOLDER]``: fetch the test assets (install time, not
    test time) and print where they are. Exit status 1, with the reason, when they cannot be had."""
    args = sys.argv[1:] if argv is None else argv
    try:
        files = gpt2_vocab_files(args[0] if args else None)
    except AssetUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(files.gguf.parent)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
