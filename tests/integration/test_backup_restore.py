"""Backup and restore (deploy/backup.py, ``coldchain backup|restore``) against a real influxd and
a real migrated SQLite registry: back up, wipe both, restore, and the shipment's trace (custody
legs, statistics from InfluxDB, excursions and acknowledgements from the registry, verdict) is
identical, and the audit chains still verify."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from api import TraceService, trace_to_dict
from cli.main import main as coldchain
from coldchain.rules import load_presets
from coldchain.settings import InfluxSettings, Settings
from deploy.backup import BackupError, backup, restore
from deploy.launcher import Services
from registry import CustodyAction, open_registry, upgrade
from tests.integration.test_trace_service import (
    FLEET,
    STORE_PRODUCT,
    TRUCK_PRODUCT,
    m,
    point,
    range_excursion,
)
from timeseries.client import InfluxClient

pytestmark = pytest.mark.integration


def _load(settings: Settings) -> None:
    client = InfluxClient(settings.influx)
    client.create_database()
    lines = [point("truck-1", "c1", "product", t, v) for t, v in TRUCK_PRODUCT]
    lines += [point("store-1", "z1", "product", t, v) for t, v in STORE_PRODUCT]
    lines += [point("truck-1", "c1", "air", t, 10.0) for t, _ in TRUCK_PRODUCT]
    client.write("\n".join(lines).encode())
    client.close()
    upgrade(settings.registry_url)
    with open_registry(settings.registry_url) as reg:
        reg.create_shipment("SHP-1", profile="chilled", actor="planner", created_ms=m(-60))
        scans: list[tuple[CustodyAction, str, str | None, int, str]] = [
            ("load", "truck-1", "c1", 0, "driver"),
            ("unload", "truck-1", "c1", 60, "driver"),
            ("handover", "store-1", None, 61, "dock-staff"),
            ("load", "store-1", "z1", 111, "dock-staff"),
            ("deliver", "store-1", None, 171, "consignee"),
        ]
        for action, asset, comp, minute, actor in scans:
            reg.record_custody_event("SHP-1", action, asset, comp, ts_ms=m(minute), actor=actor)
        reg.upsert_excursions([range_excursion(20, 30)])


def _trace(settings: Settings) -> dict[str, object]:
    client = InfluxClient(settings.influx)
    try:
        with open_registry(settings.registry_url) as reg:
            trace = TraceService(reg, client, FLEET, load_presets()).trace("SHP-1", m(200))
            return trace_to_dict(trace)
    finally:
        client.close()


@pytest.fixture
def settings(services: Services, unique_name: str, tmp_path: Path) -> Iterator[Settings]:
    s = Settings(
        registry_url=f"sqlite:///{tmp_path / 'var' / 'registry.sqlite3'}",
        influx=InfluxSettings(url=services.influxd.url, database=unique_name),
    )
    (tmp_path / "var").mkdir()
    yield s
    services.influxd.query(f'DROP DATABASE "{unique_name}"')


def _rpc(services: Services) -> str:
    return f"127.0.0.1:{services.influxd.rpc_port}"


def _wipe(services: Services, settings: Settings) -> None:
    services.influxd.query(f'DROP DATABASE "{settings.influx.database}"')
    db = Path(settings.registry_url.removeprefix("sqlite:///"))
    for path in db.parent.glob(db.name + "*"):
        path.unlink()


def test_back_up_wipe_restore_and_the_trace_is_identical(
    services: Services, settings: Settings, tmp_path: Path
) -> None:
    _load(settings)
    before = _trace(settings)
    assert before["legs"] and before["excursions"]  # a trace worth comparing

    manifest = backup(settings, tmp_path / "bk", influx_rpc=_rpc(services))
    assert manifest.influx_database == settings.influx.database
    _wipe(services, settings)
    names = json.dumps(services.influxd.query("SHOW DATABASES"))
    assert settings.influx.database not in names

    restore(settings, tmp_path / "bk", influx_rpc=_rpc(services))
    assert _trace(settings) == before
    env = {"COLDCHAIN_REGISTRY_URL": settings.registry_url}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        assert coldchain(["audit", "verify"]) == 0
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def test_restore_never_overwrites_and_names_what_is_in_the_way(
    services: Services, settings: Settings, tmp_path: Path
) -> None:
    _load(settings)
    backup(settings, tmp_path / "bk", influx_rpc=_rpc(services))
    with pytest.raises(BackupError, match="a registry exists at"):
        restore(settings, tmp_path / "bk", influx_rpc=_rpc(services))
    with pytest.raises(BackupError, match="is not empty"):
        backup(settings, tmp_path / "bk", influx_rpc=_rpc(services))
    # The database still exists: influxd refuses, and says why.
    db = Path(settings.registry_url.removeprefix("sqlite:///"))
    (tmp_path / "aside").mkdir()
    for path in db.parent.glob(db.name + "*"):
        path.rename(tmp_path / "aside" / path.name)
    with pytest.raises(BackupError, match="influxd restore failed"):
        restore(settings, tmp_path / "bk", influx_rpc=_rpc(services))
    assert not db.exists()
    # A damaged copy is refused before anything is touched.
    with open(tmp_path / "bk" / "registry.sqlite3", "r+b") as f:
        f.seek(200)
        f.write(b"\x00\xff")
    _wipe(services, settings)
    with pytest.raises(BackupError, match="does not match its manifest"):
        restore(settings, tmp_path / "bk", influx_rpc=_rpc(services))


def test_a_postgresql_registry_is_named_not_copied(tmp_path: Path) -> None:
    s = Settings(registry_url="postgresql://u:secret@db/coldchain")
    with pytest.raises(BackupError, match="pg_dump") as info:
        backup(s, tmp_path / "bk", influx_rpc="127.0.0.1:1")
    assert "secret" not in str(info.value)
