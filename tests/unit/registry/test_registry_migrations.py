"""The Alembic migration builds exactly the ORM metadata; init is idempotent and checked."""

from __future__ import annotations

import importlib
from dataclasses import replace
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from cli.main import main
from coldchain.exceptions import StoreError
from registry import GENESIS, head_revision, make_engine, open_registry, upgrade
from registry.migrate import current_revision, downgrade
from registry.models import Base
from tests.unit.registry import rawdb

TABLES = {
    "alert_deliveries",
    "alert_outbox",
    "api_keys",
    "audit_head",
    "audit_log",
    "audit_read_head",
    "audit_read_log",
    "custody_events",
    "excursion_acknowledgements",
    "excursions",
    "integrity_evidence",
    "leases",
    "profile_assignments",
    "rule_checkpoints",
    "shipments",
    "spool_identities",
}


def _diff(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(ctx, Base.metadata))
    finally:
        engine.dispose()


def test_migration_produces_exactly_the_orm_metadata(registry_url: str) -> None:
    upgrade(registry_url)
    assert _diff(registry_url) == []


def test_compare_does_notice_a_difference(registry_url: str) -> None:
    # Guard for the test above: on an empty database the comparison must report every table.
    diff = _diff(registry_url)
    added = {d[1].name for d in diff if isinstance(d, tuple) and d[0] == "add_table"}
    assert added == TABLES


def test_upgrade_is_idempotent_and_reaches_head(registry_url: str) -> None:
    head = head_revision()
    assert upgrade(registry_url) == head
    assert upgrade(registry_url) == head
    engine = make_engine(registry_url)
    try:
        assert set(inspect(engine).get_table_names()) == TABLES | {"alembic_version"}
        assert current_revision(engine) == head
    finally:
        engine.dispose()


def test_downgrade_to_base_then_upgrade_again(registry_url: str) -> None:
    upgrade(registry_url)
    assert downgrade(registry_url, "base") is None
    engine = make_engine(registry_url)
    try:
        assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    finally:
        engine.dispose()
    assert upgrade(registry_url) == head_revision()
    assert _diff(registry_url) == []


def test_0002_adds_out_of_range_columns_and_keeps_existing_excursions(registry_url: str) -> None:
    # An excursion stored under 0001 reads back after 0002 with the new fields unknown (None);
    # a new upsert fills them; downgrading to 0001 drops them again and keeps the row.
    upgrade(registry_url, "0001")
    engine = make_engine(registry_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO excursions (id, asset_id, compartment_id, rule, kind, severity,"
                " status, start_ms, end_ms, detected_ms, detected_late, peak_c, degree_minutes,"
                " profile, detail, superseded, updated_ms) VALUES ('e1', 'truck-1', 'c1',"
                " 'range', 'range', 'warning', 'closed', 0, 60000, 60000, FALSE, 9.0, 1.0,"
                " 'chilled', '', FALSE, 60000)"
            )
    finally:
        engine.dispose()
    upgrade(registry_url)  # through 0002 (and any later revision: open_registry needs head)
    with open_registry(registry_url) as reg:
        old = reg.get_excursion("e1")
        assert old is not None
        assert (old.excursion.out_of_range_s, old.excursion.returned_ms) == (None, None)
        assert old.excursion.start_ms == 0 and old.excursion.peak_c == 9.0
        new = replace(old.excursion, out_of_range_s=45.0, returned_ms=60_000)
        reg.upsert_excursions([new])
        again = reg.get_excursion("e1")
        assert again is not None and again.excursion == new
    downgrade(registry_url, "0001")
    engine = make_engine(registry_url)
    try:
        cols = {c["name"] for c in inspect(engine).get_columns("excursions")}
        assert "out_of_range_s" not in cols and "returned_ms" not in cols
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT id FROM excursions").fetchall() == [("e1",)]
    finally:
        engine.dispose()


def test_migration_seeds_the_audit_head(migrated_url: str) -> None:
    with open_registry(migrated_url) as reg:
        assert reg.audit_head() == (0, GENESIS)
        report = reg.verify_audit_chain()
    assert report.ok and report.checked == 0


def test_open_refuses_an_uninitialised_database(registry_url: str) -> None:
    with pytest.raises(StoreError, match=r"not initialised.*coldchain init"):
        open_registry(registry_url)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sqlite_connections_get_wal_foreign_keys_and_busy_timeout(migrated_url: str) -> None:
    engine = make_engine(migrated_url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000
    finally:
        engine.dispose()


def test_make_engine_does_not_connect(tmp_path: Path) -> None:
    db = tmp_path / "nested" / "r.sqlite3"
    engine = make_engine(f"sqlite:///{db}")
    engine.dispose()
    assert db.parent.is_dir()  # the directory is prepared ...
    assert not db.exists()  # ... but no connection was made


def test_cli_init_migrates_settings_url(
    registry_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLDCHAIN_REGISTRY_URL", registry_url)
    assert main(["init", "--verify-audit"]) == 0
    assert main(["init"]) == 0  # repeatable
    out = capsys.readouterr().out
    assert f"schema at revision {head_revision()}" in out
    assert "audit chain intact" in out
    versions = rawdb.query(registry_url, "SELECT version_num FROM alembic_version")
    assert versions == [{"version_num": head_revision()}]


def test_cli_init_reports_a_bad_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--registry-url", "not a url"]) == 2
    assert "is not a database URL" in capsys.readouterr().err


def test_0007_brings_existing_shipments_and_acknowledgements_along(registry_url: str) -> None:
    # Rows stored under 0003: a delivered shipment, one still in custody, one never scanned,
    # and an acknowledged excursion. After 0007 each has its status and custody span, an
    # identical create is still recognised, and the acknowledgement is history entry 1.
    upgrade(registry_url, "0003")
    engine = make_engine(registry_url)
    try:
        with engine.begin() as conn:
            for sid in ("A", "B", "C"):
                conn.exec_driver_sql(
                    "INSERT INTO shipments (id, profile, description, origin, destination,"
                    f" created_ms) VALUES ('{sid}', 'chilled', 'lot {sid}', 'X', 'Y', 5)"
                )
            for sid, action, comp, ts in [
                ("A", "load", "'c1'", 10),
                ("A", "deliver", "NULL", 20),
                ("B", "load", "'c1'", 30),
            ]:
                conn.exec_driver_sql(
                    "INSERT INTO custody_events (shipment_id, action, asset_id, compartment_id,"
                    f" ts_ms, actor, source, received_ms) VALUES ('{sid}', '{action}',"
                    f" 'truck-1', {comp}, {ts}, 'd', 'mqtt', {ts})"
                )
            conn.exec_driver_sql(
                "INSERT INTO excursions (id, asset_id, compartment_id, rule, kind, severity,"
                " status, start_ms, end_ms, detected_ms, detected_late, peak_c, degree_minutes,"
                " profile, detail, superseded, updated_ms, ack_by, ack_ms, ack_comment) VALUES"
                " ('e1', 'truck-1', 'c1', 'range', 'range', 'warning', 'closed', 0, 60000,"
                " 60000, FALSE, 9.0, 1.0, 'chilled', '', FALSE, 60000, 'alice', 70000, 'seen')"
            )
    finally:
        engine.dispose()
    assert upgrade(registry_url) == head_revision()
    with open_registry(registry_url) as reg:
        states = {}
        for sid in ("A", "B", "C"):
            s = reg.get_shipment(sid)
            assert s is not None and s.updated_ms == 5
            states[sid] = (s.status, s.custody_from_ms, s.custody_to_ms)
        assert states == {
            "A": ("delivered", 10, 20),
            "B": ("in_custody", 30, None),
            "C": ("registered", None, None),
        }
        _, created = reg.create_shipment(
            "A", profile="chilled", actor="erp", description="lot A", origin="X", destination="Y"
        )
        assert not created
        (ack,) = reg.excursion_acknowledgements("e1")
        assert (ack.seq, ack.by, ack.ack_ms, ack.comment, ack.disposition) == (
            1,
            "alice",
            70000,
            "seen",
            None,
        )
        record = reg.get_excursion("e1")
        assert record is not None and record.ack_count == 1
        # Nothing happened, so 0007 audited nothing: the only entries are 0008's attestations
        # of the rows as they stand.
        assert {(e.action, e.actor) for e in reg.audit_entries()} == {
            ("audit.attest", "migration-0008")
        }
    downgrade(registry_url, "0003")
    engine = make_engine(registry_url)
    try:
        cols = {c["name"] for c in inspect(engine).get_columns("shipments")}
        assert "status" not in cols and "shipper" not in cols
        assert "excursion_acknowledgements" not in inspect(engine).get_table_names()
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM custody_events").scalar() == 3
            assert conn.exec_driver_sql("SELECT ack_by FROM excursions").scalar() == "alice"
    finally:
        engine.dispose()
    assert upgrade(registry_url) == head_revision()
    assert _diff(registry_url) == []


def test_0010_installs_the_guard_functions_audit_guard_restores() -> None:
    """`coldchain init` restores guards from registry/audit_guard.py; the revision must have
    installed the same functions, or a restore would silently change them."""
    from registry.audit_guard import PG_FUNCTIONS

    module = importlib.import_module("registry.migrations.versions.0010_postgres_guards")
    assert list(PG_FUNCTIONS.values()) == module._PG
    assert all("TG_TABLE_NAME" in ddl for ddl in module._PG)


def test_cli_init_upgrades_a_database_of_an_older_release(
    registry_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An upgrade as an operator runs it: the previous release's schema with data, then
    `coldchain init` of this release (to head, guards as this release defines them)."""
    upgrade(registry_url, "0008")
    with open_registry(registry_url, check_schema=False) as reg:
        reg.create_shipment("S1", profile="chilled", actor="api")
    assert main(["init", "--verify-audit", "--registry-url", registry_url]) == 0
    out = capsys.readouterr().out
    assert f"schema at revision {head_revision()}" in out and "restored" not in out
    assert out.splitlines()[-1] == "audit intact"
    with open_registry(registry_url) as reg:
        assert [s.id for s in reg.list_shipments()] == ["S1"]
