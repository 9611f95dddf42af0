"""Registry fixtures: a real database migrated with Alembic, on each backend the registry
supports. Every test that takes ``registry_url``, ``migrated_url`` or ``reg`` runs twice: on a
SQLite file in tmp_path and on a database of its own in the session's PostgreSQL server
(tests/conftest.py): a copy of a template migrated once, emptied and reused between tests
while its schema is untouched (tests/pg_databases.py)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deploy.postgres import Postgres
from registry import Registry, open_registry, upgrade

BACKENDS = ("sqlite", "postgresql")
_databases = itertools.count(1)


class FakeClock:
    """Wall clock for tests: starts at 1_000_000 ms and advances 1 ms per reading."""

    def __init__(self) -> None:
        self._ticks = itertools.count(1_000_000)

    def __call__(self) -> int:
        return next(self._ticks)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The registry's database backend for this test: "sqlite" or "postgresql"."""
    return str(request.param)


def _pg_empty_database(request: pytest.FixtureRequest) -> Iterator[str]:
    server: Postgres = request.getfixturevalue("postgres")
    name = f"empty{os.getpid()}_{next(_databases)}"
    url = server.create_database(name)
    try:
        yield url
    finally:
        server.drop_database(name)


@pytest.fixture
def registry_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """An empty database (no tables)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    else:
        yield from _pg_empty_database(request)


@pytest.fixture
def migrated_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A database migrated to head, with nothing in it but the audit heads."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
        upgrade(url)
        yield url
    else:
        yield request.getfixturevalue("pg_registry_url")


@pytest.fixture
def reg(migrated_url: str) -> Iterator[Registry]:
    with open_registry(migrated_url, clock=FakeClock()) as registry:
        yield registry


@pytest.fixture
def clock() -> Callable[[], int]:
    return FakeClock()
