"""The HTTP API against a real influxd and a real (SQLite, migrated) registry.

The data are test_trace_service.py's (its fixtures and fleet, imported): SHP-1 on truck-1/c1
from 0 to 60 min, on docks until 111 (a custody gap from 90), in store-1/z1 until its delivery
at 171. The figures asserted here are the ones that module derives by hand.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api import create_app
from api.times import MAX_MS, rfc3339
from coldchain.rules import load_presets
from coldchain.settings import ApiSettings, Settings
from registry import Registry
from tests.integration.test_trace_service import (
    FLEET,
    # The fixtures influx and registry, used by name (hence the F811s below).
    influx,  # noqa: F401
    m,
    range_excursion,
    registry,  # noqa: F401
)
from timeseries.client import InfluxClient

pytestmark = pytest.mark.integration

KEY = {"X-API-Key": "regulator-key"}
AT = rfc3339(m(200))


@pytest.fixture
def client(registry: Registry, influx: InfluxClient) -> Iterator[TestClient]:  # noqa: F811
    settings = Settings(api=ApiSettings(keys={"regulator-key": "regulator"}))
    app = create_app(
        settings,
        registry=registry,
        influx=influx,
        fleet=FLEET,
        profiles=load_presets(),
        clock_ms=lambda: m(200),
    )
    with TestClient(app) as c:
        yield c


def test_trace_json(client: TestClient) -> None:
    r = client.get("/v1/shipments/SHP-1/trace", params={"at": AT}, headers=KEY)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["shipment_id"], body["profile"], body["at_ms"]) == ("SHP-1", "chilled", m(200))
    truck, truck_dock, store_dock, zone = body["legs"]
    assert truck["leg"] == {
        "asset_id": "truck-1",
        "compartment_id": "c1",
        "from_ms": m(0),
        "to_ms": m(60),
    }
    assert (truck["readings"], truck["min_c"], truck["max_c"]) == (6, 3.0, 5.0)
    assert truck["mean_c"] == pytest.approx(3.25) and truck["out_of_range_s"] == 600.0
    assert (truck_dock["readings"], truck_dock["unmonitored_s"]) == (0, 60.0)
    assert (store_dock["readings"], store_dock["unmonitored_s"]) == (0, 3000.0)
    assert (zone["readings"], zone["monitored_s"], zone["unmonitored_s"]) == (2, 3000.0, 600.0)
    (gap,) = body["excursions"]
    assert (gap["kind"], gap["start_ms"], gap["end_ms"]) == ("custody_gap", m(90), m(111))
    assert body["verdict"] == "incomplete"
    # Without "at" the app's clock closes open legs: the same trace here.
    assert client.get("/v1/shipments/SHP-1/trace", headers=KEY).json() == body


def test_trace_csv(client: TestClient, registry: Registry) -> None:  # noqa: F811
    registry.upsert_excursions([range_excursion(25, 35)])  # while on the truck
    r = client.get("/v1/shipments/SHP-1/trace.csv", params={"at": AT}, headers=KEY)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"] == 'attachment; filename="trace-SHP-1.csv"'
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(x["leg"], x["asset_id"], x["compartment_id"]) for x in rows] == [
        ("1", "truck-1", "c1"),
        ("2", "truck-1", ""),
        ("3", "store-1", ""),
        ("4", "store-1", "z1"),
    ]
    truck, truck_dock, store_dock, zone = rows
    assert (truck["from"], truck["to"]) == (rfc3339(m(0)), rfc3339(m(60)))
    assert (truck["readings"], truck["min_c"], truck["max_c"], truck["mean_c"]) == (
        "6",
        "3.0",
        "5.0",
        "3.25",
    )
    assert (truck["out_of_range_s"], truck["verdict"]) == ("600.0", "excursion")
    assert truck["excursion_ids"] == range_excursion(25, 35).id
    # the registry's out-of-range time and return reach the CSV
    assert (truck["excursion_out_of_range_s"], truck["excursion_returned"]) == (
        "600.0",
        rfc3339(m(35)),
    )
    # The truck's dock (60..61) ends before the custody gap starts (90); the store's does not.
    assert (truck_dock["verdict"], store_dock["verdict"]) == ("compliant", "incomplete")
    assert (zone["readings"], zone["min_c"], zone["max_c"], zone["mean_c"]) == (
        "2",
        "2.0",
        "2.0",
        "2.36",
    )
    assert (zone["to"], zone["verdict"]) == (rfc3339(m(171)), "compliant")
    assert {x["shipment_id"] for x in rows} == {"SHP-1"}


def test_shipments_listed_with_custody(client: TestClient) -> None:
    listed = client.get("/v1/shipments", headers=KEY).json()
    assert [(s["id"], s["status"], s["custody"]) for s in listed] == [
        ("SHP-1", "delivered", None),
        ("SHP-2", "in_custody", {"asset_id": "store-1", "compartment_id": "z1", "from_ms": m(111)}),
    ]


def test_errors(client: TestClient) -> None:
    r = client.get("/v1/shipments/SHP-404/trace", headers=KEY)
    assert (r.status_code, r.json()) == (404, {"detail": "shipment 'SHP-404' not found"})
    r = client.get("/v1/shipments/SHP-1/trace", params={"at": "2026-09-21T14:13:20"}, headers=KEY)
    assert r.status_code == 422
    assert r.json()["detail"].startswith("query parameter 'at': '2026-09-21T14:13:20' has no")
    r = client.get("/v1/shipments/SHP-1/trace.csv", headers={"X-API-Key": "guess"})
    assert (r.status_code, r.json()) == (
        401,
        {"detail": "the X-API-Key header does not hold a known API key"},
    )


def test_a_shipment_id_with_slash_is_traced_from_the_store(
    client: TestClient,
    registry: Registry,  # noqa: F811
) -> None:
    """Issue 9, item 10: an id with '/' (a customer reference) used to be a 404 on every route."""
    sid = "PO-2026/0042:A"
    registry.create_shipment(sid, profile="chilled", actor="planner", created_ms=m(-60))
    registry.record_custody_event(sid, "load", "truck-1", "c1", ts_ms=m(0), actor="driver")
    registry.record_custody_event(sid, "deliver", "truck-1", None, ts_ms=m(60), actor="consignee")
    for path in (sid, "PO-2026%2F0042%3AA"):
        r = client.get(f"/v1/shipments/{path}/trace", params={"at": AT}, headers=KEY)
        assert r.status_code == 200, r.text
        (leg,) = [x for x in r.json()["legs"] if x["leg"]["compartment_id"] == "c1"]
        assert (leg["readings"], leg["min_c"], leg["max_c"]) == (6, 3.0, 5.0)
        r = client.get(f"/v1/shipments/{path}/trace.csv", params={"at": AT}, headers=KEY)
        assert r.status_code == 200 and r.text.count(sid) == len(r.text.splitlines()) - 1


def test_the_latest_time_accepted_is_one_the_store_answers(
    registry: Registry,  # noqa: F811
    influx: InfluxClient,  # noqa: F811
) -> None:
    """The bound of api/times.py is InfluxDB's: asked at exactly that time the store answers
    (200), one millisecond later the API refuses (422); neither is a 503. (A shipment loaded an
    hour before that instant: one still open since 2026 would be a 236-year trace, refused as
    too long, 422, before InfluxDB is asked.)"""
    late = MAX_MS - 3_600_000
    registry.create_shipment("SHP-LATE", profile="chilled", actor="planner", created_ms=late)
    registry.record_custody_event("SHP-LATE", "load", "store-1", "z1", ts_ms=late, actor="staff")
    key = "temperature,asset=store-1,compartment=z1,probe=product,sensor=z1-prod"
    influx.write(f"{key} temp_c=2.5 {late + 60_000}".encode())
    app = create_app(
        Settings(api=ApiSettings(keys={"regulator-key": "regulator"})),
        registry=registry,
        influx=influx,
        fleet=FLEET,
        profiles=load_presets(),
        clock_ms=lambda: MAX_MS,
    )
    with TestClient(app) as c:
        last = rfc3339(MAX_MS)
        r = c.get("/v1/shipments/SHP-LATE/trace", params={"at": last}, headers=KEY)
        assert r.status_code == 200, r.text
        assert r.json()["legs"][0]["readings"] == 1  # the reading a minute after the load
        r = c.get("/v1/shipments/SHP-LATE/trace", params={"at": rfc3339(MAX_MS + 1)}, headers=KEY)
        assert r.status_code == 422 and "after the last instant" in r.json()["detail"]
