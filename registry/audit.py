"""The append-only, hash-chained audit log.

Recipe (reproducible with any language, see docs/registry.md)::

    canonical = JSON of {"seq", "ts_ms", "actor", "action", "entity", "entity_id", "payload"}
                with keys sorted, separators (",", ":"), ASCII only (\\u escapes);
                "payload" is the stored payload *text* (itself canonical JSON) as a string
    hash      = sha256_hex(prev_hash + canonical)          # UTF-8; prev_hash of seq 1 = GENESIS

Writers call ``lock_head`` as the *first* statement of a mutating transaction (serialising all
writers), then ``append`` once per change, all in that same transaction. ``append`` attaches to
the entry the content digest of every protected row the transaction changed since the previous
entry (registry/audit_records.py), under the payload key ``_records``; that is what lets
``verify`` compare the tables with the chain.

There are two chains with the same recipe: ``WRITES`` (``audit_log``/``audit_head``: every
change) and ``READS`` (``audit_read_log``/``audit_read_head``: regulator reads, written by
registry/audit_trail.py), so an audited read never waits on the writers' head.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, MetaData, Table, select, update
from sqlalchemy.orm import Session

from coldchain.exceptions import RecordRejected, StoreError
from registry import audit_records
from registry.models import AuditHeadRow, AuditReadHeadRow, AuditReadRow, AuditRow
from registry.records import AuditEntry, ChainReport

__all__ = [
    "GENESIS",
    "READS",
    "RECORDS_KEY",
    "WRITES",
    "AuditHead",
    "Chain",
    "append",
    "attest_tables",
    "canonical_json",
    "entry_hash",
    "lock_head",
    "read_head",
    "verify_chain",
]

GENESIS = "0" * 64
_HEAD_ID = 1
_VERIFY_CHUNK = 1000
# The payload key under which an entry carries the digests of the rows it changed.
RECORDS_KEY = audit_records.RECORDS_KEY


@dataclass(frozen=True, slots=True)
class Chain:
    """One hash chain: its log table and its single-row head table."""

    name: str
    log: type[AuditRow] | type[AuditReadRow]
    head: type[AuditHeadRow] | type[AuditReadHeadRow]

    @property
    def log_table(self) -> Table:
        return self.log.__table__  # type: ignore[return-value]

    @property
    def head_table(self) -> Table:
        return self.head.__table__  # type: ignore[return-value]


WRITES = Chain("writes", AuditRow, AuditHeadRow)
READS = Chain("reads", AuditReadRow, AuditReadHeadRow)


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, compact, ASCII, no NaN/Infinity."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def entry_hash(
    prev_hash: str,
    *,
    seq: int,
    ts_ms: int,
    actor: str,
    action: str,
    entity: str,
    entity_id: str,
    payload: str,
) -> str:
    row = {
        "seq": seq,
        "ts_ms": ts_ms,
        "actor": actor,
        "action": action,
        "entity": entity,
        "entity_id": entity_id,
        "payload": payload,
    }
    return hashlib.sha256((prev_hash + canonical_json(row)).encode("utf-8")).hexdigest()


class AuditHead:
    """A chain's head inside one write transaction (after ``lock_head``)."""

    def __init__(self, seq: int, hash_: str, chain: Chain = WRITES) -> None:
        self.seq = seq
        self.hash = hash_
        self.chain = chain


def lock_head(session: Session, chain: Chain = WRITES) -> AuditHead:
    """Take the chain's writer lock (a no-op UPDATE of its head row) and read the head.

    Must be the first statement of the transaction: on SQLite it takes the write lock before
    any read (so no stale snapshot), on PostgreSQL it row-locks the head until commit.
    Raises StoreError if the head row is missing (not migrated, or deleted).
    """
    head = chain.head_table
    result = session.execute(update(head).where(head.c.id == _HEAD_ID).values(seq=head.c.seq))
    if getattr(result, "rowcount", 0) != 1:
        raise StoreError(
            f"registry database has no {chain.name} audit head row ({head.name}): "
            "run `coldchain init` (or, if it was deleted, `coldchain audit verify`)"
        )
    row = session.execute(select(head.c.seq, head.c.hash).where(head.c.id == _HEAD_ID)).one()
    return AuditHead(int(row.seq), str(row.hash), chain)


def read_head(session: Session, chain: Chain = WRITES) -> AuditHead:
    """The head without locking (readers); (0, GENESIS) if the head row is missing."""
    head = chain.head_table
    row = session.execute(
        select(head.c.seq, head.c.hash).where(head.c.id == _HEAD_ID)
    ).one_or_none()
    if row is None:
        return AuditHead(0, GENESIS, chain)
    return AuditHead(int(row.seq), str(row.hash), chain)


def append(
    session: Session,
    head: AuditHead,
    *,
    ts_ms: int,
    actor: str,
    action: str,
    entity: str,
    entity_id: str,
    payload: Mapping[str, Any],
) -> AuditEntry:
    """Append one entry after ``head`` (and advance it) in the caller's transaction.

    On the writes chain the session is flushed first and the entry carries, under
    ``payload["_records"]``, the digest of every protected row changed since the previous entry
    (registry/audit_records.py); a transaction that changes a protected row without a following
    ``append`` is refused at commit. Raises RecordRejected if the payload is not JSON (NaN,
    infinity, other types) or uses the reserved key.
    """
    chain = head.chain
    body = dict(payload)
    if RECORDS_KEY in body:
        raise RecordRejected(
            f"{action} of {entity} {entity_id!r}: payload key {RECORDS_KEY!r} is "
            "reserved for the record digests"
        )
    if chain is WRITES:
        session.flush()
        records = audit_records.take_changes(session)
        if records:
            body[RECORDS_KEY] = records
    seq = head.seq + 1
    try:
        text = canonical_json(body)
    except (TypeError, ValueError) as exc:  # NaN, infinity, non-JSON types
        raise RecordRejected(f"{action} of {entity} {entity_id!r}: {exc}") from exc
    digest = entry_hash(
        head.hash,
        seq=seq,
        ts_ms=ts_ms,
        actor=actor,
        action=action,
        entity=entity,
        entity_id=entity_id,
        payload=text,
    )
    entry = AuditEntry(seq, ts_ms, actor, action, entity, entity_id, text, head.hash, digest)
    session.execute(
        chain.log_table.insert().values(
            seq=seq,
            ts_ms=ts_ms,
            actor=actor,
            action=action,
            entity=entity,
            entity_id=entity_id,
            payload=text,
            prev_hash=head.hash,
            hash=digest,
        )
    )
    session.execute(
        update(chain.head_table)
        .where(chain.head_table.c.id == _HEAD_ID)
        .values(seq=seq, hash=digest)
    )
    head.seq, head.hash = seq, digest
    return entry


def verify_chain(
    session: Session,
    *,
    anchor: tuple[int, str] | None = None,
    chain: Chain = WRITES,
    on_entry: Callable[[int, str], None] | None = None,
) -> ChainReport:
    """Walk the whole log of ``chain`` in seq order and check every link, then the head row.

    Detects: a modified row (its hash no longer matches its content), a deleted row (a gap in
    seq, or the next row's prev_hash not matching), a truncated tail (head row ahead of the last
    row), a deleted or forged head row. ``anchor`` (seq, hash), e.g. a head published earlier in
    a report, must be in the chain: this catches a rewrite of the whole chain, or a cut tail
    with the head moved to match, by someone who also recomputed every hash. ``on_entry(seq,
    payload)`` sees every intact entry in order (record coverage, registry/audit_verify.py).
    """
    log, head_t = chain.log_table, chain.head_table
    head_row = session.execute(
        select(head_t.c.seq, head_t.c.hash).where(head_t.c.id == _HEAD_ID)
    ).one_or_none()
    head_seq, head_hash = (int(head_row.seq), str(head_row.hash)) if head_row else (0, GENESIS)
    prev_seq, prev_hash, checked = 0, GENESIS, 0
    anchor_seen = anchor is None or anchor == (0, GENESIS)

    def broken(seq: int, problem: str) -> ChainReport:
        return ChainReport(False, checked, head_seq, head_hash, seq, problem, chain.name)

    last_seq = 0
    while True:
        rows = session.execute(
            select(log).where(log.c.seq > last_seq).order_by(log.c.seq).limit(_VERIFY_CHUNK)
        ).all()
        if not rows:
            break
        for row in rows:
            if row.seq != prev_seq + 1:
                return broken(
                    prev_seq + 1,
                    f"entries {prev_seq + 1}..{row.seq - 1} are missing (deleted)",
                )
            if row.prev_hash != prev_hash:
                return broken(row.seq, "prev_hash does not match the previous entry's hash")
            expected = entry_hash(
                prev_hash,
                seq=row.seq,
                ts_ms=row.ts_ms,
                actor=row.actor,
                action=row.action,
                entity=row.entity,
                entity_id=row.entity_id,
                payload=row.payload,
            )
            if row.hash != expected:
                return broken(row.seq, "content does not match its hash (modified)")
            if anchor is not None and anchor[0] == row.seq:
                if anchor[1] != row.hash:
                    return broken(row.seq, "hash differs from the anchor (chain rewritten)")
                anchor_seen = True
            if on_entry is not None:
                on_entry(row.seq, row.payload)
            prev_seq, prev_hash = row.seq, row.hash
            checked += 1
        last_seq = rows[-1].seq
    if head_row is None:
        return broken(prev_seq + 1, f"the head row ({head_t.name}) is missing (deleted)")
    if (head_seq, head_hash) != (prev_seq, prev_hash):
        if prev_seq < head_seq:
            problem = f"the head says seq {head_seq} but the log ends at {prev_seq} (tail deleted)"
        elif prev_seq > head_seq:
            problem = f"the log continues past the head (seq {head_seq}): head reset or forged"
        else:
            problem = "the head's hash differs from the last entry's"
        return broken(min(prev_seq, head_seq) + 1, problem)
    if not anchor_seen and anchor is not None:
        # The first row missing is the one after the log's end (the anchor lies beyond it).
        return broken(
            min(anchor[0], prev_seq + 1),
            f"the anchored entry {anchor[0]} is not in the log, which ends at {prev_seq} "
            "(tail cut, or the whole log replaced)",
        )
    return ChainReport(True, checked, head_seq, head_hash, chain=chain.name)


def attest_tables(
    conn: Connection, *, actor: str, reason: str, ts_ms: int, chunk: int = 500
) -> int:
    """Append ``audit.attest`` entries carrying the digest of every row of every protected table
    as the database holds it now (read through reflection, so it works inside a migration at
    any revision); returns the number of rows attested. For migrations: rows written before
    record digests existed, or after a migration changed rows without the registry's code.

    Attesting blesses the rows as they stand: the chain vouches for them from this entry on.
    """
    metadata = MetaData()
    metadata.reflect(bind=conn)
    head_t = metadata.tables[WRITES.head_table.name]
    log = metadata.tables[WRITES.log_table.name]
    row = conn.execute(select(head_t.c.seq, head_t.c.hash).where(head_t.c.id == _HEAD_ID)).one()
    seq, prev = int(row.seq), str(row.hash)
    total = 0
    for table in audit_records.protected_tables(metadata):
        pk = list(table.primary_key.columns)
        result = conn.execute(select(table).order_by(*pk))
        while batch := result.mappings().fetchmany(chunk):
            records = [
                {
                    "table": table.name,
                    "key": [r[c.name] for c in pk],
                    "sha256": audit_records.row_digest(table.name, r),
                }
                for r in batch
            ]
            payload = canonical_json({"reason": reason, "rows": len(records), RECORDS_KEY: records})
            seq += 1
            digest = entry_hash(
                prev,
                seq=seq,
                ts_ms=ts_ms,
                actor=actor,
                action="audit.attest",
                entity="table",
                entity_id=table.name,
                payload=payload,
            )
            conn.execute(
                log.insert().values(
                    seq=seq,
                    ts_ms=ts_ms,
                    actor=actor,
                    action="audit.attest",
                    entity="table",
                    entity_id=table.name,
                    payload=payload,
                    prev_hash=prev,
                    hash=digest,
                )
            )
            prev = digest
            total += len(records)
    conn.execute(update(head_t).where(head_t.c.id == _HEAD_ID).values(seq=seq, hash=prev))
    return total
