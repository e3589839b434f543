"""``nextword.backend.read_gguf_header``: the header of a GGUF file (scalar metadata and tensor
records) read without its arrays or weights, the same as gguf-py's full reader reads it, and
a file that is not sound refused with a ModelLoadError naming what is wrong."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from nextword.backend import read_gguf_header
from nextword.errors import ModelLoadError
from nextword.testing.pytest_fixtures import require_module


@pytest.mark.parametrize("kind", ["f32", "q8_0"])
def test_header_equals_gguf_py(tiny_gguf: Callable[[str], Path], kind: str) -> None:
    gguf = require_module("gguf")
    path = tiny_gguf(kind)
    header = read_gguf_header(path)
    reader = gguf.GGUFReader(str(path))
    assert header.version == int(reader.fields["GGUF.version"].contents())
    want_meta = {
        key: f.contents()
        for key, f in reader.fields.items()
        if not key.startswith("GGUF.") and f.types and f.types[0] != gguf.GGUFValueType.ARRAY
    }
    assert header.metadata == pytest.approx(want_meta)
    assert [t.name for t in header.tensors] == [t.name for t in reader.tensors]
    for ours, theirs in zip(header.tensors, reader.tensors, strict=True):
        assert ours.shape == tuple(int(d) for d in theirs.shape), ours.name
        assert ours.type == int(theirs.tensor_type) and ours.nbytes == int(theirs.n_bytes), ours.name
    table = header.tensor("position_embd.weight")
    assert table is not None and table.shape[1] == header.metadata["gpt2.context_length"]
    assert header.tensor("no.such.tensor") is None


def test_bad_files_are_refused(tiny_gguf: Callable[[str], Path], tmp_path: Path) -> None:
    data = tiny_gguf("q8_0").read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="truncated or corrupt"):
        read_gguf_header(cut)
    text = tmp_path / "text.gguf"
    text.write_text("not a model")
    with pytest.raises(ModelLoadError, match="not a GGUF file"):
        read_gguf_header(text)
    with pytest.raises(ModelLoadError, match="is empty"):
        (tmp_path / "empty.gguf").write_bytes(b"")
        read_gguf_header(tmp_path / "empty.gguf")
    with pytest.raises(ModelLoadError, match="cannot read"):
        read_gguf_header(tmp_path / "missing.gguf")
