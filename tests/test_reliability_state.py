"""Reliability battery: concurrency, abandoned streams, closed generators and the model cache.

Each test holds one promise of docs/guarantees.md (issue 13, defects 2, 3, 6 and 8).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import nextword
from nextword import BackendSpec, Capabilities, Support, hookimpl
from nextword._api.calls import _canonical
from nextword.testing.pytest_fixtures import require_module
from tests.thirdparty.bytelm import ByteBigramGenerator

SAMPLING = {"max_new_tokens": 6, "do_sample": True, "top_k": 50, "temperature": 1.5}


def _wait_until_still(read: Callable[[], int], *, quiet: float = 0.3, limit: float = 20.0) -> int:
    """Poll ``read()`` until it stops changing for ``quiet`` seconds (at most ``limit`` seconds)."""
    deadline = time.monotonic() + limit
    last, since = read(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = read()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last


# ---- defect 2: each call's randomness is its own ----------------------------------------------


@pytest.mark.parametrize("backend", ["hf", "llamacpp"])
def test_seeded_samples_are_reproducible_with_two_generators_in_parallel_threads(
    backend: str, tiny_gpt2_dir: Path, tiny_gguf: Callable[[str], Path]
) -> None:
    torch = require_module("torch", "install nextword[hf]")
    if backend == "hf":
        from nextword_hf.plugin import SPEC as HF

        gens: list[Any] = [HF.load(str(tiny_gpt2_dir), device="cpu") for _ in range(2)]
    else:
        from nextword_llamacpp.plugin import SPEC as LLAMACPP

        gens = [LLAMACPP.load(str(tiny_gguf("f32"))) for _ in range(2)]
    seeds = list(range(4))
    expected = {seed: gens[0].generate("The cat", seed=seed, **SAMPLING).token_ids for seed in seeds}
    got: list[tuple[int, tuple[int, ...]]] = []
    stop = threading.Event()

    def sample(gen: Any) -> None:
        for seed in seeds:
            got.append((seed, gen.generate("The cat", seed=seed, **SAMPLING).token_ids))

    def disturb() -> None:  # another user of torch's process-wide random generator
        while not stop.is_set():
            torch.rand(64)

    threads = [threading.Thread(target=sample, args=(g,)) for g in gens]
    noise = threading.Thread(target=disturb)
    noise.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    stop.set()
    noise.join()
    for gen in gens:
        gen.close()
    assert len(got) == 2 * len(seeds)
    differing = [seed for seed, ids in got if ids != expected[seed]]
    assert differing == [], f"seeded samples changed under concurrency for seeds {differing}"


# ---- defect 3: an abandoned stream does not hold the model -----------------------------------


class _ForwardCounter:
    """Counts forward passes of a torch module."""

    def __init__(self, module: Any) -> None:
        self.count = 0
        self._handle = module.register_forward_hook(self._hook)

    def _hook(self, *args: Any) -> None:
        self.count += 1

    def remove(self) -> None:
        self._handle.remove()


@pytest.fixture
def fresh_hf(tiny_gpt2_dir: Path) -> Iterator[Any]:
    require_module("torch", "install nextword[hf]")
    from nextword_hf.plugin import SPEC as HF

    gen = HF.load(str(tiny_gpt2_dir), device="cpu")
    yield gen
    gen.close()


def test_an_abandoned_hf_stream_stops_generating_and_frees_the_model(fresh_hf: Any) -> None:
    from nextword_hf.streaming import STREAM_LOOKAHEAD

    counter = _ForwardCounter(fresh_hf.hf_model)
    stream = fresh_hf.stream("Once upon a time", max_new_tokens=60)
    chunks = iter(stream)
    first = next(chunks)  # read one chunk, then leave the stream referenced but unread
    settled = _wait_until_still(lambda: counter.count)
    # one forward per token generated: the reader's token, the lookahead, and one step to see it
    assert settled <= STREAM_LOOKAHEAD + 3, f"the abandoned stream ran {settled} steps"
    other = fresh_hf.generate("A different prompt", max_new_tokens=5)  # the model is free
    assert other.completion_tokens == 5
    # reading on resumes where it stopped and gives what an uninterrupted run gives
    rest = "".join(chunks)
    assert first + rest == fresh_hf.generate("Once upon a time", max_new_tokens=60).text
    counter.remove()


def test_closing_an_hf_generator_stops_its_running_stream(fresh_hf: Any) -> None:
    from nextword_hf.streaming import STREAM_LOOKAHEAD

    counter = _ForwardCounter(fresh_hf.hf_model)
    chunks = iter(fresh_hf.stream("Once upon a time", max_new_tokens=60))
    next(chunks)
    fresh_hf.close()
    received = 0
    with pytest.raises(nextword.InvalidState, match="was closed; load the model again"):
        for _ in chunks:
            received += 1
    assert received <= STREAM_LOOKAHEAD + 1
    assert _wait_until_still(lambda: counter.count) <= STREAM_LOOKAHEAD + 3
    counter.remove()


def test_a_stream_left_early_has_no_result_and_says_why(byte_gen: nextword.Generator) -> None:
    stream = byte_gen.stream("abc", max_new_tokens=30)
    for _ in stream:
        break
    with pytest.raises(nextword.InvalidState, match="has not been read to its end"):
        _ = stream.result
    stream.close()
    with pytest.raises(nextword.InvalidState, match="closed before it finished"):
        _ = stream.result


# ---- defect 6: the model cache ---------------------------------------------------------------


def test_load_after_close_loads_the_model_again(tiny_gguf: Callable[[str], Path]) -> None:
    path = str(tiny_gguf("f32"))
    first = nextword.load("llamacpp", path)
    first.close()
    with pytest.raises(nextword.InvalidState, match="closed; load the model again"):
        first.generate("abc", max_new_tokens=2)
    second = nextword.load("llamacpp", path)
    assert second is not first and not getattr(second, "closed", True)
    assert second.generate("abc", max_new_tokens=2).completion_tokens == 2
    assert first not in nextword._api.calls.loaded()


def test_equivalent_paths_share_one_loaded_model(
    tiny_gguf: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gguf = tiny_gguf("f32")
    link = tmp_path / "link.gguf"
    link.symlink_to(gguf)
    monkeypatch.chdir(gguf.parent)
    spellings = [
        str(gguf),
        gguf.name,
        f"./{gguf.name}",
        str(link),
        str(gguf.parent / ".." / gguf.parent.name / gguf.name),
    ]
    assert len({_canonical(s) for s in spellings}) == 1
    gens = [nextword.load("llamacpp", s) for s in spellings]
    assert all(g is gens[0] for g in gens)
    assert _canonical("gpt2") == "gpt2"  # a hub id stays as given


class _SlowPlugin:
    """A backend whose load blocks until the test lets it go."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.spec = BackendSpec(
            name="slowload", load=self._load, default_model="1", capabilities=Capabilities.all(Support.EMULATED)
        )

    @hookimpl
    def register_backends(self, register: Callable[[BackendSpec], None]) -> None:
        register(self.spec)

    def _load(self, model: str, **options: Any) -> ByteBigramGenerator:
        self.entered.set()
        self.release.wait(timeout=60)
        return ByteBigramGenerator(model, spec=self.spec)


def test_a_loading_model_does_not_block_calls_on_loaded_models(bytelm_plugin: str) -> None:
    ready = nextword.load("bytelm", "7")
    plugin = _SlowPlugin()
    name = nextword.register_plugin(plugin, name="slowload-plugin")
    try:
        loader = threading.Thread(target=nextword.load, args=("slowload", "11"))
        loader.start()
        assert plugin.entered.wait(timeout=30)
        # the slow load is in progress (it waits for `release`): other models still answer
        result = nextword.generate("abc", backend="bytelm", model="7", max_new_tokens=3)
        assert result.completion_tokens == 3 and nextword.load("bytelm", "7") is ready
        assert loader.is_alive()
        plugin.release.set()
        loader.join(timeout=30)
        assert nextword.load("slowload", "11").generate("ab", max_new_tokens=1).completion_tokens == 1
    finally:
        plugin.release.set()
        nextword.unregister_plugin(name)


def test_repeated_load_and_close_keeps_working(tiny_gguf: Callable[[str], Path]) -> None:
    path = str(tiny_gguf("f32"))
    expected = nextword.generate("Hello", backend="llamacpp", model=path, max_new_tokens=4).text
    for _ in range(8):
        gen = nextword.load("llamacpp", path)
        assert gen.generate("Hello", max_new_tokens=4).text == expected
        gen.close()
        assert gen not in nextword._api.calls.loaded()
    assert nextword.generate("Hello", backend="llamacpp", model=path, max_new_tokens=4).text == expected
