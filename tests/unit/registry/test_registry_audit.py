"""The audit log: one entry per change in the same transaction, hash-chained, tamper-evident."""

from __future__ import annotations

import hashlib
import itertools
import json
import threading

import pytest
from sqlalchemy.exc import DBAPIError

from coldchain.exceptions import RecordRejected, StoreError
from coldchain.rules.excursion import Excursion
from registry import GENESIS, Registry, open_registry
from tests.unit.registry import rawdb


def _populate(reg: Registry) -> None:
    reg.create_shipment("S1", profile="chilled", actor="api")
    reg.record_custody_event("S1", "load", "truck-1", "c1", ts_ms=1_000, actor="driver")
    exc = Excursion("truck-1", "c1", "range", "range", "warning", "open", 1_500, None, 2_000)
    reg.upsert_excursion(exc)
    reg.acknowledge_excursion(exc.id, by="alice", comment="ok")
    reg.assign_profile("truck-1", "c1", "frozen", from_ms=3_000, assigned_by="ops")


def _tamper(url: str, *sql: str) -> None:
    """What someone with direct database access could do: drop the guard triggers, edit."""
    rawdb.execute(url, *sql, drop_guards=True)


def test_every_mutation_writes_one_linked_entry(reg: Registry) -> None:
    _populate(reg)
    entries = reg.audit_entries()
    assert [e.action for e in entries] == [
        "shipment.create",
        "custody.load",
        "excursion.upsert",
        "excursion.acknowledge",
        "profile.assign",
    ]
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == GENESIS
    for prev, nxt in itertools.pairwise(entries):
        assert nxt.prev_hash == prev.hash
    report = reg.verify_audit_chain()
    assert report.ok, str(report)
    assert (report.checked, report.head_seq, report.head_hash) == (5, 5, entries[-1].hash)


def test_hash_recipe_is_reproducible_outside_the_registry(reg: Registry) -> None:
    """docs/registry.md's recipe, re-implemented with hashlib and json only."""
    _populate(reg)
    prev = "0" * 64
    for e in reg.audit_entries():
        row = {
            "seq": e.seq,
            "ts_ms": e.ts_ms,
            "actor": e.actor,
            "action": e.action,
            "entity": e.entity,
            "entity_id": e.entity_id,
            "payload": e.payload,
        }
        canonical = json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        assert hashlib.sha256((prev + canonical).encode()).hexdigest() == e.hash
        prev = e.hash


def test_the_database_refuses_update_and_delete_of_audit_rows(
    reg: Registry, migrated_url: str
) -> None:
    _populate(reg)
    with pytest.raises(DBAPIError, match="append-only"):
        rawdb.execute(migrated_url, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
    with pytest.raises(DBAPIError, match="append-only"):
        rawdb.execute(migrated_url, "DELETE FROM audit_log WHERE seq = 2")
    assert reg.verify_audit_chain().ok


def test_a_modified_entry_is_detected_where_it_is(reg: Registry, migrated_url: str) -> None:
    _populate(reg)
    _tamper(migrated_url, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 3")
    report = reg.verify_audit_chain()
    assert not report.ok
    assert report.bad_seq == 3
    assert "modified" in report.problem
    assert report.checked == 2  # entries 1 and 2 are still good


def test_a_modified_payload_with_recomputed_hash_breaks_the_next_link(
    reg: Registry, migrated_url: str
) -> None:
    _populate(reg)
    e2 = reg.audit_entries()[1]
    forged_payload = e2.payload.replace('"c1"', '"c9"')
    row = {
        "seq": 2,
        "ts_ms": e2.ts_ms,
        "actor": e2.actor,
        "action": e2.action,
        "entity": e2.entity,
        "entity_id": e2.entity_id,
        "payload": forged_payload,
    }
    canonical = json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    forged_hash = hashlib.sha256((e2.prev_hash + canonical).encode()).hexdigest()
    _tamper(
        migrated_url,
        f"UPDATE audit_log SET payload = '{forged_payload}', hash = '{forged_hash}' WHERE seq = 2",
    )
    report = reg.verify_audit_chain()
    assert not report.ok
    assert report.bad_seq == 3
    assert "prev_hash" in report.problem


def test_a_deleted_entry_is_detected(reg: Registry, migrated_url: str) -> None:
    _populate(reg)
    _tamper(migrated_url, "DELETE FROM audit_log WHERE seq = 2")
    report = reg.verify_audit_chain()
    assert not report.ok
    assert report.bad_seq == 2
    assert "missing (deleted)" in report.problem


def test_a_deleted_tail_is_detected_by_the_head(reg: Registry, migrated_url: str) -> None:
    _populate(reg)
    _tamper(migrated_url, "DELETE FROM audit_log WHERE seq >= 4")
    report = reg.verify_audit_chain()
    assert not report.ok
    assert report.bad_seq == 4
    assert "tail deleted" in report.problem


def test_a_rewritten_chain_is_caught_by_a_published_anchor(
    reg: Registry, migrated_url: str
) -> None:
    _populate(reg)
    anchor = reg.audit_head()
    assert reg.verify_audit_chain(anchor=anchor).ok
    # Mallory truncates the tail and fixes the head row too: only the anchor notices.
    e3 = reg.audit_entries()[2]
    _tamper(
        migrated_url,
        "DELETE FROM audit_log WHERE seq >= 4",
        f"UPDATE audit_head SET seq = 3, hash = '{e3.hash}'",
    )
    assert reg.verify_audit_chain().ok  # self-consistent ...
    report = reg.verify_audit_chain(anchor=anchor)
    assert not report.ok  # ... but the published head is gone
    assert report.bad_seq == 4  # the first entry missing
    assert "the anchored entry 5 is not in the log, which ends at 3" in report.problem


def test_a_failed_mutation_leaves_no_audit_entry(reg: Registry) -> None:
    reg.create_shipment("S1", profile="chilled", actor="api")
    head = reg.audit_head()
    with pytest.raises(RecordRejected):
        reg.record_custody_event("S2", "load", "truck-1", "c1", ts_ms=1, actor="d")
    with pytest.raises(RecordRejected):
        reg.create_shipment("S1", profile="frozen", actor="api")
    assert reg.audit_head() == head
    assert reg.verify_audit_chain().ok


def test_concurrent_writers_keep_one_linear_chain(migrated_url: str) -> None:
    """Separate engines (like separate processes) writing at once: no fork, no lost entry."""
    with open_registry(migrated_url) as setup:
        setup.create_shipment("S1", profile="chilled", actor="api")
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            with open_registry(migrated_url) as reg:
                for i in range(15):
                    reg.record_custody_event(
                        "S1", "handover", f"asset-{n}", None, ts_ms=i, actor=f"w{n}"
                    )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    # Verifying while others append must not mistake the moving head for tampering.
    with open_registry(migrated_url) as verifier:
        reports = []
        while any(t.is_alive() for t in threads):
            reports.append(verifier.verify_audit_chain())
    for t in threads:
        t.join()
    assert errors == []
    assert reports and all(r.ok for r in reports), [str(r) for r in reports if not r.ok]
    with open_registry(migrated_url) as reg:
        report = reg.verify_audit_chain()
        assert report.ok, str(report)
        assert report.checked == 1 + 4 * 15
        assert len(reg.custody_events("S1")) == 4 * 15


def test_verify_on_an_uninitialised_database_is_a_store_error(registry_url: str) -> None:
    with (
        open_registry(registry_url, check_schema=False) as reg,
        pytest.raises(StoreError, match=r"no such table|does not exist"),
    ):
        reg.verify_audit_chain()
