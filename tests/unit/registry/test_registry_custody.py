"""Shipments, idempotent custody scans and custody legs."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coldchain.exceptions import RecordRejected
from registry import CustodyEvent, CustodyLeg, Registry, derive_legs

T, S = "truck-1", "store-1"


@pytest.fixture
def shipment(reg: Registry) -> str:
    reg.create_shipment("SSCC-001", profile="chilled", actor="api", origin="farm", destination="dc")
    return "SSCC-001"


def test_create_shipment_is_idempotent_and_conflicts_are_rejected(reg: Registry) -> None:
    created, new = reg.create_shipment("S1", profile="chilled", actor="api", origin="A")
    again, new_again = reg.create_shipment("S1", profile="chilled", actor="api", origin="A")
    assert new and not new_again and again == created
    with pytest.raises(RecordRejected, match="other details"):
        reg.create_shipment("S1", profile="frozen", actor="api", origin="A")
    assert reg.get_shipment("S1") == created
    assert reg.get_shipment("S2") is None
    assert [e.action for e in reg.audit_entries(entity="shipment")] == ["shipment.create"]


def test_redelivered_scan_is_idempotent(reg: Registry, shipment: str) -> None:
    first, created = reg.record_custody_event(
        shipment, "load", T, "c1", ts_ms=1_000, actor="driver-7", source="mqtt"
    )
    head = reg.audit_head()
    again, created_again = reg.record_custody_event(
        shipment, "load", T, "c1", ts_ms=1_000, actor="driver-7", source="mqtt"
    )
    assert created and not created_again
    assert again == first
    assert reg.custody_events(shipment) == [first]
    assert reg.audit_head() == head


def test_contradictory_duplicate_is_rejected(reg: Registry, shipment: str) -> None:
    reg.record_custody_event(shipment, "load", T, "c1", ts_ms=1_000, actor="driver-7")
    with pytest.raises(RecordRejected, match="already recorded"):
        reg.record_custody_event(shipment, "load", T, "c2", ts_ms=1_000, actor="driver-7")
    assert len(reg.custody_events(shipment)) == 1


def test_unknown_shipment_and_bad_values_are_rejected(reg: Registry, shipment: str) -> None:
    with pytest.raises(RecordRejected, match="unknown shipment"):
        reg.record_custody_event("nope", "load", T, "c1", ts_ms=1, actor="x")
    with pytest.raises(RecordRejected, match="custody action"):
        reg.record_custody_event(shipment, "teleport", T, "c1", ts_ms=1, actor="x")  # type: ignore[arg-type]
    with pytest.raises(RecordRejected, match="custody source"):
        reg.record_custody_event(shipment, "load", T, "c1", ts_ms=1, actor="x", source="fax")  # type: ignore[arg-type]
    assert reg.custody_events(shipment) == []


def test_legs_truck_dock_store(reg: Registry, shipment: str) -> None:
    # Scans arrive out of order (a handheld's backlog); legs follow device time.
    reg.record_custody_event(shipment, "load", S, "z1", ts_ms=9_000, actor="clerk")
    reg.record_custody_event(shipment, "load", T, "c1", ts_ms=1_000, actor="driver")
    reg.record_custody_event(shipment, "unload", T, "c1", ts_ms=5_000, actor="driver")
    reg.record_custody_event(shipment, "handover", S, None, ts_ms=6_000, actor="clerk")
    assert reg.custody_legs(shipment) == [
        CustodyLeg(T, "c1", 1_000, 5_000),
        CustodyLeg(T, None, 5_000, 6_000),  # dock dwell after unloading from the truck
        CustodyLeg(S, None, 6_000, 9_000),  # handed over on the store's dock, unmonitored
        CustodyLeg(S, "z1", 9_000, None),  # in the store's zone, still there
    ]
    legs = reg.custody_legs(shipment)
    assert [leg.monitored for leg in legs] == [True, False, False, True]


def test_transfer_in_the_same_millisecond_has_no_dock_leg(reg: Registry, shipment: str) -> None:
    reg.record_custody_event(shipment, "load", S, "z1", ts_ms=5_000, actor="clerk")
    reg.record_custody_event(shipment, "unload", T, "c1", ts_ms=5_000, actor="driver")
    reg.record_custody_event(shipment, "load", T, "c1", ts_ms=1_000, actor="driver")
    assert reg.custody_legs(shipment) == [
        CustodyLeg(T, "c1", 1_000, 5_000),
        CustodyLeg(S, "z1", 5_000, None),
    ]


def test_scans_that_do_not_move_the_shipment_do_not_split_legs(
    reg: Registry, shipment: str
) -> None:
    reg.record_custody_event(shipment, "load", T, "c1", ts_ms=1_000, actor="driver-1")
    reg.record_custody_event(shipment, "handover", T, "c1", ts_ms=2_000, actor="driver-2")
    reg.record_custody_event(shipment, "load", T, "c1", ts_ms=3_000, actor="driver-2")
    reg.record_custody_event(shipment, "load", T, "c2", ts_ms=4_000, actor="driver-2")
    assert reg.custody_legs(shipment) == [
        CustodyLeg(T, "c1", 1_000, 4_000),
        CustodyLeg(T, "c2", 4_000, None),  # moved between compartments without an unload
    ]


def test_custody_events_are_audited_under_the_shipment(reg: Registry, shipment: str) -> None:
    reg.record_custody_event(shipment, "load", T, "c1", ts_ms=1_000, actor="driver")
    reg.record_custody_event(shipment, "unload", T, "c1", ts_ms=2_000, actor="driver")
    trail = reg.audit_entries(entity="shipment", entity_id=shipment)
    assert [(e.action, e.actor) for e in trail] == [
        ("shipment.create", "api"),
        ("custody.load", "driver"),
        ("custody.unload", "driver"),
    ]


def test_shipments_on_asset_in_a_window(reg: Registry) -> None:
    for sid in ("A", "B", "C"):
        reg.create_shipment(sid, profile="chilled", actor="api")
    reg.record_custody_event("A", "load", T, "c1", ts_ms=1_000, actor="d")
    reg.record_custody_event("A", "unload", T, "c1", ts_ms=3_000, actor="d")
    reg.record_custody_event("B", "load", T, "c2", ts_ms=2_500, actor="d")
    reg.record_custody_event("C", "load", S, "z1", ts_ms=0, actor="d")
    found = reg.shipments_on_asset(T, 2_000, 2_800)
    # A's dock leg on the truck starts at 3_000: outside the window.
    assert found == {
        "A": [CustodyLeg(T, "c1", 1_000, 3_000)],
        "B": [CustodyLeg(T, "c2", 2_500, None)],
    }
    assert reg.shipments_on_asset(T, 0, 1_000) == {}
    assert list(reg.shipments_on_asset(S, 0, 10)) == ["C"]


def test_list_shipments_pages_by_id(reg: Registry) -> None:
    for sid in ("C", "A", "B"):
        reg.create_shipment(sid, profile="chilled", actor="api", description=f"lot {sid}")
    assert [s.id for s in reg.list_shipments()] == ["A", "B", "C"]
    first = reg.list_shipments(limit=2)
    assert [s.id for s in first] == ["A", "B"] and first[0].description == "lot A"
    assert [s.id for s in reg.list_shipments(after=first[-1].id, limit=2)] == ["C"]
    assert reg.list_shipments(after="C") == []


def test_custody_legs_of_several_shipments_match_one_by_one(reg: Registry) -> None:
    for sid in ("A", "B", "C"):
        reg.create_shipment(sid, profile="chilled", actor="api")
    reg.record_custody_event("A", "load", T, "c1", ts_ms=1_000, actor="d")
    reg.record_custody_event("A", "unload", T, "c1", ts_ms=3_000, actor="d")
    reg.record_custody_event("B", "load", S, "z1", ts_ms=2_000, actor="d")
    reg.record_custody_event("B", "deliver", S, None, ts_ms=4_000, actor="consignee")
    legs = reg.custody_legs_of(["A", "B", "C", "unknown"])
    assert legs == {sid: reg.custody_legs(sid) for sid in ("A", "B", "C", "unknown")}
    assert legs["A"][-1] == CustodyLeg(T, None, 3_000, None)
    assert legs["B"] == [CustodyLeg(S, "z1", 2_000, 4_000)]
    assert legs["C"] == [] and reg.custody_legs_of([]) == {}


_events = st.lists(
    st.tuples(
        st.sampled_from(["load", "unload", "handover"]),
        st.sampled_from(["t1", "t2", "s1"]),
        st.sampled_from(["c1", "c2", None]),
        st.integers(0, 50),
    ),
    max_size=12,
)


@given(_events)
def test_derived_legs_are_contiguous_and_cover_from_first_scan(raw: list[tuple]) -> None:  # type: ignore[type-arg]
    events = [
        CustodyEvent(i, "X", action, asset, comp, ts, "a", "api", 0)
        for i, (action, asset, comp, ts) in enumerate(raw)
    ]
    legs = derive_legs(events)
    if not events:
        assert legs == []
        return
    assert legs[0].from_ms == min(e.ts_ms for e in events)
    assert legs[-1].to_ms is None
    for prev, nxt in itertools.pairwise(legs):
        assert prev.to_ms == nxt.from_ms  # no gaps, no overlaps
        assert prev.to_ms is not None and prev.from_ms < prev.to_ms
        assert (prev.asset_id, prev.compartment_id) != (nxt.asset_id, nxt.compartment_id)
    assert derive_legs(reversed(events)) == legs  # arrival order does not matter
