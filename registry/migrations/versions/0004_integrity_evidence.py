"""Integrity evidence: conflicting rewrites of a device's samples (docs/telemetry.md).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "integrity_evidence",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("asset_id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.Column("old_seq", sa.BigInteger(), nullable=False),
        sa.Column("new_seq", sa.BigInteger(), nullable=False),
        sa.Column("changes", sa.Text(), nullable=False),
        sa.Column("kept", sa.String(length=16), nullable=False),
        sa.Column("detected_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_integrity_evidence")),
    )
    op.create_index(
        op.f("ix_integrity_evidence_asset_id_ts_ms"),
        "integrity_evidence",
        ["asset_id", "ts_ms"],
        unique=False,
    )
    op.create_index(
        op.f("ix_integrity_evidence_device_id_ts_ms"),
        "integrity_evidence",
        ["device_id", "ts_ms"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_integrity_evidence_device_id_ts_ms"), table_name="integrity_evidence")
    op.drop_index(op.f("ix_integrity_evidence_asset_id_ts_ms"), table_name="integrity_evidence")
    op.drop_table("integrity_evidence")
