"""Service-layer fixtures: a migrated SQLite registry file, the presets, the unit fleet."""

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


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    upgrade(url)
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
