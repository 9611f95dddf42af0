"""Record coverage: each audit entry carries the digests of the rows its change left behind.

A hash chain proves the log was not edited; it says nothing about the tables the API serves.
So every entry on the writes chain records, under ``payload["_records"]``, one item per
protected row the transaction changed since the previous entry::

    {"table": "shipments", "key": ["SHP-1"], "sha256": "<row digest>"}   # "sha256": null: deleted

``registry/audit_verify.py`` then recomputes each current row's digest and compares it with the
latest audited one: a row edited, inserted or deleted behind the registry's back is named.

**Row digest** (reproducible with any language)::

    row    = {column: value for every column whose value is not NULL}
    digest = sha256_hex(json.dumps({"table": name, "row": row}, sort_keys=True,
                                   separators=(",", ":"), ensure_ascii=True))

NULL columns are left out so that a migration adding a nullable column (NULL in old rows) leaves
every digest unchanged; a migration that adds a column with a non-NULL value to existing rows
must re-attest them (``registry.audit.attest_tables``), as revision 0008 does for all rows.

**Protected tables** are all registry tables except ``UNAUDITED_TABLES`` (the chains themselves,
the rules engine's checkpoints, a cache, and operational state: the ingest processes' spool
identities and the alert outbox). A table added later is protected without further
work, as long as its writes go through ``registry.audit.append`` in the same transaction: the
session factory tracks every flushed change to a protected row (``install``) and refuses to
commit one that no entry covered.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import MetaData, Table, and_, event, inspect, select
from sqlalchemy.orm import Session, sessionmaker

from coldchain.exceptions import RecordRejected
from registry.models import Base

__all__ = [
    "RECORDS_KEY",
    "UNAUDITED_TABLES",
    "install",
    "key_json",
    "protected_tables",
    "row_digest",
    "take_changes",
]

RECORDS_KEY = "_records"
UNAUDITED_TABLES = frozenset(
    {
        "alembic_version",
        "audit_head",
        "audit_log",
        "audit_read_head",
        "audit_read_log",
        # A cache of evaluator state that recomputation rebuilds (docs/registry.md).
        "rule_checkpoints",
        # Operational state of the ingest processes (which spool, its high-water mark, raised
        # without an entry every few seconds); its registrations and acceptances are still
        # logged as entries (spool.register, spool.accept), without record digests.
        "spool_identities",
        # Deliveries of alerts derived from audited excursion changes, rewritten on every
        # attempt (registry/outbox.py).
        "alert_outbox",
        "alert_deliveries",
        # Fencing leases of the rules partitions, renewed every few seconds (registry/leases.py).
        "leases",
    }
)
_PENDING = "coldchain_audit_pending"  # session.info: (table, key json) -> (table, pk values)


def protected_tables(metadata: MetaData = Base.metadata) -> list[Table]:
    """The tables whose rows the audit chain covers, by name."""
    return sorted(
        (t for t in metadata.tables.values() if t.name not in UNAUDITED_TABLES),
        key=lambda t: t.name,
    )


def row_digest(table: str, row: Mapping[Any, Any]) -> str:
    """SHA-256 hex of the row's content (NULL columns left out; recipe in the module doc)."""
    content = {str(k): v for k, v in row.items() if v is not None}
    text = json.dumps(
        {"table": table, "row": content},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=True,  # a NaN written behind our back must still get a digest
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def key_json(values: Any) -> str:
    """The canonical text of a primary key (a list of its column values)."""
    return json.dumps(list(values), separators=(",", ":"), ensure_ascii=True)


def install(factory: sessionmaker[Session]) -> None:
    """Track changes to protected rows in the factory's sessions, and refuse to commit one
    that no audit entry covered (RecordRejected naming the rows)."""
    event.listen(factory, "after_flush", _after_flush)
    event.listen(factory, "before_commit", _before_commit)
    event.listen(factory, "after_rollback", _forget)


def _after_flush(session: Session, _context: Any) -> None:
    pending: dict[tuple[str, str], tuple[Table, tuple[Any, ...]]] = session.info.setdefault(
        _PENDING, {}
    )
    dirty = session.dirty
    for obj in itertools.chain(session.new, dirty, session.deleted):
        mapper = inspect(obj).mapper
        table = mapper.local_table
        if not isinstance(table, Table) or table.name in UNAUDITED_TABLES:
            continue
        if obj in dirty and not session.is_modified(obj, include_collections=False):
            continue
        pk = tuple(mapper.primary_key_from_instance(obj))
        pending[(table.name, key_json(pk))] = (table, pk)


def take_changes(session: Session) -> list[dict[str, Any]]:
    """The changed protected rows since the last call, as ``_records`` items (digest read back
    from the database, so it is what verification will read; None if the row is gone)."""
    pending: dict[tuple[str, str], tuple[Table, tuple[Any, ...]]] = session.info.pop(_PENDING, {})
    records = []
    for (name, _key), (table, pk) in sorted(pending.items(), key=lambda item: item[0]):
        columns = list(table.primary_key.columns)
        where = and_(*(c == v for c, v in zip(columns, pk, strict=True)))
        row = session.execute(select(table).where(where)).mappings().one_or_none()
        digest = None if row is None else row_digest(name, row)
        records.append({"table": name, "key": list(pk), "sha256": digest})
    return records


def _before_commit(session: Session) -> None:
    # Commit flushes after this hook: flush first, so no change escapes the check.
    session.flush()
    pending = session.info.pop(_PENDING, None)
    if pending:
        rows = ", ".join(f"{name} {key}" for name, key in sorted(pending)[:5])
        raise RecordRejected(
            f"unaudited change to {rows}: a change to a protected table must be followed by "
            "registry.audit.append in the same transaction"
        )


def _forget(session: Session) -> None:
    session.info.pop(_PENDING, None)
