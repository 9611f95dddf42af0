"""Initial registry schema: excursions, profile assignments, rule checkpoints, shipments,
custody events, the hash-chained audit log and its head row.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS = "0" * 64  # prev_hash of the first audit entry (registry.audit.GENESIS)

_SQLITE_TRIGGERS = [
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
    "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
]
_PG_TRIGGERS = [
    "CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$",
    "CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log "
    "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()",
    "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()",
]


def upgrade() -> None:
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_audit_head_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("entity", sa.String(length=64), nullable=False),
        sa.Column("entity_id", sa.String(length=160), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
        sa.UniqueConstraint("hash", name=op.f("uq_audit_log_hash")),
    )
    op.create_index(
        op.f("ix_audit_log_entity_entity_id"), "audit_log", ["entity", "entity_id"], unique=False
    )
    op.create_table(
        "excursions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("asset_id", sa.String(length=64), nullable=False),
        sa.Column("compartment_id", sa.String(length=64), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("start_ms", sa.BigInteger(), nullable=False),
        sa.Column("end_ms", sa.BigInteger(), nullable=True),
        sa.Column("detected_ms", sa.BigInteger(), nullable=False),
        sa.Column("detected_late", sa.Boolean(), nullable=False),
        sa.Column("peak_c", sa.Float(), nullable=True),
        sa.Column("degree_minutes", sa.Float(), nullable=False),
        sa.Column("profile", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("superseded", sa.Boolean(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.Column("ack_by", sa.String(length=200), nullable=True),
        sa.Column("ack_ms", sa.BigInteger(), nullable=True),
        sa.Column("ack_comment", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "severity IN ('info', 'warning', 'critical')", name=op.f("ck_excursions_severity")
        ),
        sa.CheckConstraint(
            "status IN ('open', 'closed', 'recovered')", name=op.f("ck_excursions_status")
        ),
        sa.CheckConstraint(
            "end_ms IS NULL OR end_ms >= start_ms", name=op.f("ck_excursions_end_after_start")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_excursions")),
    )
    op.create_index(
        op.f("ix_excursions_asset_id_compartment_id_start_ms"),
        "excursions",
        ["asset_id", "compartment_id", "start_ms"],
        unique=False,
    )
    op.create_index(op.f("ix_excursions_start_ms"), "excursions", ["start_ms"], unique=False)
    op.create_index(
        op.f("ix_excursions_status_start_ms"), "excursions", ["status", "start_ms"], unique=False
    )
    op.create_table(
        "profile_assignments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("asset_id", sa.String(length=64), nullable=False),
        sa.Column("compartment_id", sa.String(length=64), nullable=False),
        sa.Column("profile", sa.String(length=64), nullable=False),
        sa.Column("from_ms", sa.BigInteger(), nullable=False),
        sa.Column("assigned_by", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("recorded_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_profile_assignments")),
    )
    op.create_index(
        op.f("ix_profile_assignments_asset_id_compartment_id_from_ms"),
        "profile_assignments",
        ["asset_id", "compartment_id", "from_ms"],
        unique=False,
    )
    op.create_table(
        "rule_checkpoints",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_rule_checkpoints")),
    )
    op.create_table(
        "shipments",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("profile", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("origin", sa.String(length=200), nullable=False),
        sa.Column("destination", sa.String(length=200), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shipments")),
    )
    op.create_table(
        "custody_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("shipment_id", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("asset_id", sa.String(length=64), nullable=False),
        sa.Column("compartment_id", sa.String(length=64), nullable=True),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("received_ms", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "action IN ('load', 'unload', 'handover', 'deliver')",
            name=op.f("ck_custody_events_action"),
        ),
        sa.CheckConstraint("source IN ('api', 'mqtt')", name=op.f("ck_custody_events_source")),
        sa.ForeignKeyConstraint(
            ["shipment_id"],
            ["shipments.id"],
            name=op.f("fk_custody_events_shipment_id_shipments"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_custody_events")),
        sa.UniqueConstraint(
            "shipment_id",
            "action",
            "ts_ms",
            "asset_id",
            name=op.f("uq_custody_events_shipment_id_action_ts_ms_asset_id"),
        ),
    )
    op.create_index(
        op.f("ix_custody_events_asset_id_ts_ms"),
        "custody_events",
        ["asset_id", "ts_ms"],
        unique=False,
    )

    # The chain starts empty: head (seq 0, GENESIS). Writers lock and advance this row.
    head = sa.table(
        "audit_head",
        sa.column("id", sa.Integer),
        sa.column("seq", sa.BigInteger),
        sa.column("hash", sa.String),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS}])

    # Defence in depth: the database itself refuses UPDATE/DELETE on the audit log. (Whoever
    # can drop a trigger can still tamper; the hash chain is what makes that detectable.)
    dialect = op.get_bind().dialect.name
    for ddl in (
        _SQLITE_TRIGGERS if dialect == "sqlite" else _PG_TRIGGERS if dialect == "postgresql" else []
    ):
        op.execute(ddl)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.drop_index(op.f("ix_custody_events_asset_id_ts_ms"), table_name="custody_events")
    op.drop_table("custody_events")
    op.drop_table("shipments")
    op.drop_table("rule_checkpoints")
    op.drop_index(
        op.f("ix_profile_assignments_asset_id_compartment_id_from_ms"),
        table_name="profile_assignments",
    )
    op.drop_table("profile_assignments")
    op.drop_index(op.f("ix_excursions_status_start_ms"), table_name="excursions")
    op.drop_index(op.f("ix_excursions_start_ms"), table_name="excursions")
    op.drop_index(op.f("ix_excursions_asset_id_compartment_id_start_ms"), table_name="excursions")
    op.drop_table("excursions")
    op.drop_index(op.f("ix_audit_log_entity_entity_id"), table_name="audit_log")
    op.drop_table("audit_log")  # its triggers go with it
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    op.drop_table("audit_head")
