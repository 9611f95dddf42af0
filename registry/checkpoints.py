"""Rules-engine checkpoints: opaque JSON-able dicts by key (e.g. "asset/compartment").

Not audited: a checkpoint is a cache of the streaming evaluator's state that batch recomputation
can rebuild, saved far more often than anything a regulator asks about (docs/registry.md).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from coldchain.exceptions import RecordRejected
from registry.models import CheckpointRow

__all__ = ["dumps", "load", "load_prefix", "save"]


def dumps(key: str, state: Mapping[str, Any]) -> str:
    try:
        # NaN/Infinity are allowed (Python's json reads them back): evaluator state may hold them.
        return json.dumps(dict(state), sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise RecordRejected(f"checkpoint {key!r}: state is not JSON-serialisable: {exc}") from exc


def save(session: Session, key: str, state: Mapping[str, Any], now_ms: int) -> None:
    """Insert or replace one checkpoint, race-free without taking the writers' lock.

    INSERT ... ON CONFLICT DO UPDATE exists with the same syntax on SQLite (>= 3.24) and
    PostgreSQL; other backends fall back to read-then-write.
    """
    text = dumps(key, state)
    dialect = session.get_bind().dialect.name
    values = {"key": key, "state": text, "updated_ms": now_ms}
    if dialect in ("sqlite", "postgresql"):
        insert = sqlite_insert if dialect == "sqlite" else pg_insert
        stmt = insert(CheckpointRow).values(**values)
        session.execute(
            stmt.on_conflict_do_update(
                index_elements=[CheckpointRow.key],
                set_={"state": stmt.excluded.state, "updated_ms": stmt.excluded.updated_ms},
            )
        )
        return
    row = session.get(CheckpointRow, key)
    if row is None:
        session.add(CheckpointRow(**values))
    else:
        row.state = text
        row.updated_ms = now_ms


def load(session: Session, key: str) -> dict[str, Any] | None:
    text = session.execute(
        select(CheckpointRow.state).where(CheckpointRow.key == key)
    ).scalar_one_or_none()
    return None if text is None else _loads(text)


def load_prefix(session: Session, prefix: str) -> dict[str, dict[str, Any]]:
    query = select(CheckpointRow.key, CheckpointRow.state).order_by(CheckpointRow.key)
    if prefix:
        # Not LIKE: SQLite's ignores ASCII case ("TRUCK-1/" would match "truck-1/..."), while
        # PostgreSQL's does not. A substring equality is exact on both, wildcards or not.
        query = query.where(func.substr(CheckpointRow.key, 1, len(prefix)) == prefix)
    return {key: _loads(text) for key, text in session.execute(query).all()}


def _loads(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise RecordRejected(f"checkpoint is not a JSON object: {text[:80]!r}")
    return value
