"""Fine-tuning input, without torch: reading corpora, holding out documents, packing, options,
and the output-folder rules. Every bad input gets a NextwordError naming what was wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import nextword
from nextword._tuning import (
    Document,
    FinetuneOptions,
    hold_out,
    overfit_warning,
    pack,
    read_corpus,
    split_single_document,
)
from nextword._tuning.output import StagedOutput
from nextword.errors import InvalidConfig, InvalidInput
from nextword.testing.pytest_fixtures import require_module


def test_folder_is_read_recursively_with_text_markdown_and_jsonl(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("first note")
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "sub" / "b.md").write_text("# Title\n\nsecond note")
    (tmp_path / "sub" / "deeper" / "c.jsonl").write_text(
        json.dumps({"text": "third"}) + "\n\n" + json.dumps({"text": "fourth", "id": 4}) + "\n"
    )
    (tmp_path / "sub" / "image.png").write_bytes(b"\x89PNG\x00\x00")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.txt").write_text("never read")
    corpus = read_corpus(tmp_path)
    assert [d.text for d in corpus.documents] == ["first note", "# Title\n\nsecond note", "third", "fourth"]
    assert corpus.documents[2].source.endswith("c.jsonl:1")
    assert corpus.skipped == (str(tmp_path / "sub" / "image.png"),)
    assert read_corpus(tmp_path).sha256 == corpus.sha256


def test_list_of_texts_and_paths_and_dataset(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("from a file")
    corpus = read_corpus(["one text", tmp_path / "a.txt", "  "])
    assert [d.text for d in corpus.documents] == ["one text", "from a file"]
    assert read_corpus(["x", "y"]).sha256 != read_corpus(["xy"]).sha256
    datasets = require_module("datasets", "install nextword[test]")
    ds = datasets.Dataset.from_dict({"text": ["alpha", "beta"], "n": [1, 2]})
    assert [d.text for d in read_corpus(ds).documents] == ["alpha", "beta"]
    with pytest.raises(InvalidInput, match="no 'text' column"):
        read_corpus(datasets.Dataset.from_dict({"body": ["a"]}))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("latin1.txt", "caf\xe9 au lait".encode("latin-1"), r"latin1.txt.*not UTF-8.*byte 3 \(line 1\)"),
        ("blob.txt", b"abc\x00\x01\x02", r"blob.txt.*binary"),
        ("bad.jsonl", b'{"text": "ok"}\n{"text": 3}\n', r"bad.jsonl:2.*string 'text' field"),
        ("broken.jsonl", b'{"text": "ok"}\nnot json\n', r"broken.jsonl:2.*not valid JSON"),
        ("empty.txt", b"  \n\n", r"corpus is empty"),
    ],
)
def test_bad_files_name_the_file(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InvalidInput, match=message):
        read_corpus(path)


def test_missing_paths_empty_inputs_and_wrong_types(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no such file or folder"):
        read_corpus(tmp_path / "nope")
    with pytest.raises(InvalidInput, match="holds no text files"):
        read_corpus(tmp_path)
    with pytest.raises(InvalidInput, match="corpus is empty"):
        read_corpus([])
    with pytest.raises(InvalidInput, match="corpus item 0 is a int"):
        read_corpus([3])
    with pytest.raises(InvalidInput, match="cannot read a corpus from a int"):
        read_corpus(5)


def test_hold_out_by_document_and_at_least_one_block() -> None:
    docs = [[i] * 10 for i in range(20)]  # 200 tokens in 20 documents
    sources = [f"d{i}" for i in range(20)]
    train, held = hold_out(docs, sources, fraction=0.1, block_size=8, seed=0)
    assert len(held) == 2 and sorted(train + held) == list(range(20))
    assert hold_out(docs, sources, fraction=0.1, block_size=8, seed=0) == (train, held)
    assert hold_out(docs, sources, fraction=0.1, block_size=8, seed=1) != (train, held)
    # One block of 35 tokens needs four held-out documents although 10% would be two.
    assert len(hold_out(docs, sources, fraction=0.1, block_size=35, seed=0)[1]) == 4
    with pytest.raises(InvalidInput, match=r"too small: 200 tokens in 20 document.*block of 150 tokens"):
        hold_out(docs, sources, fraction=0.1, block_size=150, seed=0)


def test_a_single_document_is_cut_at_a_paragraph_break() -> None:
    text = "\n\n".join(f"Paragraph {i} " + "word " * 20 for i in range(10))
    head, tail = split_single_document([Document(text, "notes.txt")], 0.1)
    assert head.text + "\n\n" + tail.text == text
    assert tail.text.startswith("Paragraph 9") and tail.source == "notes.txt (held-out tail)"
    with pytest.raises(InvalidInput, match=r"one document \(one.txt\) without line breaks"):
        split_single_document([Document("no breaks at all", "one.txt")], 0.1)
    docs = [[1] * 90, [2] * 10]
    assert hold_out(docs, [head.source, tail.source], fraction=0.1, block_size=4, seed=5) == ([0], [1])


def test_pack_has_no_padding() -> None:
    docs = [[1, 2, 3], [4, 5], [6, 7, 8, 9, 10]]
    assert pack(docs, 4) == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert pack(docs, 4, keep_remainder=True) == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
    assert pack([[1, 2, 3, 4, 5]], 4, keep_remainder=True) == [[1, 2, 3, 4]]  # one token predicts nothing


def test_overfit_warning_gives_the_numbers() -> None:
    message = overfit_warning(1200, 5.0, 16384)
    assert message is not None and "1,200 tokens" in message and "5.0 times" in message and "16,384" in message
    assert overfit_warning(1200, 1.0, 16384) is None
    assert overfit_warning(100_000, 5.0, 16384) is None


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("method", "qlora", "method must be 'lora' or 'full'"),
        ("epochs", 0, "epochs must be a positive number"),
        ("max_steps", 0, "max_steps must be an integer >= 1"),
        ("learning_rate", float("nan"), "learning_rate must be a positive number"),
        ("block_size", 1, "block_size must be an integer >= 2"),
        ("validation", 1.0, r"validation must be a fraction in \(0, 1\)"),
        ("device", "tpu", "device must be auto, cpu"),
        ("lora_dropout", 1.0, r"lora_dropout must be in \[0.0, 1.0\)"),
        ("batch_size", True, "batch_size must be an integer"),
        ("lora_targets", (), "lora_targets must be a non-empty tuple"),
    ],
)
def test_options_are_validated(field: str, value: object, message: str) -> None:
    with pytest.raises(InvalidConfig, match=message):
        FinetuneOptions(**{field: value})  # type: ignore[arg-type]


def test_options_defaults_and_record_fields() -> None:
    assert FinetuneOptions().lr == 2e-4 and FinetuneOptions(method="full").lr == 5e-5
    fields = FinetuneOptions(device="cpu", threads=2).training_fields()
    assert "device" not in fields and "threads" not in fields and fields["learning_rate"] == 2e-4


def test_finetune_refuses_bad_arguments_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig, match="unknown fine-tuning option.*epoch_count"):
        nextword.finetune(["x"], base="b", out=tmp_path / "o", epoch_count=3)
    with pytest.raises(nextword.BackendNotFound, match="no trainer named 'nope'"):
        nextword.finetune(["x"], base="b", out=tmp_path / "o", trainer="nope")
    assert not (tmp_path / "o").exists()


def test_output_folder_rules(tmp_path: Path) -> None:
    out = tmp_path / "model"
    out.mkdir()
    with pytest.raises(InvalidConfig, match="exists; pass --overwrite"):
        StagedOutput(out, resume=False, overwrite=False).check()
    StagedOutput(out, resume=False, overwrite=True).check()
    fresh = tmp_path / "fresh"
    with pytest.raises(InvalidConfig, match="nothing to resume"):
        StagedOutput(fresh, resume=True, overwrite=False).check()
    staged = StagedOutput(fresh, resume=False, overwrite=False)
    staged.prepare()
    staged.checkpoint.mkdir()
    (staged.staging / "model.safetensors").write_bytes(b"half")
    with pytest.raises(InvalidConfig, match="pass --resume to continue it, or --overwrite"):
        StagedOutput(fresh, resume=False, overwrite=False).check()
    staged.discard()  # a failure keeps only the checkpoint
    assert [p.name for p in staged.staging.iterdir()] == ["checkpoint"]
    StagedOutput(fresh, resume=True, overwrite=False).check()
    staged.checkpoint.rmdir()
    staged.discard()
    assert not staged.staging.exists() and not fresh.exists()
