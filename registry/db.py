"""Engine and session factory for the registry database, and the error boundary.

Nothing here connects at import time; ``make_engine`` only parses the URL and builds a lazy
engine. SQLite connections get WAL, foreign keys and a busy timeout, and SQLAlchemy (not the
sqlite3 module's legacy mode) emits BEGIN, so SELECTs run inside the transaction and DDL is
transactional (see the SQLAlchemy SQLite dialect docs, "Enabling Non-Legacy SQLite Transactional
Modes").
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from coldchain.exceptions import RecordRejected, StoreError

__all__ = [
    "SQLITE_BUSY_TIMEOUT_MS",
    "make_engine",
    "make_session_factory",
    "redacted",
    "translate_errors",
]

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 10_000


def redacted(url: str | URL) -> str:
    """The URL with any password masked, for messages and logs."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError:
        return "<unparseable URL>"
    return parsed.render_as_string(hide_password=True)


def make_engine(url: str | URL, *, echo: bool = False) -> Engine:
    """A lazy engine for ``url``; raises StoreError if the URL is malformed or names a driver
    that is not installed. A missing parent directory of a SQLite file is created; pooled
    connections to a server (PostgreSQL) are checked before use."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError as exc:
        raise StoreError(
            f"registry URL {url!r} is not a database URL (expected e.g. "
            f"'sqlite:///var/registry.sqlite3' or 'postgresql+psycopg://user@host/db'): {exc}"
        ) from exc
    is_sqlite = parsed.get_backend_name() == "sqlite"
    db = parsed.database
    if is_sqlite and db and db != ":memory:" and not db.startswith("file:"):
        Path(db).parent.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {}
    if not is_sqlite:
        # A server restart or failover leaves dead pooled connections: test each at checkout
        # rather than fail the next call.
        options["pool_pre_ping"] = True
    try:
        engine = create_engine(parsed, echo=echo, **options)
    except (NoSuchModuleError, ImportError) as exc:
        raise StoreError(
            f"registry URL {redacted(parsed)}: database driver not available ({exc}); "
            "PostgreSQL needs e.g. 'pip install psycopg[binary]' and a "
            "'postgresql+psycopg://' URL"
        ) from exc
    except (ArgumentError, SQLAlchemyError) as exc:
        raise StoreError(f"registry URL {redacted(parsed)}: {exc}") from exc
    if is_sqlite:
        _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take BEGIN away from the sqlite3 module (legacy mode skips it before SELECT and DDL).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if engine.url.database not in (None, "", ":memory:"):
                cursor.execute("PRAGMA journal_mode = WAL")
                # The registry is the regulatory record and writes are few: fsync every commit.
                cursor.execute("PRAGMA synchronous = FULL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that do not expire objects on commit (the registry returns plain values), and
    that refuse to commit a change to a protected table no audit entry covers
    (registry/audit_records.py)."""
    from registry import audit_records

    factory = sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)
    audit_records.install(factory)
    return factory


@contextmanager
def translate_errors(what: str, url: str | URL) -> Iterator[None]:
    """Map SQLAlchemy/DBAPI errors to StoreError (transient) or RecordRejected (for good)."""
    try:
        yield
    except IntegrityError as exc:
        raise RecordRejected(f"{what}: constraint violated: {_first_line(exc)}") from exc
    except SQLAlchemyError as exc:
        raise StoreError(f"{what} on {redacted(url)} failed: {_first_line(exc)}") from exc


def _first_line(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig) if orig is not None else str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
