"""MQTT custody scans that cannot have happened: stored when they arrive (late and out of order
is normal for handhelds), flagged in the trace as a custody-integrity reason once the grace
period has passed with nothing arriving to explain them. The shipments here stay on docks, so
the trace reads no temperatures (no InfluxDB needed)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api import create_app
from coldchain.exceptions import TelemetryRejected
from coldchain.rules import ProfileSet
from coldchain.settings import ApiSettings, Settings, ValidationSettings
from ingest.events import process_event
from registry import Registry
from tests.unit.support import fleet
from timeseries.client import InfluxClient

NOW_MS = 1_790_000_000_000
MIN = 60_000
HOUR = 60 * MIN
KEY = {"X-API-Key": "k"}


@pytest.fixture
def make_client(
    registry: Registry, influx: InfluxClient, profiles: ProfileSet, tmp_path: Path
) -> Iterator[Callable[[int], TestClient]]:
    clients: list[TestClient] = []

    def make(now_ms: int) -> TestClient:
        settings = Settings(
            fleet_path=tmp_path / "unused.yaml",
            api=ApiSettings(keys={"k": "regulator"}),
            validation=ValidationSettings(custody_grace_s=3600),
        )
        app = create_app(
            settings,
            registry=registry,
            influx=influx,
            fleet=fleet(),
            profiles=profiles,
            clock_ms=lambda: now_ms,
        )
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def _scan(action: str, asset: str, minute: int, seq: int, comp: str | None = None) -> bytes:
    ts = NOW_MS - 3 * HOUR + minute * MIN
    return json.dumps(
        {
            "v": 1,
            # A device may name only its own asset (ingest/events.py): store-1's gateway scans
            # there.
            "device_id": "dev-1" if asset == "truck-1" else "gw-1",
            "ts": f"{_iso(ts)}",
            "seq": seq,
            "type": "custody",
            "action": action,
            "shipment_id": "SHP-9",
            "asset_id": asset,
            "compartment_id": comp,
            "actor": "scanner",
        }
    ).encode()


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def _ingest(registry: Registry, payload: bytes, received_ms: int) -> None:
    device = json.loads(payload)["device_id"]
    topic = f"coldchain/v1/devices/{device}/events"
    process_event(topic, payload, fleet(), registry, 65536, received_ms)


def test_an_impossible_mqtt_sequence_is_stored_then_flagged_after_the_grace_period(
    registry: Registry, make_client: Callable[[int], TestClient]
) -> None:
    registry.create_shipment("SHP-9", profile="chilled", actor="erp")
    # Handed over on store-1's dock, then "unloaded" from store-1: never loaded there. (Both on
    # a store's dock: a vehicle's leg would read its GPS track from InfluxDB.)
    received = NOW_MS - 30 * MIN
    _ingest(registry, _scan("handover", "store-1", 0, 1), received)
    _ingest(registry, _scan("unload", "store-1", 10, 2), received)
    assert [e.action for e in registry.custody_events("SHP-9")] == ["handover", "unload"]

    fresh = make_client(NOW_MS).get("/v1/shipments/SHP-9/trace", headers=KEY).json()
    assert not any("custody integrity" in r for r in fresh["reasons"])  # within the grace

    later = make_client(NOW_MS + HOUR).get("/v1/shipments/SHP-9/trace", headers=KEY).json()
    assert later["verdict"] == "incomplete"
    (reason,) = [r for r in later["reasons"] if "custody integrity" in r]
    assert reason.startswith("custody integrity (unload_not_loaded): unload #2 from store-1 at ")
    assert "the shipment was not loaded on store-1 (it was on its dock since" in reason
    # As of a time before the impossible scan, there is nothing to flag.
    at = _iso(NOW_MS - 3 * HOUR + 5 * MIN)
    before = make_client(NOW_MS + HOUR).get(
        "/v1/shipments/SHP-9/trace", params={"at": at}, headers=KEY
    )
    assert not any("custody integrity" in r for r in before.json()["reasons"])
    # (A late scan that explains it away: tests/unit/test_custody_sequence.py; here it would
    # open a monitored leg, whose temperatures need InfluxDB.)


def test_mqtt_scans_for_cancelled_or_unknown_shipments_are_dead_lettered(
    registry: Registry,
) -> None:
    registry.create_shipment("SHP-9", profile="chilled", actor="erp")
    registry.cancel_shipment("SHP-9", actor="erp", reason="withdrawn")
    with pytest.raises(TelemetryRejected) as info:
        _ingest(registry, _scan("load", "truck-1", 0, 1, comp="front"), NOW_MS)
    assert info.value.reason == "custody_rejected"
    assert "was cancelled" in info.value.detail and "accepts no custody events" in (
        info.value.detail
    )
    assert registry.custody_events("SHP-9") == []
