"""The registry's write-API records (revision 0007): shipments created idempotently, updated by
the rules on which fields change, cancelled; custody events by the caller's id, refused when
impossible, the shipment's status kept current; acknowledgements appended to a history."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy.exc import DBAPIError

from coldchain.exceptions import RecordConflict, RecordInvalid, RecordNotFound, RecordRejected
from coldchain.rules.excursion import Excursion
from registry import Registry
from tests.unit.registry import rawdb

T0 = 1_790_000_000_000
MIN = 60_000

FULL = {
    "profile": "chilled",
    "shipper": "ACME Foods",
    "consignee": "上海冷库",
    "description": "yoghurt\n12 pallets",
    "quantity": 12.0,
    "unit": "pallets",
    "origin": "Jieyang",
    "destination": "Shanghai",
    "planned_departure_ms": T0,
    "planned_arrival_ms": T0 + 600 * MIN,
}


def _create(reg: Registry, sid: str = "PO-1", **kw: object) -> tuple[object, bool]:
    return reg.create_shipment(sid, actor="erp", **(FULL | kw))  # type: ignore[arg-type]


def test_create_is_idempotent_and_names_every_differing_field(reg: Registry) -> None:
    shipment, created = _create(reg)
    assert created and shipment == reg.get_shipment("PO-1")
    again, created = _create(reg)
    assert not created and again == shipment
    assert [e.action for e in reg.audit_entries(entity="shipment")] == ["shipment.create"]
    with pytest.raises(RecordConflict) as info:
        _create(reg, profile="frozen", quantity=10, planned_arrival_ms=None)
    assert str(info.value) == (
        "shipment 'PO-1' already exists with other details: "
        'profile is "chilled" in the stored shipment, "frozen" here; '
        "quantity is 12.0 in the stored shipment, 10.0 here; "
        'planned_arrival is "2026-09-22T00:13:20Z" in the stored shipment, null here'
    )
    # Compared with the create, not with later updates: a retried create still matches.
    reg.update_shipment("PO-1", {"destination": "Hangzhou"}, actor="erp")
    again, created = _create(reg)
    assert not created and again.destination == "Hangzhou"  # type: ignore[attr-defined]


def test_create_refuses_what_cannot_be_stored(reg: Registry) -> None:
    cases = {
        "quantity -1.0 is not a positive finite number": {"quantity": -1.0},
        "quantity nan is not a positive finite number": {"quantity": float("nan")},
        "quantity and unit go together": {"unit": None},
        "the planned arrival (2026-09-21T14:12:20Z) is before the planned departure": {
            "planned_arrival_ms": T0 - MIN
        },
        "shipper is 201 characters long; at most 200 are allowed": {"shipper": "x" * 201},
        "origin 'A\\tB' contains U+0009 (a control character) at position 2": {"origin": "A\tB"},
        "unit '  ' is empty or blank": {"unit": "  "},
    }
    for message, change in cases.items():
        with pytest.raises(RecordInvalid) as info:
            _create(reg, "PO-2", **change)
        assert message in str(info.value), change
    assert reg.get_shipment("PO-2") is None


def test_update_changes_what_may_change_when_it_may(reg: Registry) -> None:
    _create(reg)
    shipment, changed = reg.update_shipment(
        "PO-1", {"quantity": 11, "consignee": "Hangzhou DC", "profile": "frozen"}, actor="erp"
    )
    assert changed and (shipment.quantity, shipment.consignee, shipment.profile) == (
        11.0,
        "Hangzhou DC",
        "frozen",
    )
    (entry,) = [e for e in reg.audit_entries(entity="shipment") if e.action == "shipment.update"]
    # Before and after, in canonical (ASCII) JSON.
    assert '"before":{"consignee":"\\u4e0a\\u6d77\\u51b7\\u5e93","profile":"chilled"' in (
        entry.payload
    )
    assert '"after":{"consignee":"Hangzhou DC","profile":"frozen","quantity":11.0}' in (
        entry.payload
    )
    # The same values again: nothing changes, nothing is audited.
    _, changed = reg.update_shipment("PO-1", {"quantity": 11.0}, actor="erp")
    assert not changed
    assert len(reg.audit_entries(entity="shipment")) == 2
    with pytest.raises(RecordConflict, match="shipper of shipment 'PO-1' cannot change"):
        reg.update_shipment("PO-1", {"shipper": "Other"}, actor="erp")
    reg.update_shipment("PO-1", {"shipper": "ACME Foods"}, actor="erp")  # equal: accepted
    with pytest.raises(RecordInvalid, match="quantity and unit go together"):
        reg.update_shipment("PO-1", {"unit": None}, actor="erp")
    _, changed = reg.update_shipment("PO-1", {"unit": None, "quantity": None}, actor="erp")
    assert changed
    with pytest.raises(RecordInvalid, match="'id', 'created_ms': not shipment fields"):
        reg.update_shipment("PO-1", {"id": "X", "created_ms": 0}, actor="erp")
    with pytest.raises(RecordNotFound, match="shipment 'nope' not found"):
        reg.update_shipment("nope", {"quantity": 1}, actor="erp")
    reg.record_custody_event("PO-1", "load", "truck-1", "c1", ts_ms=T0, actor="d")
    with pytest.raises(RecordConflict, match="profile of shipment 'PO-1' cannot change once"):
        reg.update_shipment("PO-1", {"profile": "chilled"}, actor="erp")
    reg.update_shipment("PO-1", {"destination": "Ningbo"}, actor="erp")


def test_cancel_only_before_custody_and_then_nothing_more(reg: Registry) -> None:
    _create(reg, "PO-1")
    _create(reg, "PO-2")
    reg.record_custody_event("PO-2", "load", "truck-1", "c1", ts_ms=T0, actor="d")
    with pytest.raises(RecordConflict, match="cannot be cancelled: it is in_custody"):
        reg.cancel_shipment("PO-2", actor="erp")
    shipment, changed = reg.cancel_shipment("PO-1", actor="erp", reason="order withdrawn")
    assert (
        changed and shipment.status == "cancelled" and shipment.cancel_reason == ("order withdrawn")
    )
    again, changed = reg.cancel_shipment("PO-1", actor="erp")
    assert not changed and again == shipment
    # Refused from any source: an MQTT scan for it is dead-lettered with this reason.
    for source in ("api", "mqtt"):
        with pytest.raises(RecordConflict, match=r"was cancelled .* accepts no custody events"):
            reg.record_custody_event(
                "PO-1", "load", "truck-1", "c1", ts_ms=T0, actor="d", source=source
            )
    with pytest.raises(RecordConflict, match="accepts no updates"):
        reg.update_shipment("PO-1", {"quantity": 1}, actor="erp")
    actions = [e.action for e in reg.audit_entries(entity="shipment", entity_id="PO-1")]
    assert actions == ["shipment.create", "shipment.cancel"]


def test_status_and_custody_span_follow_the_scans_in_any_arrival_order(reg: Registry) -> None:
    _create(reg)
    scans = [
        ("deliver", "store-1", None, 171),
        ("load", "truck-1", "c1", 0),
        ("unload", "truck-1", "c1", 60),
        ("load", "store-1", "z1", 111),
    ]
    expected = [
        ("registered", None, None),  # a delivery alone makes no leg
        ("delivered", T0, T0 + 171 * MIN),
        ("delivered", T0, T0 + 171 * MIN),
        ("delivered", T0, T0 + 171 * MIN),
    ]
    for (action, asset, comp, minute), state in zip(scans, expected, strict=True):
        reg.record_custody_event(
            "PO-1", action, asset, comp, ts_ms=T0 + minute * MIN, actor="d", source="mqtt"
        )  # type: ignore[arg-type]
        s = reg.get_shipment("PO-1")
        assert s is not None and (s.status, s.custody_from_ms, s.custody_to_ms) == state


def test_custody_event_ids_make_retries_safe(reg: Registry) -> None:
    _create(reg)
    args = {"ts_ms": T0, "actor": "driver 7", "event_id": "urn:uuid:1", "recorded_by": "key:ab"}
    event, created = reg.record_custody_event("PO-1", "load", "truck-1", "c1", **args)
    assert created and event.event_id == "urn:uuid:1" and event.source == "api"
    same, created = reg.record_custody_event("PO-1", "load", "truck-1", "c1", **args)
    assert not created and same == event
    with pytest.raises(RecordConflict) as info:
        reg.record_custody_event("PO-1", "load", "truck-1", "c2", **(args | {"ts_ms": T0 + MIN}))
    assert str(info.value) == (
        "custody event 'urn:uuid:1' is already recorded with other details: "
        "compartment_id is 'c1' in the stored event, 'c2' here; "
        "ts is 2026-09-21T14:13:20Z in the stored event, 2026-09-21T14:14:20Z here"
    )
    # The same scan under another id (or from MQTT) is a conflict, not a second event.
    with pytest.raises(RecordConflict, match="already recorded as event 'urn:uuid:1'"):
        reg.record_custody_event("PO-1", "load", "truck-1", "c1", **(args | {"event_id": "2"}))
    with pytest.raises(RecordConflict, match="already recorded as event 'urn:uuid:1'"):
        reg.record_custody_event(
            "PO-1", "load", "truck-1", "c1", ts_ms=T0, actor="driver 7", source="mqtt"
        )
    (entry,) = [e for e in reg.audit_entries(entity="shipment") if e.action == "custody.load"]
    assert entry.actor == "key:ab" and '"actor":"driver 7"' in entry.payload
    with pytest.raises(RecordInvalid, match="event_id 'a b' contains U\\+0020 at position 2"):
        reg.record_custody_event("PO-1", "load", "truck-1", "c1", **(args | {"event_id": "a b"}))


def test_an_impossible_scan_is_refused_only_when_asked(reg: Registry) -> None:
    _create(reg)
    with pytest.raises(RecordConflict) as info:
        reg.record_custody_event(
            "PO-1", "unload", "truck-1", "c1", ts_ms=T0, actor="d", refuse_impossible=True
        )
    assert str(info.value) == (
        "custody event for shipment 'PO-1' cannot have happened: unload this event from "
        "truck-1/c1 at 2026-09-21T14:13:20Z: the shipment was not loaded anywhere"
    )
    assert reg.custody_events("PO-1") == []
    # From MQTT the same scan is stored (a load may still arrive late) ...
    reg.record_custody_event("PO-1", "unload", "truck-1", "c1", ts_ms=T0, actor="d", source="mqtt")
    # ... and does not block a later, possible event over HTTP; the load that explains it is
    # possible too (it resolves the problem rather than adding one).
    reg.record_custody_event(
        "PO-1", "load", "truck-1", "c1", ts_ms=T0 - MIN, actor="d", refuse_impossible=True
    )
    reg.record_custody_event(
        "PO-1", "deliver", "truck-1", None, ts_ms=T0 + MIN, actor="c", refuse_impossible=True
    )
    with pytest.raises(RecordConflict, match="the shipment was delivered at 2026-09-21T14:14:20Z"):
        reg.record_custody_event(
            "PO-1", "load", "truck-2", "c1", ts_ms=T0 + 2 * MIN, actor="d", refuse_impossible=True
        )
    # A delivery slipped in before existing scans would make them impossible: refused too.
    with pytest.raises(RecordConflict, match=r"no scan before it took custody.*load #2 into"):
        reg.record_custody_event(
            "PO-1",
            "deliver",
            "truck-1",
            None,
            ts_ms=T0 - 2 * MIN,
            actor="c",
            refuse_impossible=True,
        )


def _exc() -> Excursion:
    return Excursion(
        asset_id="truck-1",
        compartment_id="c1",
        rule="range",
        kind="range",
        severity="warning",
        status="closed",
        start_ms=T0,
        end_ms=T0 + 10 * MIN,
        detected_ms=T0,
    )


def test_acknowledgements_append_and_the_latest_is_shown(reg: Registry) -> None:
    exc = _exc()
    reg.upsert_excursion(exc)
    first, record = reg.record_acknowledgement(
        exc.id,
        by="key:0a1b2c3d",
        role="operator",
        key_id="0a1b2c3d",
        comment="door left open at the stop",
        root_cause="driver did not close the rear door",
        disposition="quarantined",
    )
    assert (first.seq, first.disposition, record.ack_count) == (1, "quarantined", 1)
    second, record = reg.record_acknowledgement(
        exc.id, by="qa-lead", comment="lab results fine", disposition="released"
    )
    assert second.seq == 2 and (record.ack_by, record.ack_disposition, record.ack_count) == (
        "qa-lead",
        "released",
        2,
    )
    assert reg.excursion_acknowledgements(exc.id) == [first, second]
    assert reg.latest_acknowledgements([exc.id, "other"]) == {exc.id: second}
    # The rules engine's upserts leave them alone.
    reg.upsert_excursion(dataclasses.replace(exc, end_ms=T0 + 20 * MIN))
    stored = reg.get_excursion(exc.id)
    assert stored is not None and (stored.ack_count, stored.ack_by) == (2, "qa-lead")
    acks = [e for e in reg.audit_entries(entity="excursion") if e.action == "excursion.acknowledge"]
    assert [e.actor for e in acks] == ["key:0a1b2c3d", "qa-lead"]
    assert '"key_id":"0a1b2c3d"' in acks[0].payload and '"seq":1' in acks[0].payload
    assert reg.verify_audit_chain().ok
    with pytest.raises(RecordInvalid, match="disposition 'eaten' is not one of pending"):
        reg.record_acknowledgement(exc.id, by="x", disposition="eaten")  # type: ignore[arg-type]
    with pytest.raises(RecordNotFound, match="excursion 'nope' not found"):
        reg.excursion_acknowledgements("nope")
    # Filed under the excursion, found by the listings' filter.
    assert [r.excursion.id for r in reg.find_excursions(acknowledged=True)] == [exc.id]


def test_the_acknowledgement_history_is_append_only_in_the_database(
    reg: Registry, migrated_url: str, backend: str
) -> None:
    exc = _exc()
    reg.upsert_excursion(exc)
    reg.record_acknowledgement(exc.id, by="qa", disposition="pending")
    for sql in (
        "UPDATE excursion_acknowledgements SET disposition = 'released'",
        "DELETE FROM excursion_acknowledgements",
        "TRUNCATE excursion_acknowledgements"
        if backend == "postgresql"
        else "DELETE FROM excursion_acknowledgements WHERE seq = 1",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            rawdb.execute(migrated_url, sql)
    assert reg.excursion_acknowledgements(exc.id)[0].disposition == "pending"


def test_find_shipments_filters_and_pages_by_id(reg: Registry) -> None:
    for i, (shipper, profile) in enumerate(
        [("ACME", "chilled"), ("Beta", "frozen"), ("ACME", "frozen"), ("ACME", "chilled")]
    ):
        reg.create_shipment(
            f"S{i}", actor="erp", shipper=shipper, profile=profile, created_ms=T0 + i * MIN
        )
    reg.record_custody_event("S0", "load", "truck-1", "c1", ts_ms=T0, actor="d")
    reg.record_custody_event("S0", "deliver", "truck-1", None, ts_ms=T0 + 60 * MIN, actor="c")
    reg.record_custody_event("S2", "load", "truck-1", "c1", ts_ms=T0 + 90 * MIN, actor="d")
    reg.cancel_shipment("S3", actor="erp")

    def ids(**kw: object) -> list[str]:
        return [s.id for s in reg.find_shipments(**kw)]  # type: ignore[arg-type]

    assert ids() == ["S0", "S1", "S2", "S3"]
    assert ids(shipper="ACME") == ["S0", "S2", "S3"]
    assert ids(shipper="ACME", profile="frozen") == ["S2"]
    assert ids(status="cancelled") == ["S3"]
    assert ids(status="in_custody") == ["S2"]
    assert ids(created_from_ms=T0 + MIN, created_to_ms=T0 + 3 * MIN) == ["S1", "S2"]
    # Custody overlapping [from, to): S0 from 0 to 60 min, S2 from 90 min on.
    assert ids(active_from_ms=T0 + 30 * MIN, active_to_ms=T0 + 100 * MIN) == ["S0", "S2"]
    assert ids(active_from_ms=T0 + 60 * MIN) == ["S2"]
    assert ids(active_to_ms=T0 + 90 * MIN) == ["S0"]
    assert ids(shipper="ACME", after="S0", limit=1) == ["S2"]
    with pytest.raises(RecordInvalid, match="status 'lost' is not one of"):
        ids(status="lost")


def test_unknown_shipment_for_a_scan_is_invalid(reg: Registry) -> None:
    with pytest.raises(RecordInvalid, match="unknown shipment 'nope': register the shipment"):
        reg.record_custody_event("nope", "load", "truck-1", "c1", ts_ms=T0, actor="d")
    assert issubclass(RecordInvalid, RecordRejected)  # ingest dead-letters RecordRejected
