"""The write API end to end through uvicorn on loopback, with a real influxd and a real
(SQLite, migrated) registry: an integrator registers a shipment and posts its custody events
with curl-like requests, an operator acknowledges an excursion, a regulator reads the trace.

Times are the wall clock's (the API refuses custody events from the future or older than 30
days): the journey happened in the last two hours.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api import create_app
from coldchain.fleet import Asset, Compartment, Fleet, SensorSpec
from coldchain.rules import load_presets
from coldchain.rules.excursion import Excursion
from coldchain.settings import ApiSettings, InfluxSettings, Settings
from deploy.launcher import Services
from registry import Registry, open_registry, upgrade, wall_clock_ms
from tests.api_server import serving
from timeseries.client import InfluxClient

pytestmark = pytest.mark.integration

KEYS = {"int-key": "integrator", "op-key": "operator", "reg-key": "regulator"}
MIN = 60_000
FLEET = Fleet(
    [
        Asset(
            id="truck-1",
            kind="vehicle",
            devices=("tcu-1",),
            compartments=(
                Compartment(
                    id="c1", profile="chilled", sensors=(SensorSpec(id="c1-prod", probe="product"),)
                ),
            ),
        )
    ]
)


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return (
        datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


@pytest.fixture
def base_url(
    services: Services, unique_name: str, tmp_path: Path
) -> Iterator[tuple[str, Registry, int]]:
    now = wall_clock_ms() // MIN * MIN
    t0 = now - 100 * MIN  # loaded 100 min ago, a reading every 10 min, 6 degC from 60 to 80
    influx = InfluxClient(InfluxSettings(url=services.influxd.url, database=unique_name))
    influx.create_database()
    lines = [
        f"temperature,asset=truck-1,compartment=c1,probe=product,sensor=c1-prod "
        f"temp_c={6.0 if 60 <= m < 80 else 4.0} {t0 + m * MIN}"
        for m in range(0, 100, 10)
    ]
    influx.write("\n".join(lines).encode())
    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    upgrade(url)
    registry = open_registry(url)
    app = create_app(
        Settings(api=ApiSettings(keys=KEYS)),
        registry=registry,
        influx=influx,
        fleet=FLEET,
        profiles=load_presets(),
    )
    try:
        with serving(app) as url:
            yield url, registry, t0
    finally:
        registry.close()
        influx.close()


def _key(name: str) -> dict[str, str]:
    return {"X-API-Key": name}


def test_register_post_custody_acknowledge_and_trace(base_url: tuple[str, Registry, int]) -> None:
    url, registry, t0 = base_url
    shipment: dict[str, Any] = {
        "id": "PO-2026/0042",
        "profile": "chilled",
        "shipper": "ACME Foods",
        "quantity": 12,
        "unit": "pallets",
        "destination": "上海",
    }
    with httpx.Client(base_url=url, timeout=30) as http:
        r = http.post("/v1/shipments", json=shipment, headers=_key("int-key"))
        assert r.status_code == 201, r.text
        assert r.headers["location"] == "/v1/shipments/PO-2026/0042"
        assert http.post("/v1/shipments", json=shipment, headers=_key("int-key")).status_code == (
            200
        )
        events = [
            ("evt-1", "load", "c1", t0),
            ("evt-2", "unload", "c1", t0 + 90 * MIN),
        ]
        for event_id, action, comp, ts in events:
            body = {
                "event_id": event_id,
                "shipment_id": shipment["id"],
                "action": action,
                "asset_id": "truck-1",
                "compartment_id": comp,
                "ts": _iso(ts),
                "actor": "driver 7",
            }
            r = http.post("/v1/custody-events", json=body, headers=_key("int-key"))
            assert r.status_code == 201, r.text
            # A retry of the same event (a lost answer) is recognised.
            again = http.post("/v1/custody-events", json=body, headers=_key("int-key"))
            assert again.status_code == 200 and again.json() == r.json()
        r = http.patch(
            "/v1/shipments/PO-2026/0042", json={"consignee": "x"}, headers=_key("reg-key")
        )
        assert r.status_code == 403

        exc = Excursion(
            asset_id="truck-1",
            compartment_id="c1",
            rule="range",
            kind="range",
            severity="warning",
            status="closed",
            start_ms=t0 + 60 * MIN,
            end_ms=t0 + 80 * MIN,
            detected_ms=t0 + 61 * MIN,
        )
        registry.upsert_excursion(exc)
        r = http.post(
            f"/v1/excursions/{exc.id}/acknowledgements",
            json={"disposition": "quarantined", "comment": "door", "root_cause": "stop"},
            headers=_key("op-key"),
        )
        assert r.status_code == 201, r.text

        trace = http.get("/v1/shipments/PO-2026/0042/trace", headers=_key("reg-key"))
        assert trace.status_code == 200, trace.text
        body = trace.json()
        truck, dock = body["legs"]
        assert truck["leg"]["from_ms"] == t0 and truck["leg"]["to_ms"] == t0 + 90 * MIN
        assert (truck["readings"], truck["max_c"]) == (9, 6.0)
        assert truck["excursion_ids"] == [exc.id]
        assert dock["leg"]["compartment_id"] is None
        assert body["verdict"] == "excursion"
        (listed,) = http.get("/v1/excursions", headers=_key("reg-key")).json()
        assert (listed["ack_count"], listed["acknowledgement"]["disposition"]) == (
            1,
            "quarantined",
        )
        shown = http.get("/v1/shipments/PO-2026/0042", headers=_key("reg-key")).json()
        assert (shown["status"], shown["custody"]["compartment_id"]) == ("in_custody", None)
    assert registry.verify_audit_chain().ok
