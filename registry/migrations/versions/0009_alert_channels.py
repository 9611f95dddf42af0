"""Alert channels (issue 11, item 3): one outbox entry per change, delivered per channel.

- ``alert_outbox`` keeps one row per idempotency key (``key`` unique, ``payload``,
  ``created_ms``) and gains ``route_after_ms`` (when routing may take it: at once for a change,
  later for an escalation timer) and ``routed_ms`` (when routing chose its channels); its
  per-channel columns (``channel``, ``topic``, ``attempts``, ``next_attempt_ms``,
  ``delivered_ms``, ``last_error``) move to
- ``alert_deliveries``: one row per (entry, configured channel) with ``state`` (pending,
  delivered, dropped), attempts, next attempt, last error, delivered time and a lease
  (``lease_owner``, ``lease_until_ms``) so two deliverers never send the same row at once.

Existing rows are brought along: each becomes an entry routed at its creation time with its
MQTT delivery (channel ``mqtt``) in the state it had. The table is rebuilt (drop and create,
same ids) rather than altered: SQLite cannot drop a CHECK constraint in place.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OUT = "alert_outbox"
_DEL = "alert_deliveries"


def _rows(sql: str) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in op.get_bind().execute(sa.text(sql))]


def _fix_sequence(table: str) -> None:
    # Rows were inserted with their ids: PostgreSQL's sequence must move past them.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
            f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
        )


def upgrade() -> None:
    old = _rows(f"SELECT * FROM {_OUT} ORDER BY id")
    op.drop_index(op.f("ix_alert_outbox_delivered_ms_next_attempt_ms"), table_name=_OUT)
    op.drop_table(_OUT)
    outbox = op.create_table(
        _OUT,
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("route_after_ms", sa.BigInteger(), nullable=False),
        sa.Column("routed_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_outbox")),
        sa.UniqueConstraint("key", name=op.f("uq_alert_outbox_key")),
    )
    op.create_index(
        op.f("ix_alert_outbox_routed_ms_route_after_ms"), _OUT, ["routed_ms", "route_after_ms"]
    )
    deliveries = op.create_table(
        _DEL,
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_ms", sa.BigInteger(), nullable=False),
        sa.Column("delivered_ms", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("lease_owner", sa.String(length=100), nullable=True),
        sa.Column("lease_until_ms", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "state IN ('pending', 'delivered', 'dropped')", name=op.f("ck_alert_deliveries_state")
        ),
        sa.ForeignKeyConstraint(
            ["outbox_id"],
            ["alert_outbox.id"],
            name=op.f("fk_alert_deliveries_outbox_id_alert_outbox"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_deliveries")),
        sa.UniqueConstraint(
            "outbox_id", "channel", name=op.f("uq_alert_deliveries_outbox_id_channel")
        ),
    )
    op.create_index(
        op.f("ix_alert_deliveries_state_next_attempt_ms"), _DEL, ["state", "next_attempt_ms"]
    )
    if not old:
        return
    op.bulk_insert(
        outbox,
        [
            {
                "id": r["id"],
                "key": r["key"],
                "payload": r["payload"],
                "created_ms": r["created_ms"],
                "route_after_ms": r["created_ms"],
                "routed_ms": r["created_ms"],
            }
            for r in old
        ],
    )
    op.bulk_insert(
        deliveries,
        [
            {
                "outbox_id": r["id"],
                "channel": r["channel"],
                "state": "pending" if r["delivered_ms"] is None else "delivered",
                "attempts": r["attempts"],
                "next_attempt_ms": r["next_attempt_ms"],
                "delivered_ms": r["delivered_ms"],
                "last_error": r["last_error"],
                "lease_owner": None,
                "lease_until_ms": None,
            }
            for r in old
        ],
    )
    _fix_sequence(_OUT)


def downgrade() -> None:
    # Only MQTT deliveries existed before: the others (and escalation timers) are lost.
    old = _rows(
        f"SELECT o.id, o.key, o.payload, o.created_ms, d.attempts, d.next_attempt_ms, "
        f"d.delivered_ms, d.last_error FROM {_OUT} o JOIN {_DEL} d ON d.outbox_id = o.id "
        f"WHERE d.channel = 'mqtt' ORDER BY o.id"
    )
    op.drop_index(op.f("ix_alert_deliveries_state_next_attempt_ms"), table_name=_DEL)
    op.drop_table(_DEL)
    op.drop_index(op.f("ix_alert_outbox_routed_ms_route_after_ms"), table_name=_OUT)
    op.drop_table(_OUT)
    outbox = op.create_table(
        _OUT,
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_ms", sa.BigInteger(), nullable=False),
        sa.Column("delivered_ms", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.CheckConstraint("channel IN ('mqtt')", name=op.f("ck_alert_outbox_channel")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_outbox")),
        sa.UniqueConstraint("channel", "key", name=op.f("uq_alert_outbox_channel_key")),
    )
    op.create_index(
        op.f("ix_alert_outbox_delivered_ms_next_attempt_ms"),
        _OUT,
        ["delivered_ms", "next_attempt_ms"],
    )
    if old:
        op.bulk_insert(
            outbox,
            [
                {
                    **r,
                    "channel": "mqtt",
                    "topic": "coldchain/v1/alerts/"
                    + str(json.loads(r["payload"]).get("asset_id", "unknown")),
                }
                for r in old
            ],
        )
        _fix_sequence(_OUT)
