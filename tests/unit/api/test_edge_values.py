"""Values at and past the edges of what the API stores: a clear 422, never a 5xx (found by the
schemathesis run's neighbourhood: a custody event in year 1 was a 500)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

ADMIN = {"X-API-Key": "key-admin"}
OUTSIDE = "is outside the times coldchain can store, 1677-09-21T00:12:43.146Z to "


@pytest.mark.parametrize(
    "ts", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-23:59", "1677-09-21T00:12:43.145Z"]
)
def test_a_body_time_outside_the_storable_range_is_422(client: TestClient, ts: str) -> None:
    event = {
        "event_id": "e1",
        "shipment_id": "S1",
        "action": "load",
        "asset_id": "truck-1",
        "ts": ts,
        "actor": "a",
    }
    r = client.post("/v1/custody-events", json=event, headers=ADMIN)
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith(f"body parameter 'ts': Value error, {OUTSIDE}")
    shipment = {"id": "S1", "profile": "chilled", "shipper": "A", "planned_arrival": ts}
    r = client.post("/v1/shipments", json=shipment, headers=ADMIN)
    assert r.status_code == 422, r.text
    assert OUTSIDE in r.json()["detail"]


def test_the_edges_themselves_and_huge_quantities_are_stored_and_shown(
    client: TestClient,
) -> None:
    shipment = {
        "id": "EDGE-1",
        "profile": "chilled",
        "shipper": "A",
        "quantity": 1e308,
        "unit": "kg",
        "planned_departure": "1677-09-21T00:12:43.146Z",
        "planned_arrival": "2262-04-11T23:47:16.854Z",
    }
    r = client.post("/v1/shipments", json=shipment, headers=ADMIN)
    assert r.status_code == 201, r.text
    assert r.json()["planned_arrival_ms"] == (2**63 - 1) // 1_000_000
    for path in ("", "/report.html?tz=Pacific/Kiritimati", "/report.html?tz=Etc/GMT%2B12"):
        r = client.get("/v1/shipments/EDGE-1" + path, headers=ADMIN)
        assert r.status_code == 200, (path, r.text)
    # 1e400 is valid JSON, and a float overflow: infinity is refused.
    body = '{"id": "EDGE-2", "profile": "chilled", "shipper": "A", "quantity": 1e400, "unit": "kg"}'
    r = client.post(
        "/v1/shipments", content=body, headers=ADMIN | {"Content-Type": "application/json"}
    )
    assert r.status_code == 422 and "finite number" in r.json()["detail"], r.text
