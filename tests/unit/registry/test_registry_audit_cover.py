"""The audit log covers the records it protects, the reads, and its own guards.

Each tampering below is what someone with direct database access could do; ``trail.verify()``
(``coldchain audit verify``) must fail and name the first bad row. Issue 10 measured that the
chain alone reported "intact" after a cut tail with the head moved, a deleted head row, an
emptied log with the head reset, and edits of ``shipments`` or ``custody_events``.
"""

from __future__ import annotations

import json
import threading

import pytest
from sqlalchemy.exc import DBAPIError

from coldchain.exceptions import RecordRejected
from coldchain.rules.excursion import Excursion
from registry import GENESIS, Registry, open_registry, restore_audit_guards, upgrade
from registry.audit_guard import SQLITE_GUARDS, check_guards, guards_for
from registry.audit_records import RECORDS_KEY, row_digest
from registry.db import make_session_factory
from registry.models import ShipmentRow
from tests.unit.registry import rawdb
from tests.unit.registry.conftest import FakeClock

EXC = Excursion("truck-1", "c1", "range", "range", "warning", "open", 1_500, None, 2_000)


def _populate(reg: Registry) -> None:
    """Seven entries, one per kind of change: seq 1 shipment, 2 custody, 3 excursion, 4 ack,
    5 profile, 6 key create, 7 key revoke."""
    reg.create_shipment("S1", profile="chilled", actor="api")
    reg.record_custody_event("S1", "load", "truck-1", "c1", ts_ms=1_000, actor="driver")
    reg.upsert_excursion(EXC)
    reg.acknowledge_excursion(EXC.id, by="alice", comment="ok")
    reg.assign_profile("truck-1", "c1", "frozen", from_ms=3_000, assigned_by="ops")
    key, _token = reg.keys.create("regulator", created_by="admin", shipments=["S1"])
    reg.keys.revoke(key.key_id, by="admin")


def _sql(url: str, *statements: str, keep_triggers: bool = False) -> None:
    """Direct database access: drop every guard trigger (unless asked not to), then edit."""
    rawdb.execute(url, *statements, drop_guards=not keep_triggers)


def _sql_rearmed(url: str, *statements: str) -> None:
    """A careful tamperer: drop the guards, edit, put the guards back."""
    _sql(url, *statements)
    assert restore_audit_guards(url)


@pytest.fixture
def populated(reg: Registry, migrated_url: str) -> Registry:
    _populate(reg)
    report = reg.trail.verify()
    assert report.ok, str(report)
    return reg


def _first(reg: Registry, **anchors: tuple[int, str]) -> str:
    report = reg.trail.verify(**anchors)
    assert not report.ok, str(report)
    return report.problems[0]


def test_every_write_carries_the_digest_of_the_rows_it_left(populated: Registry) -> None:
    entries = populated.audit_entries()
    assert [e.action for e in entries] == [
        "shipment.create",
        "custody.load",
        "excursion.upsert",
        "excursion.acknowledge",
        "profile.assign",
        "key.create",
        "key.revoke",
    ]
    tables = [[r["table"] for r in json.loads(e.payload)[RECORDS_KEY]] for e in entries]
    assert tables == [
        ["shipments"],
        ["custody_events", "shipments"],  # a scan keeps the shipment's status current
        ["excursions"],
        ["excursion_acknowledgements", "excursions"],  # history row + the latest on the row
        ["profile_assignments"],
        ["api_keys"],
        ["api_keys"],
    ]
    report = populated.trail.verify()
    # shipment, custody event, excursion, acknowledgement, profile, key
    assert report.records_checked == 6
    assert str(report).endswith("audit intact")


def test_the_digest_is_reproducible_from_the_row(populated: Registry, migrated_url: str) -> None:
    """registry/audit_records.py's recipe with plain SQL and hashlib only (NULLs left out)."""
    (row,) = rawdb.query(migrated_url, "SELECT * FROM custody_events")
    digest = json.loads(populated.audit_entries()[1].payload)[RECORDS_KEY][0]["sha256"]
    assert row["compartment_id"] == "c1"
    assert row_digest("custody_events", row) == digest
    row["compartment_id"] = "c2"
    assert row_digest("custody_events", row) != digest


def test_no_secret_or_its_digest_in_the_audit_log(reg: Registry, migrated_url: str) -> None:
    _key, token = reg.keys.create("admin", created_by="root")
    (row,) = rawdb.query(migrated_url, "SELECT secret_sha256 FROM api_keys")
    # The secret is the token's last 43 characters (it may itself contain "_").
    secret, stored = token[-43:], row["secret_sha256"]
    log = " ".join(e.payload for e in reg.audit_entries())
    assert token not in log and secret not in log and stored not in log


# -- the chain: edit, delete, reorder, cut the tail ---------------------------------------


def test_an_edited_entry_is_named(populated: Registry, migrated_url: str) -> None:
    _sql(migrated_url, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 3")
    assert _first(populated) == "writes chain, seq 3: content does not match its hash (modified)"


def test_a_deleted_entry_is_named(populated: Registry, migrated_url: str) -> None:
    _sql(migrated_url, "DELETE FROM audit_log WHERE seq = 2")
    assert _first(populated) == "writes chain, seq 2: entries 2..2 are missing (deleted)"


def test_reordered_entries_are_named(populated: Registry, migrated_url: str) -> None:
    _sql(
        migrated_url,
        "UPDATE audit_log SET seq = -1 WHERE seq = 2",
        "UPDATE audit_log SET seq = 2 WHERE seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE seq = -1",
    )
    assert _first(populated) == (
        "writes chain, seq 2: prev_hash does not match the previous entry's hash"
    )


def test_a_cut_tail_is_named_by_the_head(populated: Registry, migrated_url: str) -> None:
    _sql(migrated_url, "DELETE FROM audit_log WHERE seq >= 5")
    assert _first(populated) == (
        "writes chain, seq 5: the head says seq 7 but the log ends at 4 (tail deleted)"
    )


def test_a_cut_tail_with_the_head_moved_is_named_by_the_tables_and_the_anchor(
    populated: Registry, migrated_url: str
) -> None:
    anchor = populated.trail.heads()["writes"]
    e4 = populated.audit_entries()[3]
    _sql_rearmed(
        migrated_url,
        "DELETE FROM audit_log WHERE seq >= 5",
        f"UPDATE audit_head SET seq = 4, hash = '{e4.hash}'",
    )
    # The chain alone is self-consistent now; the rows its tail covered are not.
    report = populated.trail.verify()
    assert report.writes.ok
    assert report.problems[0] == (
        "api_keys row '" + populated.keys.list()[0].key_id + "': not in the audit log "
        "(written outside the registry)"
    )
    assert "profile_assignments row 1: not in the audit log" in report.problems[1]
    # A published head names the first missing entry even if the tables were cut too.
    assert _first(populated, anchor=anchor) == (
        "writes chain, seq 5: the anchored entry 7 is not in the log, which ends at 4 "
        "(tail cut, or the whole log replaced)"
    )


def test_a_deleted_head_row_is_named(populated: Registry, migrated_url: str) -> None:
    _sql(migrated_url, "DELETE FROM audit_head")
    assert (
        _first(populated) == "writes chain, seq 8: the head row (audit_head) is missing (deleted)"
    )


def test_an_emptied_log_with_the_head_reset_is_named_by_the_tables(
    populated: Registry, migrated_url: str
) -> None:
    _sql_rearmed(
        migrated_url,
        "DELETE FROM audit_log",
        f"UPDATE audit_head SET seq = 0, hash = '{GENESIS}'",
    )
    report = populated.trail.verify()
    assert report.writes.ok and report.writes.checked == 0
    assert "not in the audit log" in report.problems[0]
    assert len(report.problems) == 6  # every row of every protected table


# -- the tables the API serves, edited directly -------------------------------------------


@pytest.mark.parametrize(
    ("statement", "problem"),
    [
        (
            "UPDATE shipments SET description = 'forged' WHERE id = 'S1'",
            # seq 2: the custody scan updated the shipment's status
            "shipments row 'S1': differs from its last audited state (writes seq 2): "
            "edited outside the registry",
        ),
        (
            "UPDATE custody_events SET ts_ms = 999 WHERE id = 1",
            "custody_events row 1: differs from its last audited state (writes seq 2): "
            "edited outside the registry",
        ),
        (
            "INSERT INTO custody_events (shipment_id, action, asset_id, compartment_id, ts_ms,"
            " actor, source, received_ms) VALUES ('S1', 'unload', 'truck-1', NULL, 5000, 'x',"
            " 'api', 5000)",
            "custody_events row 2: not in the audit log (written outside the registry)",
        ),
        (
            "DELETE FROM custody_events WHERE id = 1",
            "custody_events row 1: audited at writes seq 2 but missing (deleted outside the "
            "registry)",
        ),
        (
            "UPDATE excursions SET ack_by = 'mallory'",
            f"excursions row '{EXC.id}': differs from its last audited state (writes seq 4): "
            "edited outside the registry",
        ),
        (
            "UPDATE api_keys SET revoked_ms = NULL, revoked_by = NULL",
            "differs from its last audited state (writes seq 7)",
        ),
    ],
)
def test_a_table_edited_directly_is_named(
    populated: Registry, migrated_url: str, statement: str, problem: str
) -> None:
    # The guard triggers stay: they protect the audit tables, not these.
    _sql(migrated_url, statement, keep_triggers=True)
    assert problem in _first(populated)


def test_an_unaudited_write_through_the_orm_is_refused(populated: Registry) -> None:
    sessions = make_session_factory(populated.engine)
    with (
        pytest.raises(RecordRejected, match=r"unaudited change to shipments \[\"S2\"\]"),
        sessions() as session,
        session.begin(),
    ):
        session.add(
            ShipmentRow(
                id="S2", profile="x", description="", origin="", destination="", created_ms=0
            )
        )
    assert populated.get_shipment("S2") is None
    assert populated.trail.verify().ok


# -- the guards ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("UPDATE audit_log SET actor = 'x'", "audit_log is append-only"),
        ("DELETE FROM audit_log", "audit_log is append-only"),
        ("UPDATE audit_read_log SET actor = 'x'", "audit_read_log is append-only"),
        ("DELETE FROM audit_head", "audit_head rows cannot be deleted"),
        ("UPDATE audit_head SET seq = seq - 1", "audit_head cannot move back"),
        ("DELETE FROM audit_read_head", "audit_read_head rows cannot be deleted"),
    ],
)
def test_the_database_refuses_what_would_rewrite_the_log(
    populated: Registry, migrated_url: str, statement: str, message: str
) -> None:
    populated.trail.record_read(
        actor="k", action="read.trace", entity="shipment", entity_id="S1", payload={}
    )
    with pytest.raises(DBAPIError, match=message):
        _sql(migrated_url, statement, keep_triggers=True)
    assert populated.trail.verify().ok


@pytest.mark.parametrize("index", range(len(SQLITE_GUARDS)))
def test_a_dropped_guard_fails_verify_and_init_restores_it(
    populated: Registry, migrated_url: str, backend: str, index: int
) -> None:
    dropped = guards_for(backend)[index]
    guard = dropped.name
    on = f" ON {dropped.table}" if backend == "postgresql" else ""
    _sql(migrated_url, f"DROP TRIGGER {guard}{on}", keep_triggers=True)
    assert _first(populated).startswith(f"trigger {guard} on ")
    assert _first(populated).endswith(" is missing (dropped)")
    assert restore_audit_guards(migrated_url) == [guard]
    assert restore_audit_guards(migrated_url) == []
    assert populated.trail.verify().ok


def test_an_altered_guard_fails_verify_and_init_restores_it(
    populated: Registry, migrated_url: str, backend: str
) -> None:
    if backend == "sqlite":
        _sql(
            migrated_url,
            "DROP TRIGGER audit_log_no_delete",
            "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log BEGIN SELECT 1; END",
            keep_triggers=True,
        )
        assert _first(populated) == "trigger audit_log_no_delete on audit_log was altered"
        assert restore_audit_guards(migrated_url) == ["audit_log_no_delete"]
    else:
        # The function every log trigger calls, made to let the change through.
        _sql(
            migrated_url,
            "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN RETURN OLD; END $$",
            keep_triggers=True,
        )
        assert _first(populated) == (
            "function audit_log_append_only of trigger audit_log_no_change was altered"
        )
        assert "audit_log_no_change" in restore_audit_guards(migrated_url)
    with pytest.raises(DBAPIError, match="append-only"):
        _sql(migrated_url, "DELETE FROM audit_log WHERE seq = 1", keep_triggers=True)


# SQLite triggers cannot be disabled, only dropped (tested above).
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_disabled_guard_fails_verify_and_init_restores_it(
    populated: Registry, migrated_url: str
) -> None:
    _sql(
        migrated_url,
        "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change",
        keep_triggers=True,
    )
    assert _first(populated) == "trigger audit_log_no_change on audit_log is disabled"
    assert restore_audit_guards(migrated_url) == ["audit_log_no_change"]
    with pytest.raises(DBAPIError, match="append-only"):
        _sql(migrated_url, "DELETE FROM audit_log WHERE seq = 1", keep_triggers=True)


def test_the_migrations_install_exactly_the_guards_verify_expects(migrated_url: str) -> None:
    engine = open_registry(migrated_url).engine
    try:
        with engine.connect() as conn:
            assert check_guards(conn) == []
    finally:
        engine.dispose()


# -- the read chain -----------------------------------------------------------------------


def test_concurrent_reads_share_commits_and_keep_one_chain(migrated_url: str) -> None:
    errors: list[BaseException] = []
    with open_registry(migrated_url) as reg:
        reg.create_shipment("S1", profile="chilled", actor="api")

        def reader(n: int) -> None:
            try:
                for i in range(10):
                    entry = reg.trail.record_read(
                        actor=f"key-{n}",
                        action="read.trace",
                        entity="shipment",
                        entity_id="S1",
                        payload={"i": i},
                    )
                    assert entry.actor == f"key-{n}" and json.loads(entry.payload) == {"i": i}
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=reader, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        entries = reg.trail.read_entries(entity_id="S1")
        assert [e.seq for e in entries] == list(range(1, 81))
        assert sorted(e.actor for e in entries) == sorted([f"key-{n}" for n in range(8)] * 10)
        assert 1 <= reg.trail.transactions <= 80
        report = reg.trail.verify()
        assert report.ok and report.reads.checked == 80
        assert reg.trail.heads()["reads"] == (80, entries[-1].hash)
        assert reg.audit_head() == reg.trail.heads()["writes"]  # reads never touch it


def test_a_tampered_read_entry_is_named_and_a_cut_read_tail_caught_by_its_anchor(
    reg: Registry, migrated_url: str
) -> None:
    for i in range(4):
        reg.trail.record_read(
            actor="k1", action="read.trace", entity="shipment", entity_id="S1", payload={"i": i}
        )
    anchor = reg.trail.heads()["reads"]
    _sql(migrated_url, "UPDATE audit_read_log SET entity_id = 'S2' WHERE seq = 2")
    assert _first(reg) == "reads chain, seq 2: content does not match its hash (modified)"
    _sql(migrated_url, "UPDATE audit_read_log SET entity_id = 'S1' WHERE seq = 2")
    e2 = reg.trail.read_entries()[1]
    _sql_rearmed(
        migrated_url,
        "DELETE FROM audit_read_log WHERE seq > 2",
        f"UPDATE audit_read_head SET seq = 2, hash = '{e2.hash}'",
    )
    assert reg.trail.verify().ok  # self-consistent without the anchor
    assert _first(reg, reads_anchor=anchor).startswith(
        "reads chain, seq 3: the anchored entry 4 is not in the log"
    )


def test_a_bad_read_payload_fails_alone(reg: Registry) -> None:
    with pytest.raises(RecordRejected, match=r"read\.trace of shipment 'S1'"):
        reg.trail.record_read(
            actor="k",
            action="read.trace",
            entity="shipment",
            entity_id="S1",
            payload={"x": float("nan")},
        )
    assert reg.trail.heads()["reads"] == (0, GENESIS)


# -- migration 0008 -----------------------------------------------------------------------


def test_0020_attests_the_rows_it_finds_so_later_edits_are_caught(registry_url: str) -> None:
    url = registry_url
    upgrade(url, "0003")
    _sql(
        url,
        "INSERT INTO shipments VALUES ('OLD-1', 'chilled', 'from before 0008', '', '', 5)",
        "INSERT INTO custody_events (shipment_id, action, asset_id, compartment_id, ts_ms, actor,"
        " source, received_ms) VALUES ('OLD-1', 'load', 'truck-1', 'c1', 10, 'd', 'mqtt', 11)",
        keep_triggers=True,
    )
    upgrade(url)
    with open_registry(url, clock=FakeClock()) as reg:
        (custody, shipments) = reg.audit_entries()
        assert (custody.action, custody.actor, custody.entity_id) == (
            "audit.attest",
            "migration-0008",
            "custody_events",
        )
        assert json.loads(shipments.payload)["rows"] == 1
        report = reg.trail.verify()
        assert report.ok and report.records_checked == 2, str(report)
        reg.record_custody_event("OLD-1", "unload", "truck-1", None, ts_ms=20, actor="d")
        assert reg.trail.verify().ok
        _sql(url, "UPDATE shipments SET description = 'forged'", keep_triggers=True)
        assert _first(reg) == (
            "shipments row 'OLD-1': differs from its last audited state (writes seq 2): "
            "edited outside the registry"
        )
