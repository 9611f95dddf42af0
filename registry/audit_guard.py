"""The database's own guards on the audit chains: triggers that refuse to edit or delete audit
entries, to delete a head row or to move a head back.

Whoever can drop a trigger can then edit at will; the hash chain makes that visible, and this
module makes the missing guard itself visible: ``check_guards`` (run by ``coldchain audit
verify``) names every guard that is missing, disabled or altered, and ``restore_guards`` (run by
``coldchain init``) puts them back. The DDL is the migrations' (0001 for ``audit_log``, 0008
for the rest); a test checks they agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import Connection, text
from sqlalchemy.engine import URL

from registry.db import make_engine, translate_errors

__all__ = ["Guard", "check_guards", "guards_for", "restore_audit_guards", "restore_guards"]


@dataclass(frozen=True, slots=True)
class Guard:
    """One trigger: its name, the table it guards and the DDL that creates it."""

    name: str
    table: str
    ddl: str


def _sqlite_no_change(table: str) -> list[Guard]:
    return [
        Guard(
            f"{table}_no_{op.lower()}",
            table,
            f"CREATE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END",
        )
        for op in ("UPDATE", "DELETE")
    ]


def _sqlite_head(table: str) -> list[Guard]:
    return [
        Guard(
            f"{table}_no_delete",
            table,
            f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} rows cannot be deleted'); END",
        ),
        Guard(
            f"{table}_no_rewind",
            table,
            f"CREATE TRIGGER {table}_no_rewind BEFORE UPDATE ON {table} "
            f"WHEN NEW.seq < OLD.seq "
            f"BEGIN SELECT RAISE(ABORT, '{table} cannot move back'); END",
        ),
    ]


# audit_log's SQLite message predates this module (revision 0001): kept as it is.
SQLITE_GUARDS: tuple[Guard, ...] = (
    *_sqlite_no_change("audit_log"),
    *_sqlite_no_change("audit_read_log"),
    *_sqlite_head("audit_head"),
    *_sqlite_head("audit_read_head"),
)

# PostgreSQL: trigger functions, then per-table triggers (TRUNCATE needs a statement trigger).
# The functions name the table they refuse, like SQLite's messages (as of revision 0010).
PG_FUNCTIONS = {
    "audit_log_append_only": (
        "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql "
        "AS $$ BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$"
    ),
    "audit_head_guard": (
        "CREATE OR REPLACE FUNCTION audit_head_guard() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN IF TG_OP <> 'UPDATE' THEN "
        "RAISE EXCEPTION '% rows cannot be deleted', TG_TABLE_NAME; END IF; "
        "IF NEW.seq < OLD.seq THEN RAISE EXCEPTION '% cannot move back', TG_TABLE_NAME; "
        "END IF; RETURN NEW; END $$"
    ),
}


def _pg_log(table: str, prefix: str) -> list[Guard]:
    return [
        Guard(
            f"{prefix}_no_change",
            table,
            f"CREATE TRIGGER {prefix}_no_change BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()",
        ),
        Guard(
            f"{prefix}_no_truncate",
            table,
            f"CREATE TRIGGER {prefix}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()",
        ),
    ]


def _pg_head(table: str) -> list[Guard]:
    return [
        Guard(
            f"{table}_guard",
            table,
            f"CREATE TRIGGER {table}_guard BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION audit_head_guard()",
        ),
        Guard(
            f"{table}_no_truncate",
            table,
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()",
        ),
    ]


PG_GUARDS: tuple[Guard, ...] = (
    *_pg_log("audit_log", "audit_log"),
    *_pg_log("audit_read_log", "audit_read_log"),
    *_pg_head("audit_head"),
    *_pg_head("audit_read_head"),
)


def guards_for(dialect: str) -> tuple[Guard, ...]:
    """The guards a database of this dialect must have (none for other backends)."""
    return SQLITE_GUARDS if dialect == "sqlite" else PG_GUARDS if dialect == "postgresql" else ()


def _normalised(sql: str) -> str:
    return re.sub(r"\s+", " ", sql).strip().rstrip(";").lower()


def _bad_guards(conn: Connection) -> list[tuple[Guard, str]]:
    dialect = conn.dialect.name
    bad: list[tuple[Guard, str]] = []
    if dialect == "sqlite":
        found = {
            str(row.name): (str(row.tbl_name), str(row.sql or ""))
            for row in conn.execute(
                text("SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'trigger'")
            )
        }
        for guard in SQLITE_GUARDS:
            have = found.get(guard.name)
            if have is None:
                bad.append((guard, f"trigger {guard.name} on {guard.table} is missing (dropped)"))
            elif have[0] != guard.table or _normalised(have[1]) != _normalised(guard.ddl):
                bad.append((guard, f"trigger {guard.name} on {guard.table} was altered"))
    elif dialect == "postgresql":
        rows = conn.execute(
            text(
                "SELECT t.tgname, c.relname, t.tgenabled, p.proname, p.prosrc "
                "FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "JOIN pg_proc p ON p.oid = t.tgfoid WHERE NOT t.tgisinternal"
            )
        )
        found_pg = {str(r.tgname): r for r in rows}
        for guard in PG_GUARDS:
            row = found_pg.get(guard.name)
            if row is None or row.relname != guard.table:
                bad.append((guard, f"trigger {guard.name} on {guard.table} is missing (dropped)"))
            elif row.tgenabled == "D":
                bad.append((guard, f"trigger {guard.name} on {guard.table} is disabled"))
            elif "RAISE EXCEPTION" not in str(row.prosrc):
                bad.append((guard, f"function {row.proname} of trigger {guard.name} was altered"))
    return bad


def check_guards(conn: Connection) -> list[str]:
    """Problems with the guards, one sentence each (empty: all present, enabled, unaltered)."""
    return [problem for _guard, problem in _bad_guards(conn)]


def restore_guards(conn: Connection) -> list[str]:
    """Create again every guard that is missing, disabled or altered; returns their names.
    Runs in the caller's transaction (``coldchain init``, after migrating)."""
    bad = _bad_guards(conn)
    if not bad:
        return []
    dialect = conn.dialect.name
    if dialect == "postgresql":
        for ddl in PG_FUNCTIONS.values():
            conn.execute(text(ddl))
    for guard, _problem in bad:
        on = f" ON {guard.table}" if dialect == "postgresql" else ""
        conn.execute(text(f"DROP TRIGGER IF EXISTS {guard.name}{on}"))
        conn.execute(text(guard.ddl))
    return [guard.name for guard, _problem in bad]


def restore_audit_guards(url: str | URL) -> list[str]:
    """``restore_guards`` on the database at ``url`` in one transaction (``coldchain init``)."""
    engine = make_engine(url)
    try:
        with translate_errors("restoring the audit guards", url), engine.begin() as conn:
            return restore_guards(conn)
    finally:
        engine.dispose()
