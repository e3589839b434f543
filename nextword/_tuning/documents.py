"""Reading a fine-tuning corpus: text and Markdown files, folders of them, JSON Lines, or texts.

Nothing here needs torch: documents are plain strings with the place they came from, so errors
can name the file (and line) that was wrong.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from nextword.errors import InvalidInput

__all__ = ["TEXT_SUFFIXES", "Corpus", "Document", "read_corpus"]

TEXT_SUFFIXES = (".txt", ".text", ".md", ".markdown", ".rst")
"""Files a folder contributes as plain-text documents (``.jsonl`` files are read by line)."""
_JSONL_SUFFIXES = (".jsonl",)


@dataclasses.dataclass(frozen=True)
class Document:
    """One document of the corpus and where it came from (``file``, ``file:line`` or ``text[i]``)."""

    text: str
    source: str


@dataclasses.dataclass(frozen=True)
class Corpus:
    """The documents read, the files a folder held that were not read, and a hash of the content."""

    documents: tuple[Document, ...]
    skipped: tuple[str, ...]
    sha256: str
    """SHA-256 over every document's text (in order, each length-prefixed)."""

    @property
    def characters(self) -> int:
        """Total characters over all documents."""
        return sum(len(d.text) for d in self.documents)


def read_corpus(data: Any) -> Corpus:
    """Read ``data`` into documents.

    ``data`` may be a path (``str`` or :class:`os.PathLike`) to a text file, a Markdown file, a
    ``.jsonl`` file (one JSON object with a string ``text`` field per line, each a document) or a
    folder (read recursively: files ending in :data:`TEXT_SUFFIXES` or ``.jsonl``; hidden files
    and folders are left out and other files are listed in ``skipped``); a list mixing
    :class:`os.PathLike` paths and ``str`` texts (a ``str`` inside a list is a document's text,
    not a path); or a ``datasets.Dataset`` with a ``text`` column. A file given by name is read
    whatever its suffix.

    Raises :class:`~nextword.InvalidInput` naming the file (and line) for a missing path, a file
    that is not UTF-8, a binary file, a bad JSON line, and for a corpus with no text at all.
    """
    documents: list[Document] = []
    skipped: list[str] = []
    if isinstance(data, str | os.PathLike):
        _read_path(Path(data), documents, skipped, explicit=True)
    elif hasattr(data, "column_names") and hasattr(data, "__getitem__"):
        _read_dataset(data, documents)
    elif isinstance(data, Sequence) and not isinstance(data, bytes | bytearray):
        if not data:
            raise InvalidInput("the corpus is empty: no files or texts were given")
        for i, item in enumerate(data):
            if isinstance(item, str):
                documents.append(Document(item, f"text[{i}]"))
            elif isinstance(item, os.PathLike):
                _read_path(Path(item), documents, skipped, explicit=True)
            else:
                raise InvalidInput(f"corpus item {i} is a {type(item).__name__}; expected a str text or a path")
    else:
        raise InvalidInput(
            f"cannot read a corpus from a {type(data).__name__}; pass a path, a list of texts or paths, "
            "or a datasets.Dataset with a 'text' column"
        )
    documents = [d for d in documents if d.text.strip()]
    if not documents:
        raise InvalidInput("the corpus is empty: the files and texts given hold no text")
    return Corpus(tuple(documents), tuple(skipped), _hash(documents))


def _read_path(path: Path, documents: list[Document], skipped: list[str], *, explicit: bool) -> None:
    if path.is_dir():
        found = False
        for child in sorted(_walk(path)):
            if child.suffix.lower() in TEXT_SUFFIXES + _JSONL_SUFFIXES:
                found = True
                _read_file(child, documents)
            else:
                skipped.append(str(child))
        if not found:
            raise InvalidInput(
                f"the folder {str(path)!r} holds no text files ({', '.join(TEXT_SUFFIXES + _JSONL_SUFFIXES)})"
            )
    elif path.is_file():
        _read_file(path, documents)
    elif path.exists():
        raise InvalidInput(f"{str(path)!r} is neither a file nor a folder")
    else:
        raise InvalidInput(f"no such file or folder: {str(path)!r}")


def _walk(folder: Path) -> Iterable[Path]:
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith("."):
                yield Path(root) / name


def _read_file(path: Path, documents: list[Document]) -> None:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {str(path)!r}: {exc.strerror or exc}") from exc
    if b"\x00" in raw[:65536]:
        raise InvalidInput(f"{str(path)!r} looks like a binary file (it holds NUL bytes), not text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InvalidInput(
            f"{str(path)!r} is not UTF-8 text: byte {exc.start} (line {line}) cannot be decoded; "
            "convert it to UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None
    if path.suffix.lower() in _JSONL_SUFFIXES:
        _read_jsonl(path, text, documents)
    else:
        documents.append(Document(text.replace("\r\n", "\n"), str(path)))


def _read_jsonl(path: Path, text: str, documents: list[Document]) -> None:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise InvalidInput(f"{where}: expected a JSON object with a string 'text' field")
        documents.append(Document(record["text"], where))


def _read_dataset(dataset: Any, documents: list[Document]) -> None:
    if "text" not in dataset.column_names:
        raise InvalidInput(f"the dataset has no 'text' column (its columns: {', '.join(dataset.column_names)})")
    for i, text in enumerate(dataset["text"]):
        if not isinstance(text, str):
            raise InvalidInput(f"dataset row {i}: 'text' is a {type(text).__name__}, not a str")
        documents.append(Document(text, f"dataset[{i}]"))


def _hash(documents: Sequence[Document]) -> str:
    digest = hashlib.sha256()
    for doc in documents:
        data = doc.text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()
