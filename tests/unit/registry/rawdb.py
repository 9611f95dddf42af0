"""Direct database access for tamper tests, on SQLite or PostgreSQL: what someone holding the
database's own credentials could do, bypassing the registry (SQLAlchemy Core, no ORM hooks)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from registry import make_engine


def _guard_triggers(conn: Any) -> list[tuple[str, str]]:
    if conn.dialect.name == "sqlite":
        rows = conn.execute(text("SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger'"))
    else:
        rows = conn.execute(
            text(
                "SELECT t.tgname, c.relname FROM pg_trigger t "
                "JOIN pg_class c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal"
            )
        )
    return [(str(r[0]), str(r[1])) for r in rows]


def drop_trigger(conn: Any, name: str, table: str) -> None:
    on = f" ON {table}" if conn.dialect.name == "postgresql" else ""
    conn.execute(text(f"DROP TRIGGER {name}{on}"))


def execute(url: str, *statements: str, drop_guards: bool = False) -> None:
    """Run ``statements`` in one transaction, after dropping every trigger if asked."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            if drop_guards:
                for name, table in _guard_triggers(conn):
                    drop_trigger(conn, name, table)
            for stmt in statements:
                conn.exec_driver_sql(stmt)
    finally:
        engine.dispose()


def query(url: str, sql: str) -> list[dict[str, Any]]:
    """The rows of ``sql`` as dicts (column name -> value)."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(text(sql))]
    finally:
        engine.dispose()


def triggers(url: str) -> set[str]:
    """Names of the (non-internal) triggers in the database."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {name for name, _ in _guard_triggers(conn)}
    finally:
        engine.dispose()
