"""Shared fixtures: real mosquitto and influxd from deploy/launcher, on free loopback ports.

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

_ids = itertools.count(1)


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    with Services(tmp_path_factory.mktemp("services")) as s:
        yield s


@pytest.fixture
def fresh_services(tmp_path: Path) -> Iterator[Services]:
    with Services(tmp_path / "services") as s:
        yield s


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A name unique in this test session: InfluxDB database, client id, share group."""
    base = "".join(c if c.isalnum() else "_" for c in request.node.name)[:40]
    return f"t{next(_ids)}_{base}"
