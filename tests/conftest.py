"""Shared fixtures: real mosquitto, influxd and PostgreSQL from deploy/, on free loopback ports.

``services`` is started once per test session (tests isolate themselves with their own InfluxDB
database, MQTT client ids and share groups); ``fresh_services`` gives a test its own pair, for
tests that stop, kill or restart a service.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.launcher import Services
from deploy.postgres import Postgres
from tests.pg_databases import PgDatabases

_ids = itertools.count(1)


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    with Services(tmp_path_factory.mktemp("services")) as s:
        yield s


@pytest.fixture
def fresh_services(tmp_path: Path) -> Iterator[Services]:
    with Services(tmp_path / "services") as s:
        yield s


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    """One PostgreSQL server for the session; tests take their own database in it."""
    server = Postgres(tmp_path_factory.mktemp("postgres"))
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def pg_databases(postgres: Postgres) -> PgDatabases:
    """Migrated registry databases in the session's server, one per test (tests/pg_databases)."""
    return PgDatabases(postgres)


@pytest.fixture
def pg_registry_url(pg_databases: PgDatabases) -> Iterator[str]:
    """URL of a PostgreSQL registry database migrated to head, empty, this test's own."""
    name, url = pg_databases.take()
    try:
        yield url
    finally:
        pg_databases.give_back(name)


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A name unique in this test session: InfluxDB database, client id, share group."""
    base = "".join(c if c.isalnum() else "_" for c in request.node.name)[:40]
    return f"t{next(_ids)}_{base}"
