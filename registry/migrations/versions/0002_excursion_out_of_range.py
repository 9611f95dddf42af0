"""Excursions: the time actually out of range and the last return within the limits
(``out_of_range_s``, ``returned_ms``; issue 9). Both nullable: NULL for kinds without
temperature limits and for rows written before this revision (unknown, not zero).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("excursions") as batch:
        batch.add_column(sa.Column("out_of_range_s", sa.Float(), nullable=True))
        batch.add_column(sa.Column("returned_ms", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("excursions") as batch:
        batch.drop_column("returned_ms")
        batch.drop_column("out_of_range_s")
