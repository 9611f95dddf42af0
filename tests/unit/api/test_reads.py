"""The registry reads over HTTP (shipments, excursions), and the pure pieces: RFC 3339 times
and the CSV of a trace."""

from __future__ import annotations

import csv
import io
from dataclasses import replace

import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient

from api.export import CSV_COLUMNS, leg_verdicts, trace_to_csv
from api.times import parse_time_param, rfc3339
from coldchain.rules.excursion import Excursion
from coldchain.trace import Leg, LegReport, ShipmentTrace
from registry import Registry

ADMIN = {"X-API-Key": "key-admin"}
T0 = 1_790_000_000_000  # 2026-09-21T14:13:20Z
MIN = 60_000


def test_shipments_with_where_they_are(client: TestClient, registry: Registry) -> None:
    for sid in ("B", "A", "C"):
        registry.create_shipment(sid, profile="chilled", actor="t", description=f"lot {sid}")
    registry.record_custody_event("A", "load", "truck-1", "c1", ts_ms=T0, actor="d")
    registry.record_custody_event("B", "load", "store-1", "z1", ts_ms=T0, actor="d")
    registry.record_custody_event("B", "deliver", "store-1", None, ts_ms=T0 + MIN, actor="c")
    listed = client.get("/v1/shipments", headers=ADMIN).json()
    assert [(s["id"], s["status"], s["custody"]) for s in listed] == [
        ("A", "in_custody", {"asset_id": "truck-1", "compartment_id": "c1", "from_ms": T0}),
        ("B", "delivered", None),
        ("C", "registered", None),
    ]
    assert listed[0]["description"] == "lot A" and listed[0]["profile"] == "chilled"
    page = client.get("/v1/shipments", params={"after": "A", "limit": 1}, headers=ADMIN).json()
    assert [s["id"] for s in page] == ["B"]
    one = client.get("/v1/shipments/B", headers=ADMIN).json()
    assert one["legs"] == [
        {"asset_id": "store-1", "compartment_id": "z1", "from_ms": T0, "to_ms": T0 + MIN}
    ]


def _exc(start_min: int, end_min: int | None, **kw: object) -> Excursion:
    fields: dict[str, object] = {
        "asset_id": "truck-1",
        "compartment_id": "c1",
        "rule": "range",
        "kind": "range",
        "severity": "warning",
        "status": "closed" if end_min is not None else "open",
        "start_ms": T0 + start_min * MIN,
        "end_ms": None if end_min is None else T0 + end_min * MIN,
        "detected_ms": T0,
    }
    return Excursion(**(fields | kw))  # type: ignore[arg-type]


def test_excursions_filtered(client: TestClient, registry: Registry) -> None:
    early, open_, other, gone = (
        _exc(0, 10),
        _exc(60, None),
        _exc(5, 15, asset_id="truck-2"),
        _exc(20, 30, superseded=True),
    )
    registry.upsert_excursions([early, open_, other, gone])
    registry.acknowledge_excursion(early.id, by="qa", comment="checked", at_ms=T0)

    def ids(**params: str) -> list[str]:
        r = client.get("/v1/excursions", params=params, headers=ADMIN)
        assert r.status_code == 200, r.text
        return [e["id"] for e in r.json()]

    assert ids() == [early.id, other.id, open_.id]
    assert ids(include_superseded="true") == [early.id, other.id, gone.id, open_.id]
    assert ids(asset_id="truck-1", status="open") == [open_.id]
    # [14:25, 15:30Z) touches "other" (ends 14:28:20) and the open one, not "early".
    assert ids(**{"from": "2026-09-21T14:25:00Z", "to": "2026-09-21T15:30:00Z"}) == [
        other.id,
        open_.id,
    ]
    first = client.get("/v1/excursions", headers=ADMIN).json()[0]
    assert (first["acknowledged"], first["ack_by"], first["ack_comment"]) == (
        True,
        "qa",
        "checked",
    )
    assert (first["start_ms"], first["end_ms"], first["kind"]) == (T0, T0 + 10 * MIN, "range")


def test_times() -> None:
    assert parse_time_param("at", "2026-09-21T14:13:20Z") == T0
    assert parse_time_param("at", "2026-09-21t16:13:20.000+02:00") == T0
    assert parse_time_param("at", "2026-09-21 14:13:20.1239999Z") == T0 + 123
    assert rfc3339(T0) == "2026-09-21T14:13:20Z"
    assert rfc3339(T0 + 7) == "2026-09-21T14:13:20.007Z"
    assert rfc3339(None) == ""
    with pytest.raises(HTTPException) as info:
        parse_time_param("from", "2026-09-21")
    assert info.value.status_code == 422
    assert info.value.detail.startswith("query parameter 'from': '2026-09-21' is not")


def _trace() -> ShipmentTrace:
    # On truck-1/c1 for an hour (a range excursion), then 50 min on its dock: the custody gap
    # starts when the 30 allowed minutes are up; then in store-1/z1, still there.
    truck = Leg("truck-1", "c1", T0, T0 + 60 * MIN)
    dock = Leg("truck-1", None, T0 + 60 * MIN, T0 + 110 * MIN)
    zone = Leg("store-1", "z1", T0 + 110 * MIN, None)
    rng = _exc(20, 30, out_of_range_s=540.0, returned_ms=T0 + 29 * MIN)
    gap = _exc(90, 110, compartment_id="dock:=SUM(A1)", rule="custody_gap", kind="custody_gap")
    return ShipmentTrace(
        "=SUM(A1)",
        "chilled",
        [
            LegReport(truck, 6, 2.5, 5.25, 3.1234, 3.2, 3600.0, 0.0, 600.0, (rng.id,)),
            LegReport(dock, unmonitored_s=3000.0),
            LegReport(zone, 3, -1.0, 2.0, 1.0, 1.1, 1800.0),
        ],
        [rng, gap],
        "excursion",
    )


def test_csv_of_a_trace() -> None:
    trace = _trace()
    assert leg_verdicts(trace, T0 + 140 * MIN) == ["excursion", "incomplete", "compliant"]
    text = trace_to_csv(trace, T0 + 140 * MIN)
    assert text.endswith("\r\n")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == list(CSV_COLUMNS)
    truck, dock, zone = rows
    # A shipment id a spreadsheet would run as a formula is defused.
    assert truck["shipment_id"] == "'=SUM(A1)" and truck["profile"] == "chilled"
    assert (truck["leg"], truck["asset_id"], truck["compartment_id"]) == ("1", "truck-1", "c1")
    assert (truck["from"], truck["to"]) == ("2026-09-21T14:13:20Z", "2026-09-21T15:13:20Z")
    assert (truck["readings"], truck["min_c"], truck["max_c"]) == ("6", "2.5", "5.25")
    assert (truck["mean_c"], truck["out_of_range_s"]) == ("3.123", "600.0")
    assert truck["excursion_ids"] == trace.excursions[0].id
    # each excursion's time out of range and return, in the order of excursion_ids
    assert truck["excursion_out_of_range_s"] == "540.0"
    assert truck["excursion_returned"] == "2026-09-21T14:42:20Z"
    assert truck["verdict"] == "excursion"
    assert (dock["compartment_id"], dock["readings"], dock["min_c"]) == ("", "0", "")
    assert dock["excursion_ids"] == trace.excursions[1].id and dock["verdict"] == "incomplete"
    # a custody gap has no temperature limits: "na"
    assert (dock["excursion_out_of_range_s"], dock["excursion_returned"]) == ("na", "na")
    assert (zone["excursion_ids"], zone["excursion_out_of_range_s"]) == ("", "")
    assert (zone["to"], zone["min_c"], zone["verdict"]) == ("", "-1.0", "compliant")


def test_csv_lists_align_with_the_excursion_ids() -> None:
    trace = _trace()
    still_out = _exc(40, None, rule="hard_high", kind="hard_limit", out_of_range_s=120.0)
    legs = [replace(trace.legs[0], excursion_ids=(trace.excursions[0].id, still_out.id))]
    both = replace(trace, legs=legs, excursions=[trace.excursions[0], still_out])
    (row,) = csv.DictReader(io.StringIO(trace_to_csv(both, T0 + 140 * MIN)))
    assert row["excursion_ids"].split(" ") == [trace.excursions[0].id, still_out.id]
    assert row["excursion_out_of_range_s"].split(" ") == ["540.0", "120.0"]
    assert row["excursion_returned"].split(" ") == ["2026-09-21T14:42:20Z", "na"]
