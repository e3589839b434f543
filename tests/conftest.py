"""Project-wide test setup: each test runs with no user config and no NEXTWORD_* variables leaking in."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import nextword
from tests.assets import LlamaVocabFiles, llama_vocab_files


def pytest_configure(config: pytest.Config) -> None:
    """The interrupt tests send SIGINT and SIGHUP, in this process and to the Python processes
    they start, and expect Python's usual reactions. A shell that starts the suite in the
    background (``cmd &``) or under ``nohup`` hands it those signals ignored, and an ignored
    signal stays ignored in every child: give them their default reactions back."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
    _pin_xdist_worker()
    _run_cache_dir()


def _run_cache_dir() -> None:
    """Unless NEXTWORD_CACHE_DIR is set, the run keeps what backends cache (converted models) in a
    folder of its own, shared by the xdist workers (they inherit it from the controller) and
    removed at the end: every run converts what it needs once, as on a clean CI machine, and the
    user's cache is left alone."""
    if os.environ.get("PYTEST_XDIST_WORKER") or os.environ.get("NEXTWORD_CACHE_DIR"):
        return
    folder = tempfile.mkdtemp(prefix="nextword-test-cache-")
    os.environ["NEXTWORD_CACHE_DIR"] = folder
    atexit.register(shutil.rmtree, folder, ignore_errors=True)


def _pin_xdist_worker() -> None:
    """Under pytest-xdist, each worker process keeps to one CPU of its own. Every engine sizes its
    thread pool from the CPUs it may use (``nextword._runtime.cpu.default_threads``), so two
    workers on two cores run one engine thread each instead of two each, whose spinning barriers
    (ggml's, OpenMP's) would wait for threads the other worker descheduled. The processes a test
    starts inherit the same CPU."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if os.environ.get("NEXTWORD_TEST_PIN", "1") == "0":
        return
    if not worker.startswith("gw") or not hasattr(os, "sched_setaffinity"):
        return
    cpus = sorted(os.sched_getaffinity(0))
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers < 2 or workers > len(cpus):
        return
    os.sched_setaffinity(0, {cpus[int(worker[2:]) % len(cpus)]})


#: The test files that take longest (``--durations``, quiet 2-core machine), longest first.
HEAVIEST_FILES = (
    "test_finetune_gemma.py",
    "test_docs.py",
    "test_typing_session.py",
    "test_equivalence.py",
    "test_concurrency.py",
    "test_complete.py",
    "test_korean.py",
    "test_hf_backend.py",
    "test_convert_gemma.py",
    "test_hf_gguf_cache.py",
    "test_evaluation.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Fast tests first: within a file, tests marked ``slow`` run after the others (they still
    run), and in a single process every slow test runs after every fast one. Under pytest-xdist
    (``--dist loadfile`` hands out whole files in this order) the heaviest files go first, so
    that the longest one does not start when the other worker has nothing left to do."""

    def slow(item: pytest.Item) -> bool:
        return item.get_closest_marker("slow") is not None

    if os.environ.get("PYTEST_XDIST_WORKER"):
        rank = {name: i for i, name in enumerate(HEAVIEST_FILES)}
        items.sort(key=lambda item: (rank.get(item.path.name, len(rank)), slow(item)))
    else:
        items.sort(key=slow)


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    for name in ("NEXTWORD_BACKEND", "NEXTWORD_MODEL", "NEXTWORD_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path_factory.mktemp("user-config")
    monkeypatch.setattr("nextword._api.settings.user_config_path", lambda: Path(home) / "nextword.toml")
    yield


@pytest.fixture(scope="session")
def bytelm_plugin() -> Iterator[str]:
    """The third-party-style byte bigram backend, registered through the public hook."""
    from tests.thirdparty.bytelm import BytelmPlugin

    name = nextword.register_plugin(BytelmPlugin(), name="bytelm-plugin")
    yield name
    nextword.unregister_plugin(name)


@pytest.fixture(scope="session")
def llama_vocab() -> LlamaVocabFiles:
    """llama.cpp's GPT-2 vocabulary GGUF and its tokenizer test vectors, from the asset folder
    (``python -m tests.assets`` puts them there; tests never download)."""
    from nextword.testing.assets import AssetUnavailable
    from nextword.testing.pytest_fixtures import unavailable

    try:
        return llama_vocab_files()
    except AssetUnavailable as exc:
        unavailable(f"llama.cpp's GPT-2 vocabulary is unavailable: {exc}")


@pytest.fixture(scope="module")
def hf_gen(tiny_gpt2_dir: Path) -> nextword.Generator:
    """The tiny GPT-2 fixture on the hf backend."""
    return nextword.load("hf", str(tiny_gpt2_dir), device="cpu")


@pytest.fixture(scope="module")
def byte_gen(bytelm_plugin: str) -> nextword.Generator:
    """The third-party-style byte bigram backend."""
    return nextword.load("bytelm", "3")


@pytest.fixture(scope="session")
def tiny_gguf(tiny_gpt2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``tiny_gguf(type)``: the tiny GPT-2 converted by nextword's converter (each type once)."""
    from nextword.testing.pytest_fixtures import require_module

    convert = require_module("nextword_llamacpp.convert", "install nextword[llamacpp]").convert
    out_dir = tmp_path_factory.mktemp("tiny-gguf")
    made: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in made:
            made[kind] = convert(tiny_gpt2_dir, out_dir / f"tiny.{kind.upper()}.gguf", type=kind)
        return made[kind]

    return get
