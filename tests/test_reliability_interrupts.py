"""Reliability battery: interruptions.

In-process Ctrl-C (``KeyboardInterrupt``) at random points of API calls leaves every generator
usable, with identical results afterwards; signals to a ``nextword convert`` subprocess exit with
the signal's status, leave no temporary file and keep the old output; a Ctrl-C that lands while
llama.cpp is logging is honoured once the engine call returns (issue 13, defect 5).
"""

from __future__ import annotations

import _thread
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import nextword
from nextword.testing.pytest_fixtures import require_module, unavailable

# ---- in-process Ctrl-C at random points -------------------------------------------------------


def _interrupter(delay: float) -> threading.Timer:
    """A timer (not started) that interrupts the main thread ``delay`` seconds after its start."""
    return threading.Timer(delay, _thread.interrupt_main)


@pytest.mark.parametrize("backend", ["hf", "llamacpp"])
def test_random_ctrl_c_leaves_the_generator_giving_identical_results(
    backend: str, tiny_gpt2_dir: Path, tiny_gguf: Callable[[str], Path]
) -> None:
    model = str(tiny_gpt2_dir) if backend == "hf" else str(tiny_gguf("f32"))
    options = {"device": "cpu"} if backend == "hf" else {}
    gen = nextword.load(backend, model, **options)
    calls: list[Callable[[], Any]] = [
        lambda: gen.generate("The weather today is", max_new_tokens=8).token_ids,
        lambda: gen.generate("Once upon", max_new_tokens=8, do_sample=True, seed=5, top_k=40).token_ids,
        lambda: "".join(gen.stream("A stream of", max_new_tokens=8)),
        lambda: [c.token_ids for c in gen.predict_next("I love cats because", 3)],
        lambda: round(gen.score("An ordinary sentence to score.").logprob, 6),
    ]
    expected = [call() for call in calls]
    started = time.perf_counter()
    for call in calls:
        call()
    span = (time.perf_counter() - started) / len(calls)  # a typical call's length
    rng = random.Random(13)
    interrupted = 0
    for trial in range(2 * len(calls)):
        index = trial % len(calls)
        timer = _interrupter(rng.uniform(0.0, span))
        try:
            try:
                # Started inside the try: a short delay can fire before start() returns.
                timer.start()
                calls[index]()
            finally:
                timer.join()
            for _ in range(200):  # an interrupt that fired after the call lands here, inside the try
                time.sleep(0.0005)
        except KeyboardInterrupt:
            interrupted += 1
        assert calls[index]() == expected[index], f"the result changed after trial {trial}"
    assert [call() for call in calls] == expected
    assert interrupted > 0  # some interruptions landed inside calls


def test_ctrl_c_while_llama_cpp_logs_is_raised_after_the_engine_call(
    tiny_gguf: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """A signal handled while C code runs surfaces in the next Python code, often llama.cpp's log
    callback; ctypes would print it and carry on (a Ctrl-C ignored). Here the interruption lands in
    the callback for certain; it must reach the caller once the load has finished."""
    require_module("llama_cpp", "install nextword[llamacpp]")
    from nextword_llamacpp import llama_log
    from nextword_llamacpp.plugin import SPEC as LLAMACPP

    before = LLAMACPP.load(str(tiny_gguf("f32")))
    expected = before.generate("Hi", max_new_tokens=2)
    before.close()
    original = llama_log.LlamaLog.add
    landed: list[bool] = []

    def add(self: Any, level: int, text: str) -> None:
        if not landed:
            landed.append(True)
            raise KeyboardInterrupt
        original(self, level, text)

    monkeypatch.setattr(llama_log.LlamaLog, "add", add)
    with pytest.raises(KeyboardInterrupt):
        LLAMACPP.load(str(tiny_gguf("f32")))
    assert landed
    monkeypatch.setattr(llama_log.LlamaLog, "add", original)
    assert "Exception ignored" not in capfd.readouterr().err
    gen = LLAMACPP.load(str(tiny_gguf("f32")))
    assert gen.generate("Hi", max_new_tokens=2).token_ids == expected.token_ids
    gen.close()


# ---- signals to a `nextword convert` subprocess ------------------------------------------------


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "phase", "status"),
    [
        (signal.SIGTERM, "writing", 143),
        (signal.SIGHUP, "writing", 129),
        (signal.SIGINT, "writing", 130),
        (signal.SIGINT, "quantizing", 130),
        (signal.SIGTERM, "quantizing", 143),
    ],
)
def test_a_signal_during_convert_exits_with_its_status_and_leaves_no_temporary_file(
    signum: int, phase: str, status: int, tiny_gpt2_dir: Path, tmp_path: Path
) -> None:
    """The signal is sent once the converter's temporary file exists ("writing"), or once llama.cpp's
    quantizer runs in its child process ("quantizing", a K-quant)."""
    require_module("llama_cpp", "install nextword[llamacpp]")
    me = os.getpid()
    if phase == "quantizing" and not Path(f"/proc/{me}/task/{me}/children").exists():
        unavailable("seeing the quantizer's child process needs Linux's /proc/PID/task/PID/children")
    out = tmp_path / "model.gguf"
    out.write_bytes(b"the previous output")
    proc = subprocess.Popen(
        [sys.executable, "-m", "nextword", "convert", str(tiny_gpt2_dir), str(out), "--type", "q4_k_m"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if phase == "writing" and any(p.name.startswith(".nwconv") for p in tmp_path.iterdir()):
                break
            if phase == "quantizing" and _children(proc.pid):
                break
            time.sleep(0.002)
        assert proc.poll() is None, "the conversion ended before the signal could be sent"
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == status, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.gguf"]
    assert out.read_bytes() == b"the previous output"
