"""Spool identities: which spool each ingest client writes, so a deleted, replaced or
rolled-back spool is noticed at start-up (issue 8, failure 6).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "spool_identities",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("spool_id", sa.String(length=64), nullable=False),
        sa.Column("spool_path", sa.Text(), nullable=False),
        sa.Column("high_water", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.Column("problem", sa.String(length=32), nullable=True),
        sa.Column("problem_detail", sa.Text(), nullable=False),
        sa.Column("problem_ms", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "problem IS NULL OR problem IN ('spool_replaced', 'spool_corrupt')",
            name=op.f("ck_spool_identities_problem"),
        ),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_spool_identities")),
    )


def downgrade() -> None:
    op.drop_table("spool_identities")
