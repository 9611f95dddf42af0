"""PostgreSQL: the audit guards' messages name the table they protect.

Revisions 0001 and 0008 gave PostgreSQL one message for every log ("audit_log is append-only",
also on ``audit_read_log``) and one for both heads ("audit head rows cannot be deleted"), where
SQLite's triggers name the table. The two trigger functions are replaced by ones that name
``TG_TABLE_NAME``; the triggers themselves are unchanged. Nothing changes on SQLite.

Downgrading restores revision 0008's functions.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Copies of registry/audit_guard.py's PG_FUNCTIONS as of this revision (a test checks).
_PG = [
    "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql "
    "AS $$ BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$",
    "CREATE OR REPLACE FUNCTION audit_head_guard() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN IF TG_OP <> 'UPDATE' THEN "
    "RAISE EXCEPTION '% rows cannot be deleted', TG_TABLE_NAME; END IF; "
    "IF NEW.seq < OLD.seq THEN RAISE EXCEPTION '% cannot move back', TG_TABLE_NAME; "
    "END IF; RETURN NEW; END $$",
]
_PG_0008 = [
    "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql "
    "AS $$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$",
    "CREATE OR REPLACE FUNCTION audit_head_guard() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN IF TG_OP <> 'UPDATE' THEN RAISE EXCEPTION 'audit head rows cannot be deleted'; "
    "END IF; IF NEW.seq < OLD.seq THEN RAISE EXCEPTION 'an audit head cannot move back'; "
    "END IF; RETURN NEW; END $$",
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for ddl in _PG:
            op.execute(ddl)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for ddl in _PG_0008:
            op.execute(ddl)
