"""Service-layer fixtures: a migrated registry (SQLite and PostgreSQL), the presets, the unit
fleet."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from coldchain.rules import load_presets
from coldchain.settings import ValidationSettings
from registry import Registry, open_registry, upgrade
from services import Services, build_services
from tests.unit.support import fleet

NOW_MS = 1_790_000_000_000


@pytest.fixture(params=["sqlite", "postgresql"])
def registry(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Registry]:
    """A migrated registry on SQLite, then on PostgreSQL (tests/conftest.py)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
        upgrade(url)
    else:
        url = request.getfixturevalue("pg_registry_url")
    with open_registry(url) as reg:
        yield reg


@pytest.fixture
def services(registry: Registry) -> Services:
    return build_services(
        registry,
        fleet=fleet(),
        profiles=load_presets(),
        validation=ValidationSettings(),
        clock_ms=lambda: NOW_MS,
    )
