"""API fixtures: a migrated SQLite registry file (or PostgreSQL database) and an app on it. No
InfluxDB: the app's client points at a closed port, so only a trace reaches it (and gets the
503)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api import create_app
from coldchain.fleet import Fleet
from coldchain.rules import ProfileSet, load_presets
from coldchain.settings import ApiSettings, InfluxSettings, Settings
from deploy.launcher import free_port
from registry import Registry, open_registry, upgrade
from timeseries.client import InfluxClient

# Each role's key, as configured in COLDCHAIN_API__KEYS.
KEYS = {"key-admin": "admin", "key-operator": "operator", "key-reg": "regulator"}
NOW_MS = 1_790_000_000_000


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry file migrated once: migrating costs a quarter of a second, a copy nothing."""
    path = tmp_path_factory.mktemp("registry") / "template.sqlite3"
    upgrade(f"sqlite:///{path}")  # disposes its engine: the WAL is checkpointed into the file
    return path


@pytest.fixture
def registry_backend(request: pytest.FixtureRequest) -> str:
    """The registry backend: sqlite, unless a module parametrizes it (test_write_api.py)."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def registry(
    migrated_db: Path, tmp_path: Path, registry_backend: str, request: pytest.FixtureRequest
) -> Iterator[Registry]:
    if registry_backend == "postgresql":
        url = request.getfixturevalue("pg_registry_url")
    else:
        path = tmp_path / "registry.sqlite3"
        shutil.copyfile(migrated_db, path)
        url = f"sqlite:///{path}"
    with open_registry(url) as reg:
        yield reg


@pytest.fixture
def influx() -> Iterator[InfluxClient]:
    client = InfluxClient(InfluxSettings(url=f"http://127.0.0.1:{free_port()}", timeout_s=2))
    yield client
    client.close()


MakeApp = Callable[..., FastAPI]


@pytest.fixture(scope="session")
def profiles() -> ProfileSet:
    return load_presets()


@pytest.fixture
def make_app(
    registry: Registry, influx: InfluxClient, profiles: ProfileSet, tmp_path: Path
) -> MakeApp:
    def make(keys: dict[str, str] | None = None) -> FastAPI:
        settings = Settings(
            fleet_path=tmp_path / "no-fleet.yaml",
            api=ApiSettings(keys=KEYS if keys is None else keys),
        )
        return create_app(
            settings,
            registry=registry,
            influx=influx,
            fleet=Fleet([]),
            profiles=profiles,
            clock_ms=lambda: NOW_MS,
        )

    return make


@pytest.fixture
def client(make_app: MakeApp) -> Iterator[TestClient]:
    with TestClient(make_app()) as c:
        yield c
