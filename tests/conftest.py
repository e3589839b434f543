"""Project-wide test setup: each test runs with no user config and no NEXTWORD_* variables leaking in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import nextword


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Fast tests first: tests marked ``slow`` run after all the others (they still run)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is not None)


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
