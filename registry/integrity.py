"""Integrity evidence: conflicting rewrites of a device's samples (``coldchain.rules.Rewrite``).

``IntegrityStore`` is mixed into ``Registry``: recording is a mutating, audited transaction like
every other (docs/registry.md); a rewrite recorded twice (same id: same content) is a no-op.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from coldchain.rules.integrity import Rewrite
from registry import audit
from registry.models import IntegrityEvidenceRow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["IntegrityStore", "row_payload", "to_rewrite"]


def row_payload(row: IntegrityEvidenceRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "asset_id": row.asset_id,
        "device_id": row.device_id,
        "ts_ms": row.ts_ms,
        "old_seq": row.old_seq,
        "new_seq": row.new_seq,
        "changes": json.loads(row.changes),
        "kept": row.kept,
        "detected_ms": row.detected_ms,
    }


def to_rewrite(row: IntegrityEvidenceRow) -> Rewrite:
    changes = {k: (v[0], v[1]) for k, v in json.loads(row.changes).items()}
    return Rewrite(
        device_id=row.device_id,
        asset_id=row.asset_id,
        ts_ms=row.ts_ms,
        old_seq=row.old_seq,
        new_seq=row.new_seq,
        changes=changes,
        detected_ms=row.detected_ms,
        kept=row.kept,
        id=row.id,
    )


class IntegrityStore:
    """Registry methods for integrity evidence (mixed into ``registry.Registry``)."""

    if TYPE_CHECKING:

        def _write(
            self, what: str
        ) -> AbstractContextManager[tuple[Session, audit.AuditHead, int]]: ...

        def _read(self, what: str) -> AbstractContextManager[Session]: ...

    def record_rewrites(
        self, items: Iterable[Rewrite], *, actor: str = "rules-engine"
    ) -> list[str]:
        """Record conflicting rewrites in one audited transaction; returns the ids added
        (one already recorded is skipped: ids are deterministic from the content)."""
        batch = list(items)
        if not batch:
            return []
        added: list[str] = []
        with self._write("recording integrity evidence") as (session, head, now):
            for rw in batch:
                if rw.id in added or session.get(IntegrityEvidenceRow, rw.id) is not None:
                    continue
                row = IntegrityEvidenceRow(
                    id=rw.id,
                    asset_id=rw.asset_id,
                    device_id=rw.device_id,
                    ts_ms=rw.ts_ms,
                    old_seq=rw.old_seq,
                    new_seq=rw.new_seq,
                    changes=audit.canonical_json({k: list(v) for k, v in rw.changes.items()}),
                    kept=rw.kept,
                    detected_ms=rw.detected_ms,
                )
                session.add(row)
                session.flush()
                audit.append(
                    session,
                    head,
                    ts_ms=now,
                    actor=actor,
                    action="integrity.rewrite",
                    entity="integrity_evidence",
                    entity_id=rw.id,
                    payload=row_payload(row),
                )
                added.append(rw.id)
        return added

    def find_rewrites(
        self,
        *,
        asset_id: str | None = None,
        device_id: str | None = None,
        from_ms: int | None = None,
        to_ms: int | None = None,
        limit: int = 10_000,
    ) -> list[Rewrite]:
        """Conflicting rewrites at device times in [from_ms, to_ms), oldest first."""
        with self._read("querying integrity evidence") as session:
            return list(_find(session, asset_id, device_id, from_ms, to_ms, limit))


def _find(
    session: Session,
    asset_id: str | None,
    device_id: str | None,
    from_ms: int | None,
    to_ms: int | None,
    limit: int,
) -> Iterator[Rewrite]:
    q = select(IntegrityEvidenceRow)
    if asset_id is not None:
        q = q.where(IntegrityEvidenceRow.asset_id == asset_id)
    if device_id is not None:
        q = q.where(IntegrityEvidenceRow.device_id == device_id)
    if from_ms is not None:
        q = q.where(IntegrityEvidenceRow.ts_ms >= from_ms)
    if to_ms is not None:
        q = q.where(IntegrityEvidenceRow.ts_ms < to_ms)
    q = q.order_by(IntegrityEvidenceRow.ts_ms, IntegrityEvidenceRow.id).limit(limit)
    for row in session.execute(q).scalars():
        yield to_rewrite(row)
