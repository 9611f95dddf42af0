"""``GET /v1/shipments/{id}/epcis`` against a real influxd and a real (SQLite, migrated) registry,
with the data of test_trace_series.py (SHP-S on truck-5/c1, a 5-minute spike: a hard_high
excursion; SHP-L in store-1/z1 with no data). Every document the route answers validates
against GS1's EPCIS 2.0 JSON Schema with formats checked and carries its own event hashes; a
regulator sees only its scope (404 otherwise) and its exports are in the read chain."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api import create_app
from coldchain.epcis import validate_epcis
from coldchain.rules import load_presets
from coldchain.settings import ApiSettings, EpcisSettings, Settings
from registry import Registry
from tests.integration.test_trace_series import (
    SPIKE,
    # The fixtures influx and registry, used by name (hence the F811s below).
    influx,  # noqa: F401
    m,
    registry,  # noqa: F401
)
from tests.integration.test_trace_service import FLEET
from timeseries.client import InfluxClient

pytestmark = pytest.mark.integration

ADMIN = {"X-API-Key": "adm"}
BASE = "https://traceability.acme.example/id"


@pytest.fixture
def client(registry: Registry, influx: InfluxClient) -> Iterator[TestClient]:  # noqa: F811
    registry.create_shipment(
        "PO-2026/0042", profile="chilled", actor="planner", created_ms=m(0), shipper="ACME Foods"
    )
    registry.record_custody_event("PO-2026/0042", "load", "truck-5", "c1", ts_ms=m(0), actor="d")
    app = create_app(
        Settings(api=ApiSettings(keys={"adm": "admin"}), epcis=EpcisSettings(base_uri=BASE)),
        registry=registry,
        influx=influx,
        fleet=FLEET,
        profiles=load_presets(),
        clock_ms=lambda: m(200),
    )
    with TestClient(app) as c:
        yield c


def _events(doc: dict[str, Any]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = doc["epcisBody"]["eventList"]
    return events


def test_every_document_validates_with_formats_and_event_hashes(client: TestClient) -> None:
    for sid in ("SHP-S", "SHP-L", "PO-2026/0042"):
        for tz in ("UTC", "Asia/Shanghai"):
            r = client.get(f"/v1/shipments/{sid}/epcis", params={"tz": tz}, headers=ADMIN)
            assert r.status_code == 200, (sid, r.text)
            assert r.headers["content-type"] == "application/ld+json"
            doc = r.json()
            assert doc["type"] == "EPCISDocument" and doc["schemaVersion"] == "2.0"
            assert validate_epcis(doc, check_event_ids=True) == [], (sid, tz)
            assert _events(doc), sid


def test_the_document_is_the_trace(client: TestClient) -> None:
    r = client.get("/v1/shipments/SHP-S/epcis", params={"tz": "Asia/Shanghai"}, headers=ADMIN)
    doc = r.json()
    load, sensor, deliver = _events(doc)
    assert (load["bizStep"], load["coldchain:custodyAction"]) == ("loading", "load")
    assert load["eventTime"] == "2026-09-21T22:00:00.000+08:00"  # T1 = 14:00 UTC
    assert load["readPoint"]["id"] == f"{BASE}/asset/truck-5/compartment/c1"
    assert load["epcList"] == [f"{BASE}/shipment/SHP-S"]
    # The leg's exact statistics (per-instant mean of two probes: 3.5, 9.5 in the spike).
    (element,) = sensor["sensorElementList"]
    (report,) = element["sensorReport"]
    assert (report["minValue"], report["maxValue"], report["meanValue"]) == (3.5, 9.5, 3.75)
    assert (report["uom"], report["exception"]) == ("CEL", "ALARM_CONDITION")
    assert report["coldchain:readingCount"] == 120
    assert sensor["disposition"] == "non_conformant"  # the spike began at 42
    assert deliver["bizStep"] == "receiving" and deliver["disposition"] == "non_conformant"
    # creationDate: the server's clock when the document was made.
    assert doc["creationDate"] == "2026-09-22T01:20:00.000+08:00"
    # As of 30 (before the spike): open leg, no alarm, in transit.
    r = client.get("/v1/shipments/SHP-S/epcis?at=2026-09-21T14:30:00Z", headers=ADMIN)
    load, sensor = _events(r.json())
    assert "exception" not in sensor["sensorElementList"][0]["sensorReport"][0]
    assert sensor["disposition"] == "in_transit"
    assert SPIKE.start_ms > m(30)


def test_an_id_with_a_slash_and_its_uri(client: TestClient) -> None:
    for path in ("PO-2026/0042", "PO-2026%2F0042"):
        doc = client.get(f"/v1/shipments/{path}/epcis", headers=ADMIN).json()
        (load, _sensor) = _events(doc)
        assert load["epcList"] == [f"{BASE}/shipment/PO-2026%2F0042"]
        assert load["sourceList"] == [
            {"type": "owning_party", "source": f"{BASE}/org/ACME%20Foods"}
        ]


def test_regulator_scope_audit_and_client_mistakes(
    client: TestClient,
    registry: Registry,  # noqa: F811
) -> None:
    key, token = registry.keys.create("regulator", created_by="test", shippers=["ACME Foods"])
    _, other = registry.keys.create("regulator", created_by="test", shippers=["Other Foods"])
    mine = client.get("/v1/shipments/PO-2026/0042/epcis", headers={"X-API-Key": token})
    assert mine.status_code == 200 and validate_epcis(mine.json()) == []
    for sid in ("SHP-S", "NOPE"):  # out of scope and unknown: the same 404
        r = client.get(f"/v1/shipments/{sid}/epcis", headers={"X-API-Key": token})
        assert (r.status_code, r.json()) == (404, {"detail": f"shipment {sid!r} not found"})
    r = client.get("/v1/shipments/PO-2026/0042/epcis", headers={"X-API-Key": other})
    assert r.status_code == 404
    (entry,) = [e for e in registry.trail.read_entries() if e.actor == key.key_id]
    assert (entry.action, entry.entity_id) == ("read.epcis", "PO-2026/0042")
    assert '"tz":"UTC"' in entry.payload and token not in entry.payload
    assert registry.trail.verify().ok

    assert client.get("/v1/shipments/SHP-S/epcis").status_code == 401
    r = client.get("/v1/shipments/SHP-S/epcis?tz=Mars/Olympus", headers=ADMIN)
    assert r.status_code == 422 and r.json()["detail"].startswith("query parameter 'tz'")
    r = client.get("/v1/shipments/SHP-S/epcis?at=2026-09-21T14:30:00", headers=ADMIN)
    assert r.status_code == 422 and "'at'" in r.json()["detail"]
    r = client.get("/v1/shipments/SHP-S/epcis?tz=UTC&tz=UTC", headers=ADMIN)
    assert r.status_code == 422


def test_openapi_declares_the_route(client: TestClient) -> None:
    op = client.get("/openapi.json").json()["paths"]["/v1/shipments/{shipment_id}/epcis"]["get"]
    assert set(op["responses"]["200"]["content"]) == {"application/ld+json"}
    assert {"401", "404", "422"} <= set(op["responses"])
