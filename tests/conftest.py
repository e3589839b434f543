"""Project-wide test setup: each test runs with no user config and no NEXTWORD_* variables leaking in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import nextword


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    for name in ("NEXTWORD_BACKEND", "NEXTWORD_MODEL", "NEXTWORD_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path_factory.mktemp("user-config")
    monkeypatch.setattr("nextword.settings.user_config_path", lambda: Path(home) / "nextword.toml")
    yield


@pytest.fixture(scope="session")
def bytelm_plugin() -> Iterator[str]:
    """The third-party-style byte bigram backend, registered through the public hook."""
    from tests.thirdparty.bytelm import BytelmPlugin

    name = nextword.register_plugin(BytelmPlugin(), name="bytelm-plugin")
    yield name
    nextword.unregister_plugin(name)
