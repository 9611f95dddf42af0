"""Fresh migrated registry databases on the session's PostgreSQL server, fast.

A copy of a migrated template (CREATE DATABASE ... TEMPLATE) costs most of a second on a busy
2-core machine; emptying a used one costs a few milliseconds. So a database a test used is
emptied (TRUNCATE ... RESTART IDENTITY, with triggers off for that session only, then the
template's seed rows put back) and handed to the next test, but only if its schema is still
exactly the template's: same tables and columns, indexes, triggers (and whether enabled),
trigger functions, Alembic revision. A test that dropped a trigger, altered a function or
downgraded leaves a database that is dropped instead, never reused.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import psycopg
from psycopg import sql

from deploy.postgres import Postgres
from registry import upgrade

__all__ = ["PgDatabases"]

_SCHEMA_FINGERPRINT = """
SELECT md5(coalesce(string_agg(x, '|' ORDER BY x), '')) FROM (
  SELECT 'c:' || table_name || '.' || column_name || ':' || data_type || ':' || is_nullable
    || ':' || coalesce(column_default, '')
    FROM information_schema.columns WHERE table_schema = 'public'
  UNION ALL SELECT 'i:' || indexname || ':' || indexdef FROM pg_indexes
    WHERE schemaname = 'public'
  UNION ALL SELECT 'k:' || conname || ':' || pg_get_constraintdef(oid) FROM pg_constraint
    WHERE connamespace = 'public'::regnamespace
  UNION ALL SELECT 't:' || t.tgname || ':' || t.tgenabled::text || ':' || pg_get_triggerdef(t.oid)
    FROM pg_trigger t WHERE NOT t.tgisinternal
  UNION ALL SELECT 'p:' || proname || ':' || prosrc FROM pg_proc
    WHERE pronamespace = 'public'::regnamespace
  UNION ALL SELECT 'v:' || version_num FROM alembic_version
) AS s(x)
"""

_TABLES = "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"


class PgDatabases:
    """Hands out migrated databases (``take``) and takes them back (``give_back``)."""

    def __init__(self, server: Postgres, template: str = "registry_template") -> None:
        self.server = server
        self.template = template
        self._names = itertools.count(1)
        self._free: list[str] = []
        upgrade(server.create_database(template))  # disposes its engine: no session left
        with self._connect(template) as conn:
            self._fingerprint = self._schema(conn)
            self._tables = [str(r[0]) for r in conn.execute(_TABLES)]
            self._seed: dict[str, list[tuple[Any, ...]]] = {}
            for table in self._tables:
                if table == "alembic_version":
                    continue
                rows = conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table)))
                found = rows.fetchall()
                if found:
                    self._seed[table] = found

    def _connect(self, database: str) -> psycopg.Connection[Any]:
        return psycopg.connect(self.server._conninfo(database), autocommit=True)

    @staticmethod
    def _schema(conn: psycopg.Connection[Any]) -> str:
        row = conn.execute(_SCHEMA_FINGERPRINT).fetchone()
        return str(row[0]) if row else ""

    def take(self) -> tuple[str, str]:
        """(name, SQLAlchemy URL) of a database in the template's state."""
        if self._free:
            name = self._free.pop()
        else:
            name = f"reg{os.getpid()}_{next(self._names)}"
            self.server.create_database(name, template=self.template)
        return name, self.server.url_for(name)

    def give_back(self, name: str) -> None:
        """Empty ``name`` for the next test, or drop it if its schema changed."""
        try:
            reusable = self._reset(name)
        except psycopg.Error:
            reusable = False
        if reusable:
            self._free.append(name)
        else:
            self.server.drop_database(name)

    def _reset(self, name: str) -> bool:
        with self._connect(name) as conn:
            # A session the test left open would hold locks: end it rather than wait.
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            if self._schema(conn) != self._fingerprint:
                return False
            with conn.transaction():
                conn.execute("SET LOCAL lock_timeout = '5s'")
                # Triggers off for this transaction: the audit tables refuse TRUNCATE otherwise.
                conn.execute("SET LOCAL session_replication_role = replica")
                tables = [t for t in self._tables if t != "alembic_version"]
                conn.execute(
                    sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
                        sql.SQL(", ").join(sql.Identifier(t) for t in tables)
                    )
                )
                for table, rows in self._seed.items():
                    marks = sql.SQL(", ").join(sql.Placeholder() * len(rows[0]))
                    insert = sql.SQL("INSERT INTO {} VALUES ({})").format(
                        sql.Identifier(table), marks
                    )
                    with conn.cursor() as cur:
                        cur.executemany(insert, rows)
        return True
