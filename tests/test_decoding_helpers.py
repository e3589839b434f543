"""The shared decoding helpers: HF-semantics processors (checked against transformers itself),
stop strings, and UTF-8-safe incremental detokenization."""

from __future__ import annotations

import numpy as np
import pytest

from nextword import DecodingConfig
from nextword._decoding.detok import IncrementalDetokenizer, alternative_text
from nextword._decoding.processors import (
    LogitsPipeline,
    apply_repetition_penalty,
    banned_ngram_tokens,
    min_p_filter,
    top_k_filter,
    top_p_filter,
    typical_filter,
)
from nextword._decoding.stop import StopMatcher
from nextword.errors import EngineError

# ---- processors against transformers' own implementations ----------------------------------


def _hf() -> tuple[object, object]:
    import torch
    from transformers.generation import logits_process as lp

    return torch, lp


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.normal(0, 2.0, size=(20, 300)).astype(np.float32)


def _ours_vs_theirs(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert np.array_equal(np.isfinite(ours), np.isfinite(theirs))
    finite = np.isfinite(ours)
    np.testing.assert_allclose(ours[finite], theirs[finite], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("penalty", [0.5, 1.3, 2.0])
def test_repetition_penalty_matches_transformers(rows: np.ndarray, penalty: float) -> None:
    torch, lp = _hf()
    context = [3, 7, 7, 250, 0, 299]
    for row in rows:
        ours = apply_repetition_penalty(row.astype(np.float64).copy(), context, penalty)
        theirs = lp.RepetitionPenaltyLogitsProcessor(penalty)(torch.tensor([context]), torch.tensor(row)[None])[0]
        _ours_vs_theirs(ours, theirs.numpy())


@pytest.mark.parametrize("n", [1, 2, 3])
def test_no_repeat_ngram_matches_transformers(n: int) -> None:
    torch, lp = _hf()
    rng = np.random.default_rng(n)
    for _ in range(30):
        context = rng.integers(0, 6, size=int(rng.integers(1, 25))).tolist()
        scores = torch.zeros((1, 6))
        theirs = lp.NoRepeatNGramLogitsProcessor(n)(torch.tensor([context]), scores.clone())[0]
        banned_theirs = {i for i in range(6) if not np.isfinite(theirs[i].item())}
        assert banned_ngram_tokens(context, n) == banned_theirs


@pytest.mark.parametrize(
    ("ours", "make"),
    [
        (lambda x: top_k_filter(x, 7), lambda lp: lp.TopKLogitsWarper(7)),
        (lambda x: top_p_filter(x, 0.8), lambda lp: lp.TopPLogitsWarper(0.8)),
        (lambda x: top_p_filter(x, 0.2), lambda lp: lp.TopPLogitsWarper(0.2)),
        (lambda x: min_p_filter(x, 0.1), lambda lp: lp.MinPLogitsWarper(0.1)),
        (lambda x: typical_filter(x, 0.9), lambda lp: lp.TypicalLogitsWarper(0.9)),
        (lambda x: typical_filter(x, 0.3), lambda lp: lp.TypicalLogitsWarper(0.3)),
    ],
)
def test_warpers_match_transformers(rows: np.ndarray, ours: object, make: object) -> None:
    torch, lp = _hf()
    for row in rows:
        mine = ours(row.astype(np.float64).copy())  # type: ignore[operator]
        theirs = make(lp)(None, torch.tensor(row, dtype=torch.float64)[None])[0]  # type: ignore[operator]
        _ours_vs_theirs(mine, theirs.numpy())


def test_pipeline_min_new_tokens_bans_eos() -> None:
    pipe = LogitsPipeline(DecodingConfig(min_new_tokens=2), eos_token_ids={1})
    logits = np.array([0.0, 10.0, 1.0])
    assert pipe.next_token(logits, [0], 0, np.random.default_rng()) == 2
    assert pipe.next_token(logits, [0], 2, np.random.default_rng()) == 1
    # Greedy reads the argmax first: a banned EOS tied with the maximum at a lower index is
    # skipped, one at a higher index never chosen; a NaN score anywhere raises.
    assert pipe.next_token(np.array([5.0, 5.0, 5.0]), [0], 0, np.random.default_rng()) == 0
    assert pipe.next_token(np.array([0.0, 5.0, 5.0]), [0], 0, np.random.default_rng()) == 2
    assert pipe.next_token(np.array([7.0, 5.0, 7.0]), [0], 0, np.random.default_rng()) == 0
    with pytest.raises(EngineError, match="NaN"):
        pipe.next_token(np.array([0.0, 1.0, np.nan]), [0], 0, np.random.default_rng())


def test_pipeline_sampling_is_seeded() -> None:
    pipe = LogitsPipeline(DecodingConfig(do_sample=True))
    logits = np.zeros(50)
    a = [pipe.next_token(logits, [], 0, np.random.default_rng(4)) for _ in range(3)]
    b = [pipe.next_token(logits, [], 0, np.random.default_rng(4)) for _ in range(3)]
    assert a == b


# ---- stop strings ----------------------------------------------------------------------------


def _run_stop(pieces: list[str], stops: list[str]) -> tuple[str, bool, list[str]]:
    m = StopMatcher(stops)
    out = [m.feed(p) for p in pieces]
    out.append(m.flush())
    return "".join(out), m.stopped, out


def test_stop_spanning_pieces_is_cut_exactly() -> None:
    text, stopped, out = _run_stop(["Hello wo", "rl", "d! And more"], ["world!"])
    assert text == "Hello " and stopped


def test_text_that_might_start_a_stop_string_is_held_back_then_released() -> None:
    text, stopped, out = _run_stop(["abc", "d", "x"], ["dy"])
    assert not stopped and text == "abcdx"
    assert out[1] == ""  # "d" could have begun "dy"


def test_earliest_stop_wins() -> None:
    text, stopped, _ = _run_stop(["one two three"], ["three", "two"])
    assert text == "one " and stopped


def test_no_stops_passes_everything() -> None:
    assert _run_stop(["a", "b"], [])[0] == "ab"


# ---- incremental detokenization ------------------------------------------------------------


def _bytes_detok(ids: list[int]) -> str:
    return bytes(ids).decode("utf-8", errors="replace")


def test_chunks_never_split_a_character() -> None:
    text = "naïve café 🐱 ok"
    det = IncrementalDetokenizer(_bytes_detok)
    chunks = [det.add(b) for b in text.encode("utf-8")] + [det.flush()]
    assert "".join(chunks) == text
    assert not any("\ufffd" in c for c in chunks)
    assert "🐱" in chunks


def test_invalid_bytes_are_released_at_the_end() -> None:
    det = IncrementalDetokenizer(_bytes_detok)
    chunks = [det.add(b) for b in b"ok\xe2\x82"] + [det.flush()]
    assert "".join(chunks) == "ok\ufffd"


def test_an_alternative_completes_the_pending_character() -> None:
    before = list("고양이 ".encode()) + list("똠".encode()[:2])  # the last byte of 똠 is next
    assert alternative_text(_bytes_detok, before, "똠".encode()[2]) == "똠"
    assert alternative_text(_bytes_detok, before, "똥".encode()[2]) == "똥"
    assert alternative_text(_bytes_detok, before[:-1], "똠".encode()[1]) == "\ufffd"  # still incomplete
    assert alternative_text(_bytes_detok, list(b"ok "), ord("x")) == "x"  # nothing pending: its own text


def test_gpt2_tokens_of_an_emoji(gpt2_vocab: object) -> None:
    from nextword.testing.models import gpt2_tokenizer

    tok = gpt2_tokenizer(gpt2_vocab)  # type: ignore[arg-type]
    text = "I love 🐱 and 日本語 too"
    ids = tok(text)["input_ids"]
    assert len(ids) > len(text.split())  # the emoji and kanji take several byte tokens
    det = IncrementalDetokenizer(lambda t: tok.decode(list(t), clean_up_tokenization_spaces=False))
    chunks = [det.add(i) for i in ids] + [det.flush()]
    assert "".join(chunks) == text
    assert not any("\ufffd" in c for c in chunks)


@pytest.mark.parametrize(
    "options",
    [
        {"top_k": 20, "top_p": 0.7},
        {"top_k": 50, "min_p": 0.05, "temperature": 0.7},
        {"top_k": 30, "typical_p": 0.8},
        {"top_p": 0.9, "min_p": 0.01},
    ],
)
def test_pipeline_equals_the_filters_applied_in_turn_on_the_full_vocabulary(
    rows: np.ndarray, options: dict[str, float]
) -> None:
    """The pipeline works on the top-k survivors only; that must not change any result."""
    cfg = DecodingConfig(**options)  # type: ignore[arg-type]
    pipe = LogitsPipeline(cfg)
    for row in rows:
        expected = row.astype(np.float64) / (cfg.temperature or 1.0)
        if cfg.top_k:
            top_k_filter(expected, cfg.top_k)
        if cfg.top_p is not None:
            top_p_filter(expected, cfg.top_p)
        if cfg.min_p is not None:
            min_p_filter(expected, cfg.min_p)
        if cfg.typical_p is not None:
            typical_filter(expected, cfg.typical_p)
        _ours_vs_theirs(pipe.process(row, [], 0), expected)


@pytest.mark.parametrize("top_p", [0.3, 0.9, 0.999])
def test_top_p_on_a_large_vocabulary_matches_transformers(top_p: float) -> None:
    """Past 1024 tokens the filter sorts only the most likely ones; the result must not change."""
    torch, lp = _hf()
    rng = np.random.default_rng(7)
    for scale in (0.5, 3.0, 8.0):  # flat to peaked distributions: the nucleus is large or small
        row = rng.normal(0, scale, size=60_000)
        mine = top_p_filter(row.copy(), top_p)
        theirs = lp.TopPLogitsWarper(top_p)(None, torch.tensor(row)[None])[0]  # type: ignore[attr-defined]
        _ours_vs_theirs(mine, theirs.numpy())


def test_sampling_draws_follow_the_distribution() -> None:
    pipe = LogitsPipeline(DecodingConfig(do_sample=True))
    logits = np.array([np.log(0.5), np.log(0.3), np.log(0.2), -np.inf])
    rng = np.random.default_rng(0)
    counts = np.bincount([pipe.choose(logits.copy(), rng) for _ in range(20_000)], minlength=4)
    np.testing.assert_allclose(counts / counts.sum(), [0.5, 0.3, 0.2, 0.0], atol=0.015)


def test_overflowing_and_nan_scores() -> None:
    from nextword import EngineError
    from nextword._decoding.processors import log_softmax

    lp = log_softmax(np.array([np.inf, 1.0, np.inf, -np.inf]))
    np.testing.assert_allclose(np.exp(lp), [0.5, 0.0, 0.5, 0.0])
    with pytest.raises(EngineError, match="NaN"):
        log_softmax(np.array([0.0, np.nan]))
    # A temperature so small that the scores overflow behaves like greedy decoding.
    pipe = LogitsPipeline(DecodingConfig(temperature=1e-320, do_sample=True))
    assert pipe.next_token(np.array([0.1, 2.0, 0.3]), [], 0, np.random.default_rng(0)) == 1
    with pytest.raises(EngineError):
        pipe.next_token(np.array([0.1, np.nan]), [], 0, np.random.default_rng(0))
