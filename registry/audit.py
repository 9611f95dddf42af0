"""The append-only, hash-chained audit log.

Recipe (reproducible with any language, see docs/registry.md)::

    canonical = JSON of {"seq", "ts_ms", "actor", "action", "entity", "entity_id", "payload"}
                with keys sorted, separators (",", ":"), ASCII only (\\u escapes);
                "payload" is the stored payload *text* (itself canonical JSON) as a string
    hash      = sha256_hex(prev_hash + canonical)          # UTF-8; prev_hash of seq 1 = GENESIS

Writers call ``lock_head`` as the *first* statement of a mutating transaction (serialising all
writers), then ``append`` once per change, all in that same transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from coldchain.exceptions import RecordRejected, StoreError
from registry.models import AuditHeadRow, AuditRow
from registry.records import AuditEntry, ChainReport

__all__ = [
    "GENESIS",
    "AuditHead",
    "append",
    "canonical_json",
    "entry_hash",
    "lock_head",
    "read_head",
    "verify_chain",
]

GENESIS = "0" * 64
_HEAD_ID = 1
_VERIFY_CHUNK = 1000


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
    """The chain head inside one write transaction (after ``lock_head``)."""

    def __init__(self, seq: int, hash_: str) -> None:
        self.seq = seq
        self.hash = hash_


def lock_head(session: Session) -> AuditHead:
    """Take the writers' lock (a no-op UPDATE of the head row) and read the head.

    Must be the first statement of the transaction: on SQLite it takes the write lock before
    any read (so no stale snapshot), on PostgreSQL it row-locks the head until commit.
    """
    result = session.execute(
        update(AuditHeadRow).where(AuditHeadRow.id == _HEAD_ID).values(seq=AuditHeadRow.seq)
    )
    if getattr(result, "rowcount", 0) != 1:
        raise StoreError(
            "registry database is not initialised (no audit head row): run `coldchain init`"
        )
    row = session.execute(
        select(AuditHeadRow.seq, AuditHeadRow.hash).where(AuditHeadRow.id == _HEAD_ID)
    ).one()
    return AuditHead(int(row.seq), str(row.hash))


def read_head(session: Session) -> AuditHead:
    """The head without locking (readers)."""
    row = session.execute(
        select(AuditHeadRow.seq, AuditHeadRow.hash).where(AuditHeadRow.id == _HEAD_ID)
    ).one_or_none()
    return AuditHead(0, GENESIS) if row is None else AuditHead(int(row.seq), str(row.hash))


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
    """Append one entry after ``head`` (and advance it) in the caller's transaction."""
    seq = head.seq + 1
    try:
        text = canonical_json(dict(payload))
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
    session.add(
        AuditRow(
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
        update(AuditHeadRow).where(AuditHeadRow.id == _HEAD_ID).values(seq=seq, hash=digest)
    )
    head.seq, head.hash = seq, digest
    return entry


def verify_chain(session: Session, *, anchor: tuple[int, str] | None = None) -> ChainReport:
    """Walk the whole log in seq order and check every link, then the head row.

    Detects: a modified row (its hash no longer matches its content), a deleted row (a gap in
    seq, or the next row's prev_hash not matching), a truncated tail (head row ahead of the last
    row). ``anchor`` (seq, hash), e.g. a head published earlier in a report, must be in the chain:
    this catches a rewrite of the whole chain by someone who also recomputed every hash.
    """
    head_row = session.execute(
        select(AuditHeadRow.seq, AuditHeadRow.hash).where(AuditHeadRow.id == _HEAD_ID)
    ).one_or_none()
    head_seq, head_hash = (int(head_row.seq), str(head_row.hash)) if head_row else (0, GENESIS)
    prev_seq, prev_hash, checked = 0, GENESIS, 0
    anchor_seen = anchor is None or anchor == (0, GENESIS)

    def broken(seq: int, problem: str) -> ChainReport:
        return ChainReport(False, checked, head_seq, head_hash, seq, problem)

    last_seq = 0
    while True:
        rows = (
            session.execute(
                select(AuditRow)
                .where(AuditRow.seq > last_seq)
                .order_by(AuditRow.seq)
                .limit(_VERIFY_CHUNK)
            )
            .scalars()
            .all()
        )
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
            prev_seq, prev_hash = row.seq, row.hash
            checked += 1
        last_seq = rows[-1].seq
        session.expunge_all()
    if head_row is not None and (head_seq, head_hash) != (prev_seq, prev_hash):
        if prev_seq < head_seq:
            problem = f"the head says seq {head_seq} but the log ends at {prev_seq} (tail deleted)"
        elif prev_seq > head_seq:
            problem = f"the log continues past the head (seq {head_seq}): head reset or forged"
        else:
            problem = "the head's hash differs from the last entry's"
        return broken(min(prev_seq, head_seq) + 1, problem)
    if not anchor_seen and anchor is not None:
        return broken(anchor[0], "the anchor entry is not in the log (deleted or truncated)")
    return ChainReport(True, checked, head_seq, head_hash)
