"""Identifiers in the registry (issue 9, item 10): what it refuses to store, and migration 0003,
which brings rows stored before the checks in line (renames recorded in the audit log) or stops,
changing nothing, naming what it cannot repair."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import text

from coldchain.exceptions import RecordRejected, TelemetryRejected
from coldchain.fleet import Asset, Compartment, Fleet, SensorSpec
from ingest.events import process_event
from registry import Registry, make_engine, open_registry, upgrade
from registry.migrate import current_revision, head_revision
from tests.unit.registry import rawdb

T = "truck-1"


def test_shipment_ids_with_slash_colon_and_gs1_keys_are_stored(reg: Registry) -> None:
    for sid in ("PO-2026/0042", "ACME:778-A", "(00)340123450000000017", "S" * 128):
        reg.create_shipment(sid, profile="chilled", actor="api")
        reg.record_custody_event(sid, "load", T, "c1", ts_ms=1_000, actor="driver-chen")
        assert reg.get_shipment(sid) is not None and len(reg.custody_legs(sid)) == 1


def test_ids_that_break_the_rules_are_refused_naming_the_problem(reg: Registry) -> None:
    cases = [
        ("SHP 1", "shipment id 'SHP 1' contains U+0020 SPACE (whitespace) at position 4"),
        ("SHP-1\n", "shipment id 'SHP-1\\n' contains U+000A (a control character)"),
        ("S" * 129, "is 129 characters long; at most 128 are allowed"),
        ("PO-1/trace", "ends in '/trace', reserved for the API's sub-resources"),
        ("", "shipment id '' is empty"),
    ]
    for sid, message in cases:
        with pytest.raises(RecordRejected, match=_esc(message)):
            reg.create_shipment(sid, profile="chilled", actor="api")
    reg.create_shipment("S1", profile="chilled", actor="api")
    scans = [
        ({"asset_id": "truck-1\n"}, "asset_id 'truck-1\\n' contains U+000A at position 8"),
        ({"compartment_id": "c 1"}, "compartment_id 'c 1' contains ' ' at position 2"),
        ({"actor": "bob\r"}, "actor 'bob\\r' contains U+000D (a control character)"),
        ({"shipment_id": "S1 "}, "shipment id 'S1 ' contains U+0020 SPACE"),
    ]
    for change, message in scans:
        scan: dict[str, object] = {
            "shipment_id": "S1",
            "asset_id": T,
            "compartment_id": "c1",
            "actor": "driver",
        } | change
        with pytest.raises(RecordRejected, match=_esc(message)):
            reg.record_custody_event(
                str(scan["shipment_id"]),
                "load",
                str(scan["asset_id"]),
                str(scan["compartment_id"]),
                ts_ms=1_000,
                actor=str(scan["actor"]),
            )
    with pytest.raises(RecordRejected, match=_esc("asset_id 'truck\\n' contains U+000A")):
        reg.assign_profile("truck\n", "c1", "frozen", from_ms=0, assigned_by="ops")
    assert reg.custody_events("S1") == []
    assert [e.action for e in reg.audit_entries()] == ["shipment.create"]


def _esc(text: str) -> str:
    return re.escape(text)


# -- migration 0003 ------------------------------------------------------------------------


def _at_0001(url: str, rows: dict[str, list[tuple[object, ...]]]) -> None:
    """A registry at revision 0001 holding ``rows`` as an older coldchain could store them
    (ids from the sequences, in order: the first custody event is row 1)."""
    assert upgrade(url, "0001") == "0001"
    shipment = text(
        "INSERT INTO shipments (id, profile, description, origin, destination, created_ms) "
        "VALUES (:sid, 'chilled', 'lot', '', '', 1000)"
    )
    custody = text(
        "INSERT INTO custody_events (shipment_id, action, asset_id, compartment_id, ts_ms, "
        "actor, source, received_ms) VALUES (:sid, 'load', :asset, :comp, :ts, 'driver', "
        "'api', :ts)"
    )
    profile = text(
        "INSERT INTO profile_assignments (asset_id, compartment_id, profile, from_ms, "
        "assigned_by, reason, recorded_ms) VALUES (:asset, :comp, 'frozen', 0, 'ops', '', 0)"
    )
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            for (sid,) in rows.get("shipments", []):
                conn.execute(shipment, {"sid": sid})
            for sid, asset, comp, ts in rows.get("custody", []):
                conn.execute(custody, {"sid": sid, "asset": asset, "comp": comp, "ts": ts})
            for asset, comp in rows.get("profiles", []):
                conn.execute(profile, {"asset": asset, "comp": comp})
    finally:
        engine.dispose()


def test_migration_renames_bad_shipment_ids_and_records_it(registry_url: str) -> None:
    _at_0001(
        registry_url,
        {
            "shipments": [("LOT 7",), ("SHP-1\n",), ("PO-1/trace",), ("fine/id",), ("//",)],
            "custody": [
                ("LOT 7", T, "c1", 1_000),
                ("SHP-1\n", " truck-1", "c1 ", 2_000),
                ("fine/id", T, "c1", 3_000),
            ],
            "profiles": [("truck-2\t", "c1")],
        },
    )
    assert upgrade(registry_url) == head_revision()
    with open_registry(registry_url) as reg:
        ids = [s.id for s in reg.list_shipments()]
        # Trimmed; percent-encoded (RFC 3986); the reserved "/trace" and empty segments
        # lose their "/" as "%2F".
        assert sorted(ids) == sorted(["LOT%207", "SHP-1", "PO-1%2Ftrace", "fine/id", "%2F%2F"])
        assert [(e.asset_id, e.ts_ms) for e in reg.custody_events("LOT%207")] == [(T, 1_000)]
        (repaired,) = reg.custody_events("SHP-1")
        assert (repaired.asset_id, repaired.compartment_id) == (T, "c1")
        assert [p.asset_id for p in reg.profile_history()] == ["truck-2"]
        renames = {
            json.loads(e.payload)["from"]: json.loads(e.payload)["to"]
            for e in reg.audit_entries()
            if e.action == "shipment.rename"
        }
        assert renames == {
            "LOT 7": "LOT%207",
            "SHP-1\n": "SHP-1",
            "PO-1/trace": "PO-1%2Ftrace",
            "//": "%2F%2F",
        }
        actions = [(e.action, e.actor) for e in reg.audit_entries()]
        assert ("custody.repair_ids", "migration-0003") in actions
        assert ("profile.repair_ids", "migration-0003") in actions
        assert reg.verify_audit_chain().ok


def test_migration_of_a_clean_database_changes_nothing(registry_url: str) -> None:
    _at_0001(
        registry_url,
        {"shipments": [("PO-2026/0042",), ("SSCC-1",)], "custody": [("SSCC-1", T, "c1", 5)]},
    )
    upgrade(registry_url)
    with open_registry(registry_url) as reg:
        assert [s.id for s in reg.list_shipments()] == ["PO-2026/0042", "SSCC-1"]
        # Nothing renamed or repaired; revision 0008 only attests the rows as they stand.
        assert {e.actor for e in reg.audit_entries()} == {"migration-0008"}
        assert reg.trail.verify().ok


@pytest.mark.parametrize(
    ("rows", "named"),
    [
        (  # the repaired id is taken
            {"shipments": [("LOT 7",), ("LOT%207",)]},
            "(GS1 character set 82); the repaired id 'LOT%207' is taken",
        ),
        (  # percent-encoding makes it too long
            {"shipments": [(" " + "\u00e9" * 30 + " ",)]},
            "and no repair fits",
        ),
        (  # an asset id no trimming repairs
            {"shipments": [("S1",)], "custody": [("S1", "truck\n1", "c1", 5)]},
            "custody_events row 1: asset_id 'truck\\n1' contains U+000A at position 6",
        ),
        (  # trimmed, the scan would repeat another one
            {"shipments": [("S1",)], "custody": [("S1", T, "c1", 5), ("S1", T + " ", "c1", 5)]},
            "custody_events row 2: repaired, it would repeat row 1",
        ),
    ],
)
def test_migration_stops_naming_what_it_cannot_repair_and_changes_nothing(
    registry_url: str, rows: dict[str, list[tuple[object, ...]]], named: str
) -> None:
    _at_0001(registry_url, rows)
    before = rawdb.query(registry_url, "SELECT * FROM shipments ORDER BY id")
    with pytest.raises(RecordRejected, match="migration 0003") as err:
        upgrade(registry_url)
    assert named in str(err.value)
    assert "run `coldchain init` again" in str(err.value)
    engine = make_engine(registry_url)
    try:
        assert current_revision(engine) == "0002"  # the revision before the identifiers one
    finally:
        engine.dispose()
    assert rawdb.query(registry_url, "SELECT * FROM shipments ORDER BY id") == before
    assert rawdb.query(registry_url, "SELECT count(*) AS n FROM audit_log") == [{"n": 0}]


def test_an_mqtt_custody_scan_takes_the_registry_s_shipment_ids(reg: Registry) -> None:
    """A scan over MQTT used to refuse an id with '/' or ':' that the registry held; now the
    scan is recorded, and an id that breaks the rules is dead-lettered with the rule."""
    c1 = Compartment(id="c1", profile="chilled", sensors=(SensorSpec(id="c1-air", probe="air"),))
    fleet = Fleet([Asset(id=T, kind="vehicle", devices=("tcu-1",), compartments=(c1,))])
    sid = "PO-2026/0042:A"
    reg.create_shipment(sid, profile="chilled", actor="api")

    def scan(shipment_id: str) -> bytes:
        return json.dumps(
            {"v": 1, "device_id": "tcu-1", "ts": "2026-11-30T08:00:00Z", "seq": 1,
             "type": "custody", "action": "load", "shipment_id": shipment_id,
             "asset_id": T, "compartment_id": "c1", "actor": "driver-chen"}
        ).encode()  # fmt: skip

    now = 1_796_025_600_000  # 2026-11-30T08:00:00Z
    out = process_event("coldchain/v1/devices/tcu-1/events", scan(sid), fleet, reg, 65536, now)
    assert out.custody == (T, "c1", now)
    assert [e.shipment_id for e in reg.custody_events(sid)] == [sid]
    with pytest.raises(TelemetryRejected) as err:
        process_event("coldchain/v1/devices/tcu-1/events", scan("SHP 1"), fleet, reg, 65536, now)
    assert err.value.reason == "invalid_event" and "U+0020 SPACE" in str(err.value)
