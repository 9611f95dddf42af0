"""Alert outbox: notifications queued in the transaction that records an excursion change,
delivered at least once by ingest (issue 11, item 3).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alert_outbox",
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
        "alert_outbox",
        ["delivered_ms", "next_attempt_ms"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_alert_outbox_delivered_ms_next_attempt_ms"), table_name="alert_outbox")
    op.drop_table("alert_outbox")
