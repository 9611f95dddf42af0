"""``AuditTrail``: the audit log as its users see it: record a regulator read, read the heads to
anchor them elsewhere, verify everything (``Registry.trail``).

The read chain is written here, with group commit. A read is audited *before* its answer leaves
the API (``record_read`` returns once the entry is
committed), so nothing is served that the log does not show. Reads have their own chain and
head (``audit_read_log``/``audit_read_head``): they never take the writers' head lock, so an
audited trace does not queue behind ingest's excursion upserts (on PostgreSQL the two heads are
different rows; on SQLite every write transaction still takes the database's one write lock,
but only for the few milliseconds of a small insert).

Group commit: concurrent ``record_read`` calls in one process share transactions. The first caller
to find the writer free becomes the leader and commits every entry queued by then in one
transaction; the others wait for it and return (or raise) with it. One reader alone pays one
small transaction; a burst of N readers pays far fewer than N.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from coldchain.exceptions import RecordRejected, StoreError
from registry import audit
from registry.audit_verify import AuditReport, verify_all
from registry.db import translate_errors
from registry.records import AuditEntry

__all__ = ["AuditTrail"]


@dataclass
class _Ticket:
    actor: str
    action: str
    entity: str
    entity_id: str
    payload: dict[str, Any]
    done: bool = False
    entry: AuditEntry | None = None
    error: BaseException | None = field(default=None, repr=False)


class AuditTrail:
    """Both chains' heads and verification; appends to the read chain. Thread-safe; one per
    Registry (``Registry.trail``)."""

    def __init__(
        self, engine: Engine, sessions: sessionmaker[Session], clock: Callable[[], int]
    ) -> None:
        self._engine = engine
        self._sessions = sessions
        self._clock = clock
        self._queue: list[_Ticket] = []
        self._queue_lock = threading.Lock()
        self._writer = threading.Lock()  # held by the leader while it commits a batch
        self.transactions = 0  # committed batches (the bench reports entries per batch)

    def record_read(
        self, *, actor: str, action: str, entity: str, entity_id: str, payload: Mapping[str, Any]
    ) -> AuditEntry:
        """Append one read entry and return it once committed. RecordRejected if the payload is
        not JSON; StoreError if the database failed (then the read must not be served)."""
        body = dict(payload)
        try:
            audit.canonical_json(body)  # a bad payload fails alone, never its batch
        except (TypeError, ValueError) as exc:
            raise RecordRejected(f"{action} of {entity} {entity_id!r}: {exc}") from exc
        ticket = _Ticket(actor, action, entity, entity_id, body)
        with self._queue_lock:
            self._queue.append(ticket)
        with self._writer:
            if not ticket.done:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._commit(batch)
        if ticket.error is not None:
            raise StoreError(f"auditing a read failed: {ticket.error}") from ticket.error
        assert ticket.entry is not None
        return ticket.entry

    def _commit(self, batch: list[_Ticket]) -> None:
        try:
            with (
                translate_errors("appending to the read audit chain", self._engine.url),
                self._sessions() as session,
                session.begin(),
            ):
                head = audit.lock_head(session, audit.READS)
                now = self._clock()
                entries = [
                    audit.append(
                        session,
                        head,
                        ts_ms=now,
                        actor=t.actor,
                        action=t.action,
                        entity=t.entity,
                        entity_id=t.entity_id,
                        payload=t.payload,
                    )
                    for t in batch
                ]
            self.transactions += 1
            for t, e in zip(batch, entries, strict=True):
                t.entry = e
        except BaseException as exc:
            for t in batch:
                t.error = exc
            raise
        finally:
            for t in batch:
                t.done = True

    def heads(self) -> dict[str, tuple[int, str]]:
        """``{"writes": (seq, hash), "reads": (seq, hash)}``, read in one snapshot: the chains'
        last entries, to publish as anchors (``coldchain audit head``)."""
        with (
            translate_errors("reading the audit heads", self._engine.url),
            self._sessions() as session,
        ):
            w = audit.read_head(session, audit.WRITES)
            r = audit.read_head(session, audit.READS)
            return {"writes": (w.seq, w.hash), "reads": (r.seq, r.hash)}

    def read_entries(
        self, *, entity_id: str | None = None, after_seq: int = 0, limit: int = 1000
    ) -> list[AuditEntry]:
        """Read entries in seq order (optionally of one shipment)."""
        log = audit.READS.log_table
        query = select(log).where(log.c.seq > after_seq)
        if entity_id is not None:
            query = query.where(log.c.entity_id == entity_id)
        with (
            translate_errors("reading the read audit chain", self._engine.url),
            self._sessions() as session,
        ):
            rows = session.execute(query.order_by(log.c.seq).limit(limit)).all()
        return [
            AuditEntry(
                r.seq,
                r.ts_ms,
                r.actor,
                r.action,
                r.entity,
                r.entity_id,
                r.payload,
                r.prev_hash,
                r.hash,
            )
            for r in rows
        ]

    def verify(
        self,
        *,
        anchor: tuple[int, str] | None = None,
        reads_anchor: tuple[int, str] | None = None,
    ) -> AuditReport:
        """Both chains, the guard triggers, and every protected row against its last audited
        state, in one snapshot (registry/audit_verify.py); `coldchain audit verify`."""
        with (
            translate_errors("verifying the audit log", self._engine.url),
            self._sessions() as session,
        ):
            if self._engine.dialect.name == "postgresql":
                # One snapshot for the whole walk (READ COMMITTED is not one).
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            return verify_all(session, anchor=anchor, reads_anchor=reads_anchor)
