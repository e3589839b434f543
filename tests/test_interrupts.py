"""Ctrl-C (KeyboardInterrupt) during generate, stream, predict_next or a load leaves the
generator usable: the next calls give what a fresh generator gives, on both backends.

Two kinds of test: a KeyboardInterrupt injected right after the N-th engine call returned (the
worst moment: the engine's state changed, the Python bookkeeping not yet), for many N; and real
SIGINTs at random moments, in a subprocess (tests/scripts/sigint.py) so an abort or a hang shows.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import nextword
from nextword._words.search import clear_cache
from nextword.testing.pytest_fixtures import require_module

PROMPT = "I love cats because"
SCRIPTS = Path(__file__).parent / "scripts"


def operations(gen: nextword.Generator) -> dict[str, Callable[[], Any]]:
    return {
        "generate": lambda: gen.generate(PROMPT, max_new_tokens=12).sequences,
        "sample": lambda: gen.generate(PROMPT, max_new_tokens=8, do_sample=True, seed=3).sequences,
        "stream": lambda: gen.stream(PROMPT, max_new_tokens=12).text(),
        "words": lambda: gen.predict_next(PROMPT, 2).candidates,
        "tokens": lambda: gen.predict_next(PROMPT, 5, unit="token").candidates,
    }


def fresh_state(gen: nextword.Generator) -> None:
    """Forget cached word predictions and (llamacpp) the cached prompt, so a call runs the engine."""
    clear_cache()
    reset = getattr(gen, "reset_cache", None)
    if reset is not None:
        reset()


def results(gen: nextword.Generator) -> dict[str, Any]:
    out = {}
    for name, op in operations(gen).items():
        fresh_state(gen)
        out[name] = op()
    return out


class Interrupter:
    """Wraps an engine entry point: the N-th call runs, then raises KeyboardInterrupt."""

    def __init__(self) -> None:
        self.count = 0
        self.at = -1

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            out = fn(*args, **kwargs)
            self.count += 1
            if self.count == self.at:
                raise KeyboardInterrupt
            return out

        return wrapped


def interrupt_every_operation(gen: nextword.Generator, interrupter: Interrupter, expected: dict[str, Any]) -> int:
    """For each operation and each engine call N it makes: interrupt after call N, then check
    that every operation gives the expected results. Returns how many interrupts landed."""
    landed = 0
    for name, op in operations(gen).items():
        interrupter.at, interrupter.count = -1, 0
        fresh_state(gen)
        op()
        n_calls = interrupter.count
        assert n_calls > 0, f"{name} made no engine call"
        for at in sorted({1, (n_calls + 1) // 2, n_calls}):
            interrupter.at, interrupter.count = at, 0
            fresh_state(gen)
            with pytest.raises(KeyboardInterrupt):
                op()
            landed += 1
            interrupter.at = -1
            fresh_state(gen)
            # the same call again, and another kind of call, give a fresh generator's results
            again = {other: operations(gen)[other]() for other in (name, "generate" if name != "generate" else "words")}
            assert again == {other: expected[other] for other in again}, f"after an interrupt at call {at} of {name}"
        assert results(gen) == expected
    return landed


# ---- hf ------------------------------------------------------------------------------------------


def test_interrupts_on_hf_leave_the_generator_as_fresh(tiny_gpt2_dir: Path) -> None:
    from nextword_hf.plugin import SPEC as HF

    gen = HF.load(str(tiny_gpt2_dir), device="cpu")
    expected = results(HF.load(str(tiny_gpt2_dir), device="cpu"))
    interrupter = Interrupter()
    model = gen.hf_model
    model.forward = interrupter.wrap(model.forward)
    assert interrupt_every_operation(gen, interrupter, expected) >= 10


def test_an_interrupted_hf_load_leaves_nothing_behind(tiny_gpt2_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nextword_hf.generator as hf_generator
    from nextword_hf.plugin import SPEC as HF

    nextword.unload()
    real = hf_generator.load_pretrained

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(hf_generator, "load_pretrained", interrupted)
    with pytest.raises(KeyboardInterrupt):
        nextword.load("hf", str(tiny_gpt2_dir), device="cpu")
    monkeypatch.setattr(hf_generator, "load_pretrained", real)
    gen = nextword.load("hf", str(tiny_gpt2_dir), device="cpu")
    assert results(gen) == results(HF.load(str(tiny_gpt2_dir), device="cpu"))


# ---- llamacpp ------------------------------------------------------------------------------------


@pytest.fixture
def llama_decode_interrupter(monkeypatch: pytest.MonkeyPatch) -> Iterator[Interrupter]:
    llama_cpp = require_module("llama_cpp", "install nextword[llamacpp]")
    interrupter = Interrupter()
    monkeypatch.setattr(llama_cpp, "llama_decode", interrupter.wrap(llama_cpp.llama_decode))
    yield interrupter


def test_interrupts_on_llamacpp_leave_the_generator_as_fresh(
    tiny_gguf: Callable[[str], Path], llama_decode_interrupter: Interrupter
) -> None:
    from nextword_llamacpp.plugin import SPEC as LLAMACPP

    path = str(tiny_gguf("q8_0"))
    fresh = LLAMACPP.load(path)
    expected = results(fresh)
    fresh.close()
    gen = LLAMACPP.load(path)
    try:
        assert interrupt_every_operation(gen, llama_decode_interrupter, expected) >= 10
    finally:
        gen.close()


def test_an_interrupted_llamacpp_load_leaves_nothing_behind(
    tiny_gguf: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import nextword_llamacpp.generator as llama_generator
    from nextword_llamacpp.plugin import SPEC as LLAMACPP

    path = str(tiny_gguf("q8_0"))
    fresh = LLAMACPP.load(path)
    expected = results(fresh)
    fresh.close()
    nextword.unload()
    real = llama_generator.llama_cpp.Llama

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs).close()
        raise KeyboardInterrupt

    monkeypatch.setattr(llama_generator.llama_cpp, "Llama", interrupted)
    with pytest.raises(KeyboardInterrupt):
        nextword.load("llamacpp", path)
    monkeypatch.setattr(llama_generator.llama_cpp, "Llama", real)
    assert results(nextword.load("llamacpp", path)) == expected


# ---- real SIGINTs, in a subprocess ------------------------------------------------------------------


def run_sigint_script(backend: str, model: str, trials: int) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / "sigint.py"), backend, model, str(trials)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"the process died (rc {proc.returncode}): {proc.stderr[-3000:]}"
    report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return report


@pytest.mark.slow
def test_real_sigints_leave_the_hf_generator_as_fresh(tiny_gpt2_dir: Path) -> None:
    report = run_sigint_script("hf", str(tiny_gpt2_dir), 10)
    assert report["mismatches"] == []
    assert report["interrupted"] >= 5, report  # most signals landed inside a call


@pytest.mark.slow
def test_real_sigints_leave_the_llamacpp_generator_as_fresh(tiny_gguf: Callable[[str], Path]) -> None:
    require_module("llama_cpp", "install nextword[llamacpp]")
    report = run_sigint_script("llamacpp", str(tiny_gguf("q8_0")), 10)
    assert report["mismatches"] == []
    assert report["interrupted"] >= 5, report
