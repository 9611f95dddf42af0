"""The alert outbox: notifications queued in the transaction that records their change, and
the delivery bookkeeping of the processes that send them (``Registry`` methods).

Why (issue 11, item 3; docs/operations.md "Alerts"): publishing an alert after the registry
commit loses it when the process dies in between; a recorded change whose notification sits in
the same transaction cannot. Delivery is at least once: a row is marked delivered only after
the channel acknowledged it, so a crash between the two sends it again under the same
idempotency ``key``, which receivers use to drop repeats.

Not audited: outbox rows are derived from audited excursion changes and rewritten on every
delivery attempt, like rule checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from coldchain.exceptions import RecordRejected
from registry.models import AlertOutboxRow

__all__ = ["AlertOutbox", "Channel", "OutboxEntry", "OutboxMessage", "enqueue"]

Channel = Literal["mqtt"]
CHANNELS: tuple[Channel, ...] = ("mqtt",)
_KEY_MAX = 200
_ERROR_MAX = 500


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A notification to queue: ``key`` (idempotency key, unique per channel, at most 200
    characters), ``channel``, ``topic`` (the channel's address) and ``payload`` (JSON text)."""

    key: str
    channel: Channel
    topic: str
    payload: str


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A queued notification and its delivery state (times are epoch ms, registry clock)."""

    id: int
    key: str
    channel: Channel
    topic: str
    payload: str
    created_ms: int
    attempts: int
    next_attempt_ms: int
    delivered_ms: int | None
    last_error: str

    @property
    def delivered(self) -> bool:
        return self.delivered_ms is not None


def _entry(row: AlertOutboxRow) -> OutboxEntry:
    return OutboxEntry(
        id=row.id,
        key=row.key,
        channel=row.channel,  # type: ignore[arg-type]  # CHECK constraint
        topic=row.topic,
        payload=row.payload,
        created_ms=row.created_ms,
        attempts=row.attempts,
        next_attempt_ms=row.next_attempt_ms,
        delivered_ms=row.delivered_ms,
        last_error=row.last_error,
    )


def _check(msg: OutboxMessage) -> None:
    if msg.channel not in CHANNELS:
        raise RecordRejected(f"outbox: unknown channel {msg.channel!r} (known: {CHANNELS})")
    if not msg.key or len(msg.key) > _KEY_MAX:
        raise RecordRejected(f"outbox: key must have 1 to {_KEY_MAX} characters: {msg.key!r}")
    if not msg.topic:
        raise RecordRejected(f"outbox: empty topic for key {msg.key!r}")


def enqueue(session: Session, messages: Iterable[OutboxMessage], now_ms: int) -> None:
    """Queue ``messages`` inside the caller's transaction, due at once; a (channel, key)
    already queued (delivered or not) is left as it is. RecordRejected for a bad message.

    INSERT ... ON CONFLICT DO NOTHING on SQLite and PostgreSQL (race-free between
    processes); other backends read first."""
    batch = list(messages)
    for msg in batch:
        _check(msg)
    if not batch:
        return
    dialect = session.get_bind().dialect.name
    for msg in batch:
        values = {
            "key": msg.key,
            "channel": msg.channel,
            "topic": msg.topic,
            "payload": msg.payload,
            "created_ms": now_ms,
            "attempts": 0,
            "next_attempt_ms": now_ms,
            "delivered_ms": None,
            "last_error": "",
        }
        if dialect in ("sqlite", "postgresql"):
            insert = sqlite_insert if dialect == "sqlite" else pg_insert
            session.execute(
                insert(AlertOutboxRow)
                .values(**values)
                .on_conflict_do_nothing(index_elements=[AlertOutboxRow.channel, AlertOutboxRow.key])
            )
            continue
        exists = session.execute(
            select(AlertOutboxRow.id).where(
                AlertOutboxRow.channel == msg.channel, AlertOutboxRow.key == msg.key
            )
        ).first()
        if exists is None:
            session.add(AlertOutboxRow(**values))
            session.flush()


def _due(channel: Channel, now_ms: int) -> tuple[ColumnElement[bool], ...]:
    return (
        AlertOutboxRow.channel == channel,
        AlertOutboxRow.delivered_ms.is_(None),
        AlertOutboxRow.next_attempt_ms <= now_ms,
    )


class AlertOutbox:
    """Mixin of ``registry.Registry``: the outbox methods (one transaction each)."""

    _clock: Callable[[], int]

    def _read(self, what: str) -> AbstractContextManager[Session]:
        raise NotImplementedError  # provided by Registry

    def enqueue_alerts(self, messages: Sequence[OutboxMessage]) -> None:
        """Queue notifications on their own. A change recorded by ``upsert_excursions`` passes
        its notifications there instead, to share its transaction."""
        now = self._clock()
        with self._read("queuing alerts") as session, session.begin():
            enqueue(session, messages, now)

    def due_alerts(
        self, channel: Channel, *, now_ms: int | None = None, limit: int = 100
    ) -> list[OutboxEntry]:
        """Undelivered notifications of ``channel`` due at ``now_ms`` (default: the registry
        clock), oldest first, at most ``limit``."""
        now = self._clock() if now_ms is None else now_ms
        with self._read("reading due alerts") as session:
            rows = session.execute(
                select(AlertOutboxRow)
                .where(
                    AlertOutboxRow.channel == channel,
                    AlertOutboxRow.delivered_ms.is_(None),
                    AlertOutboxRow.next_attempt_ms <= now,
                )
                .order_by(AlertOutboxRow.id)
                .limit(limit)
            )
            return [_entry(r) for r in rows.scalars()]

    def claim_due_alerts(
        self,
        channel: Channel,
        *,
        lease_until_ms: int,
        now_ms: int | None = None,
        limit: int = 100,
    ) -> list[OutboxEntry]:
        """Take the undelivered notifications of ``channel`` due at ``now_ms`` (default: the
        registry clock), oldest first, at most ``limit``, and push their next attempt to
        ``lease_until_ms``: until then no other deliverer gets them, whichever process it runs
        in. A deliverer that dies holding a claim loses it when the lease runs out, so the row
        is sent again (at least once, under the same key). Returned in id order.

        On PostgreSQL the due rows are first locked ``FOR UPDATE SKIP LOCKED`` (concurrent
        claimers take different rows, none waits), then pushed; on SQLite one UPDATE ...
        RETURNING takes the database's write lock first (a read before it could not upgrade
        to a write once another process has written)."""
        now = self._clock() if now_ms is None else now_ms
        with self._read("claiming due alerts") as session, session.begin():
            due = (
                select(AlertOutboxRow.id)
                .where(*_due(channel, now))
                .order_by(AlertOutboxRow.id)
                .limit(limit)
            )
            picked: Any
            if session.get_bind().dialect.name == "postgresql":
                picked = list(session.execute(due.with_for_update(skip_locked=True)).scalars())
                if not picked:
                    return []
            else:
                picked = due.scalar_subquery()
            rows = session.execute(
                update(AlertOutboxRow)
                .where(AlertOutboxRow.id.in_(picked), *_due(channel, now))
                .values(next_attempt_ms=lease_until_ms)
                .returning(AlertOutboxRow)
                .execution_options(synchronize_session=False)
            )
            return sorted((_entry(r) for r in rows.scalars()), key=lambda e: e.id)

    def outbox_entries(
        self, *, channel: Channel | None = None, pending: bool | None = None
    ) -> list[OutboxEntry]:
        """Every queued notification (``pending``: only undelivered / only delivered), by id."""
        query = select(AlertOutboxRow).order_by(AlertOutboxRow.id)
        if channel is not None:
            query = query.where(AlertOutboxRow.channel == channel)
        if pending is not None:
            col = AlertOutboxRow.delivered_ms
            query = query.where(col.is_(None) if pending else col.is_not(None))
        with self._read("reading the alert outbox") as session:
            return [_entry(r) for r in session.execute(query).scalars()]

    def mark_alerts_delivered(self, ids: Sequence[int]) -> None:
        """The channel acknowledged these notifications: never send them again. A row already
        marked keeps its first delivery time."""
        if not ids:
            return
        now = self._clock()
        with self._read("marking alerts delivered") as session, session.begin():
            session.execute(
                update(AlertOutboxRow)
                .where(AlertOutboxRow.id.in_(list(ids)), AlertOutboxRow.delivered_ms.is_(None))
                .values(delivered_ms=now)
            )

    def mark_alert_failed(self, entry_id: int, error: str, retry_at_ms: int) -> None:
        """A delivery attempt failed: count it, keep the reason, retry from ``retry_at_ms``."""
        with self._read("marking an alert attempt failed") as session, session.begin():
            session.execute(
                update(AlertOutboxRow)
                .where(AlertOutboxRow.id == entry_id, AlertOutboxRow.delivered_ms.is_(None))
                .values(
                    attempts=AlertOutboxRow.attempts + 1,
                    next_attempt_ms=retry_at_ms,
                    last_error=error[:_ERROR_MAX],
                )
            )
