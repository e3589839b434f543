"""Project-wide test setup: each test runs with no user config and no NEXTWORD_* variables leaking in."""

from __future__ import annotations

import signal
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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Fast tests first: tests marked ``slow`` run after all the others (they still run)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is not None)


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
