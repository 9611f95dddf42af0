"""Excursion upserts are idempotent, keep the acknowledgement, and are queryable."""

from __future__ import annotations

import dataclasses
import math

import pytest

from coldchain.exceptions import RecordNotFound, RecordRejected
from coldchain.rules.excursion import Excursion
from registry import Registry


def _exc(**kw: object) -> Excursion:
    base: dict[str, object] = {
        "asset_id": "truck-1",
        "compartment_id": "c1",
        "rule": "range",
        "kind": "range",
        "severity": "warning",
        "status": "open",
        "start_ms": 10_000,
        "end_ms": None,
        "detected_ms": 70_000,
        "peak_c": 9.5,
        "degree_minutes": 1.25,
        "profile": "chilled",
        "detail": "above 4.0 degC for 60 s",
    }
    base.update(kw)
    return Excursion(**base)  # type: ignore[arg-type]


def test_insert_then_read_back_equal(reg: Registry) -> None:
    exc = _exc()
    assert reg.upsert_excursions([exc]) == [exc.id]
    stored = reg.get_excursion(exc.id)
    assert stored is not None
    assert stored.excursion == exc
    assert not stored.acknowledged


def test_repeating_the_same_upsert_changes_nothing(reg: Registry) -> None:
    exc = _exc()
    reg.upsert_excursion(exc)
    before = reg.get_excursion(exc.id)
    head = reg.audit_head()
    assert reg.upsert_excursions([exc, exc]) == []
    assert reg.upsert_excursion(exc) is False
    assert reg.get_excursion(exc.id) == before  # updated_ms untouched too
    assert reg.audit_head() == head  # no audit entry for a no-op


def test_recomputation_updates_the_same_row(reg: Registry) -> None:
    exc = _exc()
    reg.upsert_excursion(exc)
    closed = dataclasses.replace(exc, status="closed", end_ms=130_000, peak_c=11.0)
    assert reg.upsert_excursion(closed) is True
    rows = reg.find_excursions(asset_id="truck-1")
    assert len(rows) == 1
    assert rows[0].excursion.status == "closed"
    assert rows[0].excursion.end_ms == 130_000
    assert rows[0].excursion.peak_c == 11.0
    actions = [e.action for e in reg.audit_entries(entity="excursion", entity_id=exc.id)]
    assert actions == ["excursion.upsert", "excursion.upsert"]


def test_acknowledgement_survives_upserts(reg: Registry) -> None:
    exc = _exc()
    reg.upsert_excursion(exc)
    acked = reg.acknowledge_excursion(exc.id, by="alice", comment="door left open", at_ms=99)
    assert (acked.ack_by, acked.ack_ms, acked.ack_comment) == ("alice", 99, "door left open")
    reg.upsert_excursion(dataclasses.replace(exc, status="closed", end_ms=200_000))
    reg.upsert_excursion(dataclasses.replace(exc, status="closed", end_ms=260_000))
    stored = reg.get_excursion(exc.id)
    assert stored is not None
    assert stored.excursion.end_ms == 260_000
    assert (stored.ack_by, stored.ack_ms, stored.ack_comment) == ("alice", 99, "door left open")
    acks = reg.audit_entries(entity="excursion", entity_id=exc.id)
    assert [e.action for e in acks].count("excursion.acknowledge") == 1
    assert acks[1].actor == "alice"


def test_first_detection_time_wins(reg: Registry) -> None:
    exc = _exc(detected_ms=70_000, detected_late=False)
    reg.upsert_excursion(exc)
    # A batch recomputation later reports the same excursion with its own wall-clock time.
    reg.upsert_excursion(dataclasses.replace(exc, detected_ms=999_999, detected_late=True))
    stored = reg.get_excursion(exc.id)
    assert stored is not None
    assert (stored.excursion.detected_ms, stored.excursion.detected_late) == (70_000, False)


def test_acknowledging_an_unknown_excursion_is_rejected(reg: Registry) -> None:
    with pytest.raises(RecordNotFound, match="excursion 'nope' not found"):
        reg.acknowledge_excursion("nope", by="alice")
    with pytest.raises(RecordRejected, match="acknowledged by"):
        reg.acknowledge_excursion("nope", by=" ")


def test_queries_by_asset_compartment_window_status_and_ack(reg: Registry) -> None:
    a = _exc(start_ms=1_000, end_ms=2_000, status="closed")
    b = _exc(start_ms=5_000, end_ms=None, status="open")
    c = _exc(compartment_id="c2", start_ms=1_500, end_ms=1_800, status="closed")
    d = _exc(
        asset_id="store-1",
        compartment_id="z1",
        kind="data_gap",
        rule="gap",
        start_ms=3_000,
        end_ms=4_000,
        status="recovered",
    )
    reg.upsert_excursions([a, b, c, d])
    reg.acknowledge_excursion(c.id, by="bob")

    def ids(**kw: object) -> list[str]:
        return [r.excursion.id for r in reg.find_excursions(**kw)]  # type: ignore[arg-type]

    assert ids(asset_id="truck-1") == [a.id, c.id, b.id]  # oldest first
    assert ids(asset_id="truck-1", compartment_id="c1") == [a.id, b.id]
    assert ids(from_ms=2_500, to_ms=4_500) == [d.id]
    assert ids(from_ms=2_000, to_ms=2_001) == [a.id]  # touching the window counts
    assert ids(from_ms=10_000_000) == [b.id]  # an open excursion extends forever
    assert ids(status="open") == [b.id]
    assert ids(status=["closed", "recovered"]) == [a.id, c.id, d.id]
    assert ids(acknowledged=True) == [c.id]
    assert ids(asset_id="truck-1", acknowledged=False) == [a.id, b.id]
    assert ids(limit=1) == [a.id]


def test_a_bad_excursion_rolls_back_the_whole_batch(reg: Registry) -> None:
    good = _exc()
    bad = _exc(start_ms=50_000, end_ms=40_000, status="closed")  # ends before it starts
    head = reg.audit_head()
    with pytest.raises(RecordRejected, match="constraint"):
        reg.upsert_excursions([good, bad], checkpoints={"truck-1/c1": {"n": 1}})
    assert reg.get_excursion(good.id) is None
    assert reg.load_checkpoint("truck-1/c1") is None
    assert reg.audit_head() == head


def test_checkpoints_commit_with_the_excursions(reg: Registry) -> None:
    exc = _exc()
    reg.upsert_excursions([exc], checkpoints={"truck-1/c1": {"last_ts": 70_000}})
    assert reg.load_checkpoint("truck-1/c1") == {"last_ts": 70_000}


def test_checkpoint_round_trip_replace_and_prefix(reg: Registry) -> None:
    state = {"open": {"range": 10_000}, "mkt": [1.5, 2.5], "inf": math.inf, "none": None}
    reg.save_checkpoint("truck-1/c1", state)
    assert reg.load_checkpoint("truck-1/c1") == state
    reg.save_checkpoint("truck-1/c1", {"v": 2})
    reg.save_checkpoints({"truck-1/c2": {"v": 3}, "truck_10/c1": {"v": 4}})
    assert reg.load_checkpoint("truck-1/c1") == {"v": 2}
    assert reg.load_checkpoint("missing") is None
    assert reg.load_checkpoints("truck-1/") == {"truck-1/c1": {"v": 2}, "truck-1/c2": {"v": 3}}
    # "_" in a prefix is literal, not a LIKE wildcard.
    assert reg.load_checkpoints("truck_") == {"truck_10/c1": {"v": 4}}
    assert len(reg.load_checkpoints()) == 3
    # Ids are case-sensitive on every backend (SQLite's LIKE would ignore ASCII case).
    reg.save_checkpoint("TRUCK-1/c1", {"v": 5})
    assert set(reg.load_checkpoints("truck-1/")) == {"truck-1/c1", "truck-1/c2"}
    assert reg.load_checkpoints("TRUCK-1/") == {"TRUCK-1/c1": {"v": 5}}
    assert reg.load_checkpoints("truck-1/c1é") == {}


def test_checkpoints_are_not_audited(reg: Registry) -> None:
    head = reg.audit_head()
    reg.save_checkpoint("k", {"v": 1})
    assert reg.audit_head() == head


def test_unserialisable_checkpoint_is_rejected(reg: Registry) -> None:
    with pytest.raises(RecordRejected, match="not JSON-serialisable"):
        reg.save_checkpoint("k", {"when": object()})
    assert reg.load_checkpoint("k") is None


def test_superseded_flag_is_stored_and_filterable(reg: Registry) -> None:
    kept = _exc(start_ms=1_000)
    gone = _exc(start_ms=2_000)
    reg.upsert_excursions([kept, gone])
    reg.upsert_excursion(dataclasses.replace(gone, status="closed", end_ms=2_500, superseded=True))
    stored = reg.get_excursion(gone.id)
    assert stored is not None and stored.excursion.superseded
    assert [r.excursion.id for r in reg.find_excursions(superseded=False)] == [kept.id]
    assert [r.excursion.id for r in reg.find_excursions(superseded=True)] == [gone.id]
    assert len(reg.find_excursions()) == 2


def test_nan_is_rejected_not_stored(reg: Registry) -> None:
    exc = _exc(peak_c=math.nan)
    with pytest.raises(RecordRejected):
        reg.upsert_excursion(exc)
    assert reg.get_excursion(exc.id) is None


def test_out_of_range_time_and_return_are_stored_and_updated(reg: Registry) -> None:
    exc = _exc(out_of_range_s=1200.0, returned_ms=None)
    reg.upsert_excursions([exc])
    closed = dataclasses.replace(
        exc, status="closed", end_ms=5_160_000, out_of_range_s=3300.0, returned_ms=5_040_000
    )
    assert reg.upsert_excursions([closed]) == [exc.id]
    stored = reg.get_excursion(exc.id)
    assert stored is not None and stored.excursion == closed
    assert (stored.excursion.out_of_range_s, stored.excursion.returned_ms) == (3300.0, 5_040_000)
