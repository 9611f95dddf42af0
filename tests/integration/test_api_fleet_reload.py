"""``coldchain api`` follows the fleet file (``COLDCHAIN_FLEET_RELOAD_S``), as ingest does: an
asset added to the file takes custody events without a restart, and a file that does not check
leaves the fleet in force. Real uvicorn on loopback, a real migrated registry and influxd."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from api import create_app
from coldchain.fleet import Asset, Compartment, Fleet, SensorSpec
from coldchain.settings import ApiSettings, InfluxSettings, Settings
from deploy.launcher import Services
from registry import open_registry, upgrade, wall_clock_ms
from tests.api_server import serving
from tests.harness import wait_for

pytestmark = pytest.mark.integration

KEY = {"X-API-Key": "int-key"}


def _truck(asset_id: str, profile: str = "chilled") -> Asset:
    return Asset(
        id=asset_id,
        kind="vehicle",
        devices=(f"tcu-{asset_id}",),
        compartments=(
            Compartment(
                id="c1", profile=profile, sensors=(SensorSpec(id="c1-prod", probe="product"),)
            ),
        ),
    )


@pytest.fixture
def api(
    services: Services, unique_name: str, tmp_path: Path
) -> Iterator[tuple[str, Path, FastAPI]]:
    fleet_path = tmp_path / "fleet.yaml"
    fleet_path.write_text(Fleet([_truck("truck-1")]).to_yaml())
    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    upgrade(url)
    settings = Settings(
        fleet_path=fleet_path,
        fleet_reload_s=0.2,
        registry_url=url,
        influx=InfluxSettings(url=services.influxd.url, database=unique_name),
        api=ApiSettings(keys={"int-key": "integrator"}),
    )
    with open_registry(url) as registry:
        app = create_app(settings, registry=registry)
        with serving(app) as base:
            yield base, fleet_path, app


def _load(http: httpx.Client, event_id: str, asset_id: str) -> httpx.Response:
    ts = datetime.fromtimestamp(wall_clock_ms() / 1000 - 600, UTC).isoformat()
    body = {
        "event_id": event_id,
        "shipment_id": "PO-1",
        "action": "load",
        "asset_id": asset_id,
        "compartment_id": "c1",
        "ts": ts,
        "actor": "dock 3",
    }
    return http.post("/v1/custody-events", json=body, headers=KEY)


def test_an_asset_added_to_the_file_takes_custody_events_without_a_restart(
    api: tuple[str, Path, FastAPI],
) -> None:
    base, fleet_path, app = api
    shipment = {
        "id": "PO-1",
        "profile": "chilled",
        "shipper": "ACME",
        "quantity": 1,
        "unit": "pallets",
    }
    with httpx.Client(base_url=base, timeout=30) as http:
        r = http.post("/v1/shipments", json=shipment, headers=KEY)
        assert r.status_code == 201, r.text
        assert _load(http, "e1", "truck-1").status_code == 201
        refused = _load(http, "e2", "truck-2")
        assert refused.status_code == 422 and "truck-2" in refused.text, refused.text

        fleet_path.write_text(Fleet([_truck("truck-1"), _truck("truck-2")]).to_yaml())
        assert wait_for(lambda: _load(http, "e2", "truck-2").status_code == 201, 60)

        # A file that does not check (an unknown profile) is refused: the fleet stays.
        reload = app.state.fleet_reload
        assert reload.problems() == {}
        fleet_path.write_text(Fleet([_truck("truck-1"), _truck("truck-3", "no-such")]).to_yaml())
        assert wait_for(lambda: "fleet_rejected" in reload.problems(), 60)
        assert "unknown profile 'no-such'" in reload.problems()["fleet_rejected"]
        assert _load(http, "e3", "truck-2").status_code == 201
        refused = _load(http, "e4", "truck-3")
        assert refused.status_code == 422 and "truck-3" in refused.text
