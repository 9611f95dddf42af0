"""API keys as records, a read chain, guarded heads, and record digests for existing rows.

- ``api_keys``: keys stored as SHA-256 of their secret, with role, expiry, revocation and a
  regulator's scope (registry/keys.py);
- ``audit_read_log`` and ``audit_read_head``: the read chain (regulator reads), same recipe
  as ``audit_log``, its own head so reads never wait on the writers' lock; append-only
  triggers like ``audit_log``'s;
- triggers that refuse to delete either head row or move it back (a cut tail with the head
  moved to match needs them dropped first, and ``coldchain audit verify`` notices that);
- every row already in a protected table is attested: one ``audit.attest`` entry per 500 rows
  with their digests (registry/audit_records.py), so verification can compare the tables
  with the chain from here on. Rows written before this revision are vouched for as they stand
  now; the entries before them still show how they got there.

Downgrading drops the keys, the read chain and the new triggers; the attest entries stay (they
are valid entries of the writes chain under the same recipe).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from registry.audit import attest_tables

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS = "0" * 64
ACTOR = "migration-0008"

# Copies of registry/audit_guard.py's DDL as of this revision (a test checks they agree).
_SQLITE = [
    "CREATE TRIGGER audit_read_log_no_update BEFORE UPDATE ON audit_read_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_read_log is append-only'); END",
    "CREATE TRIGGER audit_read_log_no_delete BEFORE DELETE ON audit_read_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_read_log is append-only'); END",
]
for _head in ("audit_head", "audit_read_head"):
    _SQLITE += [
        f"CREATE TRIGGER {_head}_no_delete BEFORE DELETE ON {_head} "
        f"BEGIN SELECT RAISE(ABORT, '{_head} rows cannot be deleted'); END",
        f"CREATE TRIGGER {_head}_no_rewind BEFORE UPDATE ON {_head} WHEN NEW.seq < OLD.seq "
        f"BEGIN SELECT RAISE(ABORT, '{_head} cannot move back'); END",
    ]
_PG = [
    "CREATE OR REPLACE FUNCTION audit_head_guard() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN IF TG_OP <> 'UPDATE' THEN RAISE EXCEPTION 'audit head rows cannot be deleted'; "
    "END IF; IF NEW.seq < OLD.seq THEN RAISE EXCEPTION 'an audit head cannot move back'; "
    "END IF; RETURN NEW; END $$",
    "CREATE TRIGGER audit_read_log_no_change BEFORE UPDATE OR DELETE ON audit_read_log "
    "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()",
    "CREATE TRIGGER audit_read_log_no_truncate BEFORE TRUNCATE ON audit_read_log "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()",
]
for _head in ("audit_head", "audit_read_head"):
    _PG += [
        f"CREATE TRIGGER {_head}_guard BEFORE UPDATE OR DELETE ON {_head} "
        "FOR EACH ROW EXECUTE FUNCTION audit_head_guard()",
        f"CREATE TRIGGER {_head}_no_truncate BEFORE TRUNCATE ON {_head} "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()",
    ]
_TRIGGERS = {
    "sqlite": [
        "audit_read_log_no_update",
        "audit_read_log_no_delete",
        "audit_head_no_delete",
        "audit_head_no_rewind",
        "audit_read_head_no_delete",
        "audit_read_head_no_rewind",
    ],
    "postgresql": [
        "audit_head_guard ON audit_head",
        "audit_head_no_truncate ON audit_head",
        "audit_read_head_guard ON audit_read_head",
        "audit_read_head_no_truncate ON audit_read_head",
    ],
}


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=True),
        sa.Column("revoked_ms", sa.BigInteger(), nullable=True),
        sa.Column("revoked_by", sa.String(length=200), nullable=True),
        sa.Column("scope_shippers", sa.Text(), nullable=True),
        sa.Column("scope_shipments", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "role IN ('admin', 'operator', 'integrator', 'regulator')",
            name=op.f("ck_api_keys_role"),
        ),
        sa.CheckConstraint(
            "role = 'regulator' OR (scope_shippers IS NULL AND scope_shipments IS NULL)",
            name=op.f("ck_api_keys_scope_regulator_only"),
        ),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_api_keys")),
    )
    op.create_index(op.f("ix_api_keys_secret_sha256"), "api_keys", ["secret_sha256"], unique=True)
    op.create_table(
        "audit_read_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_audit_read_head_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_read_head")),
    )
    op.create_table(
        "audit_read_log",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("entity", sa.String(length=64), nullable=False),
        sa.Column("entity_id", sa.String(length=160), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_read_log")),
        sa.UniqueConstraint("hash", name=op.f("uq_audit_read_log_hash")),
    )
    op.create_index(
        op.f("ix_audit_read_log_entity_entity_id"),
        "audit_read_log",
        ["entity", "entity_id"],
        unique=False,
    )
    head = sa.table(
        "audit_read_head",
        sa.column("id", sa.Integer),
        sa.column("seq", sa.BigInteger),
        sa.column("hash", sa.String),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS}])

    bind = op.get_bind()
    dialect = bind.dialect.name
    for ddl in _SQLITE if dialect == "sqlite" else _PG if dialect == "postgresql" else []:
        op.execute(ddl)
    attest_tables(
        bind,
        actor=ACTOR,
        reason="revision 0008: rows as they stood when record digests were introduced",
        ts_ms=time.time_ns() // 1_000_000,
    )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for trigger in _TRIGGERS.get(dialect, []):
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS audit_head_guard()")
    op.drop_index(op.f("ix_audit_read_log_entity_entity_id"), table_name="audit_read_log")
    op.drop_table("audit_read_log")  # its triggers go with it
    op.drop_table("audit_read_head")
    op.drop_index(op.f("ix_api_keys_secret_sha256"), table_name="api_keys")
    op.drop_table("api_keys")
