"""Registry fixtures: a real SQLite database file in tmp_path, migrated with Alembic."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from registry import Registry, open_registry, upgrade


class FakeClock:
    """Wall clock for tests: starts at 1_000_000 ms and advances 1 ms per reading."""

    def __init__(self) -> None:
        self._ticks = itertools.count(1_000_000)

    def __call__(self) -> int:
        return next(self._ticks)


@pytest.fixture
def registry_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'registry.sqlite3'}"


@pytest.fixture
def migrated_url(registry_url: str) -> str:
    upgrade(registry_url)
    return registry_url


@pytest.fixture
def reg(migrated_url: str) -> Iterator[Registry]:
    with open_registry(migrated_url, clock=FakeClock()) as registry:
        yield registry


@pytest.fixture
def clock() -> Callable[[], int]:
    return FakeClock()
