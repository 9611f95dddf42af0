"""Write API (issue 10, item 1): shipment business facts and status, custody event ids,
acknowledgement history.

- ``shipments``: ``shipper``, ``consignee``, ``quantity`` + ``unit``, ``planned_departure_ms``,
  ``planned_arrival_ms``; ``status`` (registered, in_custody, delivered, cancelled) with the
  custody span ``custody_from_ms``/``custody_to_ms`` (derived from the scans and kept current
  by every scan, so listings filter on them); ``cancelled_ms``/``cancelled_by``/
  ``cancel_reason``; ``updated_ms``; ``create_body`` (the canonical create request an
  idempotent create is compared with). Indexes for the listing filters.
- ``custody_events.event_id``: the caller's id of an event posted over HTTP (unique; NULL for
  MQTT scans).
- ``excursion_acknowledgements``: every acknowledgement (who, role, key id, when, comment, root
  cause, disposition), append-only like the audit log (triggers refuse UPDATE and DELETE);
  ``excursions.ack_disposition`` and ``ack_count`` repeat the latest for listings.

Existing rows are brought along in the same transaction, without audit entries (nothing
happened; these are derived values or copies of audited ones): each shipment's status and
custody span from its scans, its ``create_body`` from its columns, ``updated_ms`` =
``created_ms``; each acknowledged excursion's acknowledgement becomes history entry 1 (no
root cause, disposition NULL: not recorded then).

SQLite cannot add a constraint to an existing table without rebuilding it, and rebuilding
``shipments`` would trip the foreign key of ``custody_events``: columns are added with
``ALTER TABLE ... ADD COLUMN`` (the status CHECK as a column constraint), the event-id
uniqueness is a unique index.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-10
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from registry.audit import canonical_json
from registry.custody import derive_legs, shipment_state
from registry.records import CustodyEvent

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUS_CHECK = "status IN ('registered', 'in_custody', 'delivered', 'cancelled')"
_DISPOSITION_CHECK = (
    "disposition IN ('pending', 'quarantined', 'released', 'returned', 'destroyed', 'not_affected')"
)
_ACKS = "excursion_acknowledgements"
_SQLITE_TRIGGERS = [
    f"CREATE TRIGGER {_ACKS}_no_update BEFORE UPDATE ON {_ACKS} "
    f"BEGIN SELECT RAISE(ABORT, '{_ACKS} is append-only'); END",
    f"CREATE TRIGGER {_ACKS}_no_delete BEFORE DELETE ON {_ACKS} "
    f"BEGIN SELECT RAISE(ABORT, '{_ACKS} is append-only'); END",
]
_PG_TRIGGERS = [
    f"CREATE FUNCTION {_ACKS}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
    f"BEGIN RAISE EXCEPTION '{_ACKS} is append-only'; END $$",
    f"CREATE TRIGGER {_ACKS}_no_change BEFORE UPDATE OR DELETE ON {_ACKS} "
    f"FOR EACH ROW EXECUTE FUNCTION {_ACKS}_append_only()",
    f"CREATE TRIGGER {_ACKS}_no_truncate BEFORE TRUNCATE ON {_ACKS} "
    f"FOR EACH STATEMENT EXECUTE FUNCTION {_ACKS}_append_only()",
]

_SHIPMENT_COLUMNS: list[sa.Column[Any]] = [
    sa.Column("shipper", sa.String(200), server_default="", nullable=False),
    sa.Column("consignee", sa.String(200), server_default="", nullable=False),
    sa.Column("quantity", sa.Float(), nullable=True),
    sa.Column("unit", sa.String(32), nullable=True),
    sa.Column("planned_departure_ms", sa.BigInteger(), nullable=True),
    sa.Column("planned_arrival_ms", sa.BigInteger(), nullable=True),
    # "status" is added apart: it carries a CHECK constraint.
    sa.Column("custody_from_ms", sa.BigInteger(), nullable=True),
    sa.Column("custody_to_ms", sa.BigInteger(), nullable=True),
    sa.Column("cancelled_ms", sa.BigInteger(), nullable=True),
    sa.Column("cancelled_by", sa.String(200), nullable=True),
    sa.Column("cancel_reason", sa.Text(), nullable=True),
    sa.Column("updated_ms", sa.BigInteger(), server_default="0", nullable=False),
    sa.Column("create_body", sa.Text(), nullable=True),
]
_SHIPMENT_INDEXES = {
    "ix_shipments_shipper_id": ["shipper", "id"],
    "ix_shipments_status_id": ["status", "id"],
    "ix_shipments_created_ms": ["created_ms"],
    "ix_shipments_custody_from_ms": ["custody_from_ms"],
}
_CREATE_FIELDS = (
    "profile",
    "description",
    "shipper",
    "consignee",
    "quantity",
    "unit",
    "origin",
    "destination",
    "planned_departure_ms",
    "planned_arrival_ms",
)

# The tables as this revision knows them (not the ORM models, which later revisions change).
_shipments = sa.table(
    "shipments",
    sa.column("id", sa.String),
    sa.column("profile", sa.String),
    sa.column("description", sa.Text),
    sa.column("origin", sa.String),
    sa.column("destination", sa.String),
    sa.column("created_ms", sa.BigInteger),
    sa.column("status", sa.String),
    sa.column("custody_from_ms", sa.BigInteger),
    sa.column("custody_to_ms", sa.BigInteger),
    sa.column("updated_ms", sa.BigInteger),
    sa.column("create_body", sa.Text),
)
_custody = sa.table(
    "custody_events",
    sa.column("id", sa.Integer),
    sa.column("shipment_id", sa.String),
    sa.column("action", sa.String),
    sa.column("asset_id", sa.String),
    sa.column("compartment_id", sa.String),
    sa.column("ts_ms", sa.BigInteger),
    sa.column("actor", sa.String),
    sa.column("source", sa.String),
    sa.column("received_ms", sa.BigInteger),
)
_excursions = sa.table(
    "excursions",
    sa.column("id", sa.String),
    sa.column("ack_by", sa.String),
    sa.column("ack_ms", sa.BigInteger),
    sa.column("ack_comment", sa.Text),
    sa.column("ack_count", sa.Integer),
)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for column in _SHIPMENT_COLUMNS:
        op.add_column("shipments", column)
    if dialect == "sqlite":
        op.execute(
            "ALTER TABLE shipments ADD COLUMN status VARCHAR(16) DEFAULT 'registered' NOT NULL "
            f"CONSTRAINT ck_shipments_status CHECK ({_STATUS_CHECK})"
        )
    else:
        op.add_column(
            "shipments",
            sa.Column("status", sa.String(16), server_default="registered", nullable=False),
        )
        op.create_check_constraint(op.f("ck_shipments_status"), "shipments", _STATUS_CHECK)
    for name, columns in _SHIPMENT_INDEXES.items():
        op.create_index(op.f(name), "shipments", columns)

    op.add_column("custody_events", sa.Column("event_id", sa.String(128), nullable=True))
    op.create_index(op.f("ix_custody_events_event_id"), "custody_events", ["event_id"], unique=True)

    op.add_column("excursions", sa.Column("ack_disposition", sa.String(16), nullable=True))
    op.add_column(
        "excursions", sa.Column("ack_count", sa.Integer(), server_default="0", nullable=False)
    )
    acks = op.create_table(
        _ACKS,
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("excursion_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("ack_ms", sa.BigInteger(), nullable=False),
        sa.Column("by", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=True),
        sa.Column("key_id", sa.String(64), nullable=True),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("root_cause", sa.Text(), nullable=False),
        sa.Column("disposition", sa.String(16), nullable=True),
        sa.CheckConstraint(_DISPOSITION_CHECK, name=op.f(f"ck_{_ACKS}_disposition")),
        sa.ForeignKeyConstraint(
            ["excursion_id"],
            ["excursions.id"],
            name=op.f(f"fk_{_ACKS}_excursion_id_excursions"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{_ACKS}")),
        sa.UniqueConstraint("excursion_id", "seq", name=op.f(f"uq_{_ACKS}_excursion_id_seq")),
    )
    _backfill(op.get_bind(), acks)
    for ddl in (
        _SQLITE_TRIGGERS if dialect == "sqlite" else _PG_TRIGGERS if dialect == "postgresql" else []
    ):
        op.execute(ddl)


def _backfill(conn: sa.Connection, acks: sa.Table) -> None:
    events: dict[str, list[CustodyEvent]] = defaultdict(list)
    for r in conn.execute(sa.select(_custody)):
        events[r.shipment_id].append(
            CustodyEvent(
                id=r.id,
                shipment_id=r.shipment_id,
                action=r.action,
                asset_id=r.asset_id,
                compartment_id=r.compartment_id,
                ts_ms=r.ts_ms,
                actor=r.actor,
                source=r.source,
                received_ms=r.received_ms,
            )
        )
    for row in conn.execute(sa.select(_shipments)).all():
        status, from_ms, to_ms = shipment_state(derive_legs(events.get(row.id, [])))
        fields: dict[str, Any] = {name: None for name in _CREATE_FIELDS}
        fields |= {"shipper": "", "consignee": ""}
        fields |= {
            name: getattr(row, name) for name in ("profile", "description", "origin", "destination")
        }
        conn.execute(
            sa.update(_shipments)
            .where(_shipments.c.id == row.id)
            .values(
                status=status,
                custody_from_ms=from_ms,
                custody_to_ms=to_ms,
                updated_ms=row.created_ms,
                create_body=canonical_json(fields),
            )
        )
    acked = conn.execute(
        sa.select(_excursions).where(_excursions.c.ack_ms.is_not(None)).order_by(_excursions.c.id)
    ).all()
    for row in acked:
        conn.execute(
            sa.insert(acks).values(
                excursion_id=row.id,
                seq=1,
                ack_ms=row.ack_ms,
                by=row.ack_by or "",
                role=None,
                key_id=None,
                comment=row.ack_comment or "",
                root_cause="",
                disposition=None,
            )
        )
        conn.execute(sa.update(_excursions).where(_excursions.c.id == row.id).values(ack_count=1))


def downgrade() -> None:
    # The history table goes (its triggers with it); the latest acknowledgement stays on the
    # excursion row, as before this revision.
    dialect = op.get_bind().dialect.name
    op.drop_table(_ACKS)
    if dialect == "postgresql":
        op.execute(f"DROP FUNCTION IF EXISTS {_ACKS}_append_only()")
    op.drop_index(op.f("ix_custody_events_event_id"), table_name="custody_events")
    for name in _SHIPMENT_INDEXES:
        op.drop_index(op.f(name), table_name="shipments")
    drops = [
        ("excursions", "ack_count"),
        ("excursions", "ack_disposition"),
        ("custody_events", "event_id"),
        ("shipments", "status"),
        *(("shipments", c.name) for c in reversed(_SHIPMENT_COLUMNS)),
    ]
    for table, column in drops:
        if dialect == "sqlite":
            # Native DROP COLUMN (SQLite >= 3.35): a batch rebuild of shipments would trip the
            # foreign key of custody_events.
            op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        else:
            op.drop_column(table, column)
