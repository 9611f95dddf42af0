"""``ingest.events.process_event``: an event may name only its device's own asset, or an asset
that registers the device as a scanner (issue 8, failure 7)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from coldchain.exceptions import TelemetryRejected
from coldchain.fleet import Asset, Fleet
from ingest.events import process_event
from tests.unit.support import NOW_MS, STORE, TRUCK, iso

# The store's dock reader may scan for the store (and only for it).
DOCK = STORE.model_copy(update={"scanners": ("dock-1",)})


def _event(device: str, asset: str, **kw: Any) -> tuple[str, bytes]:
    body = {"v": 1, "device_id": device, "ts": iso(), "seq": 1, "type": "door"}
    body |= {"asset_id": asset, "compartment_id": "zone-a" if asset == "store-1" else "front"}
    body |= {"open": True} | kw
    return f"coldchain/v1/devices/{device}/events", json.dumps(body).encode()


def _run(fleet: Fleet, device: str, asset: str) -> list[str]:
    topic, payload = _event(device, asset)
    return process_event(topic, payload, fleet, None, 1 << 20, NOW_MS).lines


def _reason(fleet: Fleet, device: str, asset: str) -> TelemetryRejected:
    with pytest.raises(TelemetryRejected) as info:
        _run(fleet, device, asset)
    return info.value


def test_a_device_names_its_own_asset() -> None:
    fleet = Fleet([TRUCK, DOCK])
    assert _run(fleet, "dev-1", "truck-1")[0].startswith("door,asset=truck-1,compartment=front ")


def test_another_devices_asset_is_a_foreign_asset() -> None:
    exc = _reason(Fleet([TRUCK, DOCK]), "dev-1", "store-1")
    assert (exc.reason, exc.field, exc.device_id) == ("foreign_asset", "asset_id", "dev-1")
    assert "own asset (truck-1)" in exc.detail and "scanners of store-1" in exc.detail


def test_a_registered_scanner_names_its_site_and_nothing_else() -> None:
    fleet = Fleet([TRUCK, DOCK])
    assert _run(fleet, "dock-1", "store-1")[0].startswith("door,asset=store-1,")
    exc = _reason(fleet, "dock-1", "truck-1")
    assert exc.reason == "foreign_asset" and "own asset (none)" in exc.detail


def test_a_scanner_not_registered_is_an_unknown_device() -> None:
    assert _reason(Fleet([TRUCK, STORE]), "dock-1", "store-1").reason == "unknown_device"


def test_fleet_file_scanners_are_checked_and_written_only_when_present() -> None:
    with pytest.raises(ValueError, match="also as devices"):
        Asset.model_validate(STORE.model_dump() | {"scanners": ["gw-1"]})
    text = Fleet([TRUCK, DOCK]).to_yaml()
    assert text.count("scanners:") == 1 and "- dock-1" in text
