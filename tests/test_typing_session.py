"""The typing session (issue 22): at every keystroke its suggestions are what a fresh
``predict_next`` gives for the text (bit for bit on llamacpp's exact batching, within float
rounding on hf, whose rows depend on the batch they were evaluated in), through typing,
backspace, accept and paste; a keystroke that continues a shown word is answered from the kept
tree (no engine row) and one that leaves it searches again; edits cancel a running prefetch or
search; stateless calls on a growing text give the same results with and without the trees."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import nextword
from nextword._analysis.evaluation import Evaluation, evaluate
from nextword._words.complete import predict_or_complete

# Short paragraphs: every path (a new word, a word continued, a finished word, punctuation, a
# character split across tokens) within a few dozen keystrokes.
ENGLISH = "I love cats because they sleep. The dog bar"
KOREAN = "오늘은 날씨가 좋다. 우리"

HF_TOL = 1e-6


def fresh(gen: nextword.Generator, text: str, k: int = 3) -> nextword.Prediction:
    """What a stateless predict_next gives, every search from scratch (no kept tree)."""
    return predict_or_complete(gen, text, k, reuse=False)


def assert_same(got: nextword.Prediction, want: nextword.Prediction, tol: float) -> None:
    where = repr(want.prompt)
    assert got.prompt == want.prompt
    assert [c.text for c in got] == [c.text for c in want], where
    assert [c.token_ids for c in got] == [c.token_ids for c in want], where
    assert [c.remaining for c in got] == [c.remaining for c in want], where
    assert got.typed == want.typed, where
    pairs = [(c.prob, d.prob) for c, d in zip(got, want, strict=True)]
    pairs += [(got.unexplored_mass, want.unexplored_mass), (got.prefix_prob or 0.0, want.prefix_prob or 0.0)]
    logs = [(c.logprob, d.logprob) for c, d in zip(got, want, strict=True)]
    if tol == 0.0:
        assert all(a == b for a, b in pairs + logs), (where, got, want)
    else:  # probabilities within tol; log-probabilities within 10 tol (a relative bound on the probability)
        assert max(abs(a - b) for a, b in pairs) <= tol, (where, got, want)
        assert max(abs(a - b) for a, b in logs) <= 10 * tol, (where, got, want)


def type_and_check(
    gen: nextword.Generator, text: str, tol: float, *, edits: bool = True
) -> tuple[nextword.TypingSession, list[tuple[str, int]]]:
    """Type ``text`` character by character (with a backspace, an accepted suggestion and a paste
    when ``edits``), checking the suggestions against a fresh search after every edit. Returns the
    session and, per keystroke, the text and the engine rows it cost."""
    session = gen.typing_session(k=3)
    costs: list[tuple[str, int]] = []

    def check() -> nextword.Prediction:
        before = session.stats.engine_rows
        got = session.suggestions()
        costs.append((session.text, session.stats.engine_rows - before))
        assert_same(got, fresh(gen, session.text), tol)
        return got

    half = len(text) // 2
    for i, ch in enumerate(text):
        session.type(ch)
        check()
        if edits and i == 3:  # a typo, deleted
            session.type("q")
            check()
            session.backspace()
            check()
        if edits and i == half:  # accept the top suggestion, then go back to the text
            session.accept(0)
            check()
            session.replace(text[: i + 1])  # a paste of the original text (a cursor move)
            check()
    return session, costs


@pytest.fixture(scope="module")
def gemma(gemma_gguf: Path) -> Iterator[nextword.Generator]:
    from nextword.testing.pytest_fixtures import require_module

    require_module("llama_cpp", "install nextword[llamacpp]")
    gen = nextword.load("llamacpp", str(gemma_gguf))
    yield gen


# ---- hf ----------------------------------------------------------------------------------------


def test_hf_session_equals_predict_next_at_every_keystroke(hf_gen: nextword.Generator) -> None:
    session, costs = type_and_check(hf_gen, ENGLISH, HF_TOL)
    assert session.stats.searches >= len(ENGLISH)
    # The public call gives the same (a stateless call on the generator's shared trees).
    assert_same(session.suggestions(), hf_gen.predict_next(session.text, 3), HF_TOL)
    # The backspace went back to a text already answered.
    assert session.stats.remembered >= 1


def test_hf_session_korean(hf_gen: nextword.Generator) -> None:
    type_and_check(hf_gen, KOREAN, HF_TOL, edits=False)


def test_filtering_the_tree_equals_a_fresh_search(hf_gen: nextword.Generator) -> None:
    """Each keystroke replays the search on the kept tree: a prefix the tree holds costs no
    engine row (the tree is filtered and renormalised), a prefix it lacks is evaluated (the
    session searches again, for what is missing). With the prefetch, the next character of a
    shown word is prepared on idle time: typing it costs nothing; a character that leaves every
    shown word is searched for. Every answer equals a fresh search."""
    session = hf_gen.typing_session(k=3, prefetch=True)
    prepared = searched = 0
    for ch in "I love cats because they":
        session.type(ch)
        before = session.stats.searches
        got = session.suggestions()
        assert_same(got, fresh(hf_gen, session.text), HF_TOL)
        if session.stats.searches == before:
            prepared += 1  # the keystroke typed the next character of a word shown
        else:
            searched += 1
        wait_for(lambda: not session._running)  # idle: the prefetch finishes
    assert prepared >= 2 and searched >= 3, (prepared, searched)  # a random-weight model: few words guessed
    before_rows, before = session.stats.engine_rows, session.stats.searches
    session.type("z")  # leaves every shown word: not prepared, searched again
    assert_same(session.suggestions(), fresh(hf_gen, session.text), HF_TOL)
    assert session.stats.searches > before and session.stats.engine_rows > before_rows


def test_accept_types_the_rest_of_the_word(hf_gen: nextword.Generator) -> None:
    with hf_gen.typing_session(k=2, text="I love ca") as session:
        shown = session.suggestions()
        assert shown.typed == " ca"
        added = session.accept(shown[1])
        assert added == shown[1].remaining and session.text == "I love" + shown[1].text
        after = session.suggestions()
        assert after.prompt == session.text
        session.accept(0)
        assert session.text.endswith(after[0].remaining or after[0].text)


def test_bad_input_and_lifecycle(hf_gen: nextword.Generator) -> None:
    session = hf_gen.typing_session(k=3)
    with pytest.raises(nextword.InvalidInput, match="typed characters must be a string"):
        session.type(5)  # type: ignore[arg-type]
    with pytest.raises(nextword.InvalidInput, match="backspace"):
        session.backspace(-1)
    with pytest.raises(nextword.InvalidState, match="call suggestions"):
        session.accept(0)
    session.type("I love")
    session.suggestions()
    with pytest.raises(nextword.InvalidInput, match="index 7"):
        session.accept(7)
    with pytest.raises(nextword.InvalidInput, match="k must be at most 100"):
        session.suggestions(101)
    with pytest.raises(nextword.InvalidInput, match="complete must be"):
        hf_gen.typing_session(complete="maybe")  # type: ignore[arg-type]
    session.close()
    session.close()
    with pytest.raises(nextword.InvalidState, match="closed"):
        session.type("x")


def test_module_api_typing_session(tiny_gpt2_dir: Path) -> None:
    opts = {"backend": "hf", "model": str(tiny_gpt2_dir), "options": {"device": "cpu"}}
    session = nextword.typing_session(k=2, text="Once upon a ti", **opts)  # type: ignore[arg-type]
    got = session.suggestions()
    want = nextword.predict_next("Once upon a ti", 2, **opts)  # type: ignore[arg-type]
    # hf rows depend on the batch they were evaluated in, so the figures agree within float rounding
    assert got.settings == want.settings and got.unit == want.unit
    assert_same(got, want, HF_TOL)


def test_stateless_calls_reuse_trees_with_the_same_results(hf_gen: nextword.Generator) -> None:
    """predict_next on a growing text: the generator's shared trees give what fresh searches give."""
    text = "She sells sea shells by the sea"
    for i in range(8, len(text) + 1):
        assert_same(hf_gen.predict_next(text[:i], 3), fresh(hf_gen, text[:i]), HF_TOL)
        assert_same(hf_gen.predict_next(text[:i], 3, complete="next"), fresh_next(hf_gen, text[:i]), HF_TOL)


def fresh_next(gen: nextword.Generator, text: str) -> nextword.Prediction:
    return predict_or_complete(gen, text, 3, complete="next", reuse=False)


# ---- cancellation ---------------------------------------------------------------------------------


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


class Gate:
    """Engine calls made by the threads named ``blocked`` wait until :meth:`open` (the engine
    is busy): what a keystroke during a prefetch or a search looks like, deterministically."""

    def __init__(self, gen: nextword.Generator, monkeypatch: pytest.MonkeyPatch, blocked: str) -> None:
        self.event = threading.Event()
        self.waiting = threading.Event()
        self.blocked = blocked
        inner = gen.open_branches

        def gated(ids: list[int]) -> object:
            branches = inner(ids)
            gate = self

            class Gated:
                def logits(self, paths: object) -> object:
                    if threading.current_thread().name == gate.blocked:
                        gate.waiting.set()
                        gate.event.wait(60)
                    return branches.logits(paths)  # type: ignore[arg-type]

                def close(self) -> None:
                    branches.close()

            return Gated()

        monkeypatch.setattr(gen, "open_branches", gated)

    def open(self) -> None:
        self.event.set()


def test_a_keystroke_cancels_a_prefetch(hf_gen: nextword.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = Gate(hf_gen, monkeypatch, "nextword-prefetch")
    session = nextword.TypingSession(hf_gen, k=3, prefetch=True, text="The weather today is")
    first = session.suggestions()  # answered, then a prefetch of the text with its top word starts
    assert session.stats.prefetches == 1 and first.prompt == "The weather today is"
    assert gate.waiting.wait(60)  # the prefetch is at the engine
    session.type(" v")  # the next keystroke
    gate.open()
    wait_for(lambda: session.stats.prefetches_cancelled == 1)
    assert_same(session.suggestions(), fresh(hf_gen, session.text), HF_TOL)


def test_a_keystroke_cancels_a_running_search(hf_gen: nextword.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = Gate(hf_gen, monkeypatch, "search-worker")
    session = hf_gen.typing_session(k=3, text="My favourite colour is gr")
    outcome: list[object] = []
    worker = threading.Thread(target=lambda: outcome.append(_catch(session.suggestions)), name="search-worker")
    worker.start()
    assert gate.waiting.wait(60)  # the search is at the engine
    session.type("e")
    gate.open()
    worker.join(60)
    assert isinstance(outcome[0], nextword.Cancelled) and session.stats.cancelled == 1
    assert_same(session.suggestions(), fresh(hf_gen, "My favourite colour is gre"), HF_TOL)


def test_async_twin(hf_gen: nextword.Generator) -> None:
    session = hf_gen.typing_session(k=3, text="It was a dark and storm")

    async def run() -> nextword.Prediction:
        return await session.asuggestions()

    assert_same(asyncio.run(run()), fresh(hf_gen, session.text), HF_TOL)


def _catch(fn: Callable[[], object]) -> object:
    try:
        return fn()
    except nextword.NextwordError as exc:
        return exc


# ---- nextword eval: the keystroke simulation on the kept trees -------------------------------------


def same_figures(a: Evaluation, b: Evaluation) -> None:
    assert a.words == b.words
    assert (a.keystrokes, a.word_top1, a.word_top3, a.perplexity) == (
        b.keystrokes,
        b.word_top1,
        b.word_top3,
        b.perplexity,
    )


def test_eval_figures_with_and_without_the_trees_hf(hf_gen: nextword.Generator) -> None:
    text = "The cat sat on the mat and looked at the dog."
    same_figures(evaluate(hf_gen, text, k=3), evaluate(hf_gen, text, k=3, reuse="none"))


@pytest.mark.slow
def test_eval_figures_with_and_without_the_trees_gemma(gemma: nextword.Generator) -> None:
    text = "Alice was beginning to get very tired"
    same_figures(evaluate(gemma, text, k=3), evaluate(gemma, text, k=3, reuse="none"))


# ---- llamacpp (Gemma 3 270M Q4_K_M): bit for bit --------------------------------------------------


@pytest.mark.slow
def test_gemma_session_equals_predict_next_english(gemma: nextword.Generator) -> None:
    type_and_check(gemma, "Happy birthday, my fri", 0.0)


@pytest.mark.slow
def test_gemma_session_equals_predict_next_korean(gemma: nextword.Generator) -> None:
    type_and_check(gemma, "오늘은 날씨가 좋", 0.0, edits=False)
