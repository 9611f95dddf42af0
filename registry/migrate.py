"""Alembic migrations, driven programmatically (no alembic.ini needed, works from a wheel).

``upgrade(url)`` is what ``coldchain init`` and the tests run. The engine comes from
``registry.db.make_engine`` (so SQLite gets its pragmas and transactional DDL) and is handed to
``migrations/env.py`` through ``Config.attributes``; the URL never goes through ConfigParser
(where a ``%`` in a password would break interpolation).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from coldchain.exceptions import StoreError
from registry.db import make_engine, redacted, translate_errors

__all__ = [
    "MIGRATIONS_DIR",
    "alembic_config",
    "check_schema",
    "current_revision",
    "downgrade",
    "head_revision",
    "upgrade",
]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(engine: Engine | None = None) -> Config:
    """An Alembic Config pointing at registry/migrations; ``engine`` is what env.py migrates."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships 0001
        raise StoreError("registry migrations: no head revision found")
    return head


def current_revision(engine: Engine) -> str | None:
    with (
        translate_errors("reading the registry schema revision", engine.url),
        engine.connect() as conn,
    ):
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(url: str | URL, revision: str = "head") -> str:
    """Migrate the database at ``url`` to ``revision``; returns the revision now current."""
    engine = make_engine(url)
    try:
        with translate_errors(f"migrating the registry to {revision}", url):
            command.upgrade(alembic_config(engine), revision)
        current = current_revision(engine)
    finally:
        engine.dispose()
    return current or ""


def downgrade(url: str | URL, revision: str) -> str | None:
    engine = make_engine(url)
    try:
        with translate_errors(f"downgrading the registry to {revision}", url):
            command.downgrade(alembic_config(engine), revision)
        return current_revision(engine)
    finally:
        engine.dispose()


def check_schema(engine: Engine) -> None:
    """Raise StoreError unless the database is migrated to exactly this code's head."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        state = "not initialised" if current is None else f"at schema revision {current}"
        raise StoreError(
            f"registry database {redacted(engine.url)} is {state}; this code needs {head}: "
            "run `coldchain init`"
        )
