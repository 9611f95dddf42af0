"""Alembic environment for the registry. Run through registry.migrate (which passes the engine
in ``config.attributes["engine"]``) or the ``alembic`` CLI with ``sqlalchemy.url`` set."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from registry.db import make_engine
from registry.models import Base

config = context.config
target_metadata = Base.metadata


def _engine() -> Engine:
    engine = config.attributes.get("engine")
    if isinstance(engine, Engine):
        return engine
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("registry migrations: no engine and no sqlalchemy.url configured")
    return make_engine(url)


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = _engine()
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            # SQLite cannot ALTER most things: future revisions use batch (copy-and-move) mode.
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            # One transaction per revision on every backend (SQLite's DDL is not transactional
            # for Alembic, so it already worked that way): a revision that stops leaves the
            # ones before it applied, on PostgreSQL as on SQLite.
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
