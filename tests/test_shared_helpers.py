"""Logic that lives once in the core and that the backends, the CLI and explain share."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import nextword
from nextword._contract.checks import utf8_bytes
from nextword._contract.model_location import from_hub, locate_model
from nextword._decoding.detok import piece_text, text_after
from nextword._decoding.processors import log_softmax
from nextword._types.results import perplexity, to_jsonable
from nextword.errors import EngineError, InvalidInput, ModelLoadError


def test_log_softmax_rows_match_the_vector_form() -> None:
    rng = np.random.default_rng(0)
    rows = rng.normal(0, 5, size=(4, 50))
    rows[1, 3] = -np.inf
    rows[2, [5, 7]] = np.inf  # an overflowed row: its +inf entries share all the probability
    out = log_softmax(rows)
    for i in range(4):
        np.testing.assert_array_equal(out[i], log_softmax(rows[i]))
    assert np.allclose(np.exp(out[[0, 1, 3]]).sum(axis=1), 1.0)
    assert out[2, 5] == out[2, 7] == -math.log(2) and np.isneginf(out[2, 0])
    with pytest.raises(EngineError, match="NaN"):
        log_softmax(np.array([[0.0, np.nan]]))


def test_perplexity_guards_overflow_and_emptiness() -> None:
    assert perplexity([math.log(0.5), math.log(0.5)]) == pytest.approx(2.0)
    assert math.isnan(perplexity([]))
    assert perplexity([-800.0]) == math.inf


def test_utf8_bytes_refuses_lone_surrogates() -> None:
    assert utf8_bytes("é") == b"\xc3\xa9"
    with pytest.raises(InvalidInput, match="not valid Unicode .* position 2"):
        utf8_bytes("ab\ud800")


def test_text_after_keeps_what_the_context_changes() -> None:
    pieces = {1: "▁the", 2: "▁cat", 3: "s"}

    def detok(ids: list[int] | tuple[int, ...]) -> str:  # SentencePiece-like: a leading space is dropped
        return "".join(pieces[i] for i in ids).replace("▁", " ").lstrip(" ")

    assert detok([2]) == "cat"
    assert text_after(detok, [1], [2, 3]) == " cats"
    assert piece_text(detok, [1], 2) == " cat"
    assert text_after(detok, [], [2]) == "cat"


def test_locate_model_tells_paths_from_hub_ids(tmp_path: Path) -> None:
    folder = tmp_path
    (folder / "m.gguf").write_bytes(b"x")
    assert locate_model(str(folder)).kind == "folder"
    assert locate_model(str(folder / "m.gguf")).kind == "file"
    assert locate_model("org/name") == nextword._contract.model_location.ModelLocation("hub", "org/name")
    with pytest.raises(ModelLoadError, match="no such model file or folder"):
        locate_model(str(folder / "missing.gguf"))


def test_from_hub_prefers_the_cache_and_fails_fast_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> str:
        raise OSError("not cached")

    def download() -> str:
        raise AssertionError("must not download while offline")

    assert from_hub("org/m", lambda: "cached", download, hint="pass a file") == "cached"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="unreachable .*; pass a file"):
        from_hub("org/m", missing, download, hint="pass a file")


def test_results_to_dict_is_json(byte_gen: nextword.Generator) -> None:
    gen = byte_gen.generate("ab", max_new_tokens=3)
    data = json.loads(json.dumps(gen.to_dict()))
    assert data["sequences"][0]["token_ids"] == list(gen.token_ids) and data["prompt_tokens"] == 2
    assert data["settings"]["backend"] == "bytelm" and data["settings"]["decoding"]["max_new_tokens"] == 3
    pred = byte_gen.predict_next("ab", 3, unit="token").to_dict()
    assert [c["token_ids"] for c in pred["candidates"]] == [
        list(c.token_ids) for c in byte_gen.predict_next("ab", 3, unit="token")
    ]
    single = byte_gen.score("a").to_dict()
    assert single["tokens"] == [] and single["perplexity"] is None  # nan is not JSON
    assert to_jsonable({"x": (1.0, math.inf)}) == {"x": [1.0, None]}


def test_engine_features_have_working_defaults(byte_gen: nextword.Generator) -> None:
    """Every generator has sessions (the base's recomputing one by default); a session that
    forks is found by the public ``ForkableSession`` protocol, and the default branches read the
    prompt once and fork it for every path."""
    from nextword._decoding.branches import SessionBranches

    assert isinstance(byte_gen, nextword.Generator)
    plain = byte_gen.open_session(byte_gen.tokenize("ab"))
    assert not isinstance(plain, nextword.ForkableSession)

    forks: list[int] = []

    class Forkable:
        def __init__(self, state: list[int]) -> None:
            self.state = state

        def logits(self) -> np.ndarray:
            return np.asarray(byte_gen.next_token_logits(self.state))

        def feed(self, token_id: int) -> None:
            self.state = [*self.state, token_id]

        def fork(self) -> Forkable:
            forks.append(len(self.state))
            return Forkable(list(self.state))

    class WithForks:
        def __init__(self) -> None:
            self.opened = 0

        def open_session(self, prompt_ids: list[int]) -> Forkable:
            self.opened += 1
            return Forkable(list(prompt_ids))

    assert isinstance(Forkable([1]), nextword.ForkableSession)
    owner = WithForks()
    branches = SessionBranches(owner, [97, 98])
    rows = branches.logits([[99], [100], [101, 102]])
    assert owner.opened == 1 and forks == [2, 2, 2]  # the prompt was read once, each path forked it
    np.testing.assert_array_equal(rows[2], byte_gen.next_token_logits([97, 98, 101, 102]))
