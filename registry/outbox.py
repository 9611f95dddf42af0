"""The alert outbox: notifications queued in the transaction that records their change, routed
to the configured channels, and the per-channel delivery bookkeeping (``Registry`` methods).

Why (issue 11, item 3; docs/alerts.md): publishing an alert after the registry commit loses it
when the process dies in between; a recorded change whose notification sits in the same
transaction cannot. An entry (one per idempotency ``key``) is *routed* once, in one
transaction that creates its per-channel delivery rows (and any escalation timer); each
delivery row is delivered at least once: it is marked delivered only after the channel
acknowledged it, so a crash in between sends it again under the same key, which receivers use
to drop repeats. A deliverer *claims* rows with a lease before sending them, so two processes
(ingest and ``coldchain alerts deliver``) never send the same row at once; a lease that ran
out (its process died) lets the row be claimed again.

Not audited: outbox rows are derived from audited excursion changes and rewritten on every
delivery attempt, like rule checkpoints.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from coldchain.exceptions import RecordRejected
from registry.models import AlertDeliveryRow, AlertOutboxRow

__all__ = [
    "AlertOutbox",
    "ChannelDelivery",
    "DeliveryState",
    "Fanout",
    "OutboxEntry",
    "OutboxMessage",
    "Routing",
    "enqueue",
]

DeliveryState = Literal["pending", "delivered", "dropped"]
_KEY_MAX = 200
_CHANNEL_MAX = 64
_ERROR_MAX = 500


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A notification to queue: ``key`` (idempotency key, unique, at most 200 characters),
    ``payload`` (the alert, JSON text) and ``route_after_ms`` (epoch ms; None: at once)."""

    key: str
    payload: str
    route_after_ms: int | None = None


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A queued notification (times are epoch ms, registry clock); ``routed_ms`` is None until
    routing chose its channels."""

    id: int
    key: str
    payload: str
    created_ms: int
    route_after_ms: int
    routed_ms: int | None


@dataclass(frozen=True, slots=True)
class Fanout:
    """What routing decided for one channel: first attempt at ``next_attempt_ms`` (epoch ms),
    or ``dropped`` with its reason (quiet hours configured to drop)."""

    channel: str
    next_attempt_ms: int
    dropped: str = ""


@dataclass(frozen=True, slots=True)
class Routing:
    """What routing decided for one entry: its per-channel ``fanout`` and the escalation
    timers (``follow_ups``) it starts."""

    entry_id: int
    fanout: Sequence[Fanout]
    follow_ups: Sequence[OutboxMessage] = ()


@dataclass(frozen=True, slots=True)
class ChannelDelivery:
    """One entry's delivery to one channel, with the entry's key and payload."""

    id: int
    outbox_id: int
    key: str
    payload: str
    channel: str
    state: DeliveryState
    attempts: int
    next_attempt_ms: int
    delivered_ms: int | None
    last_error: str
    lease_owner: str | None
    lease_until_ms: int | None

    @property
    def delivered(self) -> bool:
        return self.state == "delivered"


def _entry(row: AlertOutboxRow) -> OutboxEntry:
    return OutboxEntry(
        row.id, row.key, row.payload, row.created_ms, row.route_after_ms, row.routed_ms
    )


def _delivery(d: AlertDeliveryRow, o: AlertOutboxRow) -> ChannelDelivery:
    return ChannelDelivery(
        id=d.id,
        outbox_id=d.outbox_id,
        key=o.key,
        payload=o.payload,
        channel=d.channel,
        state=d.state,  # type: ignore[arg-type]  # CHECK constraint
        attempts=d.attempts,
        next_attempt_ms=d.next_attempt_ms,
        delivered_ms=d.delivered_ms,
        last_error=d.last_error,
        lease_owner=d.lease_owner,
        lease_until_ms=d.lease_until_ms,
    )


def _check(msg: OutboxMessage) -> None:
    if not msg.key or len(msg.key) > _KEY_MAX:
        raise RecordRejected(f"outbox: key must have 1 to {_KEY_MAX} characters: {msg.key!r}")
    if not msg.payload:
        raise RecordRejected(f"outbox: empty payload for key {msg.key!r}")


def enqueue(session: Session, messages: Iterable[OutboxMessage], now_ms: int) -> None:
    """Queue ``messages`` inside the caller's transaction; a key already queued (routed or not)
    is left as it is. RecordRejected for a bad message.

    INSERT ... ON CONFLICT DO NOTHING on SQLite and PostgreSQL (race-free between
    processes); other backends read first."""
    batch = list(messages)
    for msg in batch:
        _check(msg)
    dialect = session.get_bind().dialect.name if batch else ""
    for msg in batch:
        values = {
            "key": msg.key,
            "payload": msg.payload,
            "created_ms": now_ms,
            "route_after_ms": now_ms if msg.route_after_ms is None else msg.route_after_ms,
            "routed_ms": None,
        }
        if dialect in ("sqlite", "postgresql"):
            insert = sqlite_insert if dialect == "sqlite" else pg_insert
            session.execute(
                insert(AlertOutboxRow)
                .values(**values)
                .on_conflict_do_nothing(index_elements=[AlertOutboxRow.key])
            )
            continue
        exists = session.execute(
            select(AlertOutboxRow.id).where(AlertOutboxRow.key == msg.key)
        ).first()
        if exists is None:
            session.add(AlertOutboxRow(**values))
            session.flush()


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

    def unrouted_alerts(self, *, now_ms: int | None = None, limit: int = 100) -> list[OutboxEntry]:
        """Entries not routed yet whose ``route_after_ms`` has come by ``now_ms`` (default:
        the registry clock), oldest first, at most ``limit``."""
        now = self._clock() if now_ms is None else now_ms
        with self._read("reading unrouted alerts") as session:
            rows = session.execute(
                select(AlertOutboxRow)
                .where(AlertOutboxRow.routed_ms.is_(None), AlertOutboxRow.route_after_ms <= now)
                .order_by(AlertOutboxRow.id)
                .limit(limit)
            )
            return [_entry(r) for r in rows.scalars()]

    def route_alert(
        self,
        entry_id: int,
        fanout: Sequence[Fanout],
        follow_ups: Sequence[OutboxMessage] = (),
        *,
        now_ms: int | None = None,
    ) -> bool:
        """Mark the entry routed and create its delivery rows (and queue ``follow_ups``, the
        escalation timers it starts), in one transaction. False when another process routed
        it first (nothing is written). RecordRejected for a bad channel name."""
        return bool(self.route_alerts([Routing(entry_id, fanout, follow_ups)], now_ms=now_ms))

    def route_alerts(self, items: Sequence[Routing], *, now_ms: int | None = None) -> list[int]:
        """``route_alert`` for several entries in one transaction; returns the ids this call
        routed (an entry another process routed first is skipped, nothing of it written)."""
        for item in items:
            for f in item.fanout:
                if not f.channel or len(f.channel) > _CHANNEL_MAX:
                    raise RecordRejected(f"outbox: bad channel name {f.channel!r}")
        now = self._clock() if now_ms is None else now_ms
        routed: list[int] = []
        if not items:
            return routed
        with self._read("routing alerts") as session, session.begin():
            for item in items:
                taken = session.execute(
                    update(AlertOutboxRow)
                    .where(AlertOutboxRow.id == item.entry_id, AlertOutboxRow.routed_ms.is_(None))
                    .values(routed_ms=now)
                )
                if taken.rowcount != 1:  # type: ignore[attr-defined]
                    continue
                routed.append(item.entry_id)
                for f in {f.channel: f for f in item.fanout}.values():
                    session.add(
                        AlertDeliveryRow(
                            outbox_id=item.entry_id,
                            channel=f.channel,
                            state="dropped" if f.dropped else "pending",
                            attempts=0,
                            next_attempt_ms=f.next_attempt_ms,
                            delivered_ms=None,
                            last_error=f.dropped[:_ERROR_MAX],
                        )
                    )
                enqueue(session, item.follow_ups, now)
        return routed

    def claim_alert_deliveries(
        self,
        channel: str,
        *,
        owner: str,
        lease_ms: int,
        now_ms: int | None = None,
        limit: int = 20,
    ) -> list[ChannelDelivery]:
        """Claim up to ``limit`` pending deliveries of ``channel`` due at ``now_ms`` and not
        leased by anyone (or whose lease ran out): leased to a token starting with ``owner``
        until ``now_ms + lease_ms``, their ``attempts`` counted. Oldest first.

        One UPDATE statement (a write lock on SQLite, row locks re-checked on PostgreSQL), so
        two processes never claim the same row."""
        now = self._clock() if now_ms is None else now_ms
        token = f"{owner[:60]}:{uuid.uuid4().hex[:16]}"
        d = AlertDeliveryRow
        free = (
            d.channel == channel,
            d.state == "pending",
            d.next_attempt_ms <= now,
            or_(d.lease_until_ms.is_(None), d.lease_until_ms <= now),
        )
        ids = select(d.id).where(*free).order_by(d.id).limit(limit).scalar_subquery()
        with self._read("looking for due alert deliveries") as session:
            # Most rounds find nothing: answer them with a read, never taking the write lock.
            if session.execute(select(d.id).where(*free).limit(1)).first() is None:
                return []
        with self._read("claiming alert deliveries") as session, session.begin():
            session.execute(
                update(d)
                .where(d.id.in_(ids), *free)
                .values(lease_owner=token, lease_until_ms=now + lease_ms, attempts=d.attempts + 1)
                .execution_options(synchronize_session=False)
            )
            rows = session.execute(
                select(d, AlertOutboxRow)
                .join(AlertOutboxRow, AlertOutboxRow.id == d.outbox_id)
                .where(d.lease_owner == token)
                .order_by(d.id)
            )
            return [_delivery(row, out) for row, out in rows]

    def finish_alert_deliveries(
        self,
        delivered: Sequence[ChannelDelivery],
        failed: Sequence[tuple[ChannelDelivery, str, int]] = (),
        *,
        now_ms: int | None = None,
    ) -> None:
        """Record the outcome of claimed deliveries: ``delivered`` ones are never sent again;
        each ``failed`` one (delivery, error, retry at epoch ms) keeps its reason and is due
        again from then. Only rows still leased by the claim are touched (a lease that ran out
        and was taken over is the new holder's)."""
        now = self._clock() if now_ms is None else now_ms
        d = AlertDeliveryRow
        with self._read("recording alert deliveries") as session, session.begin():
            for item in delivered:
                session.execute(
                    update(d)
                    .where(d.id == item.id, d.lease_owner == item.lease_owner, d.state == "pending")
                    .values(
                        state="delivered",
                        delivered_ms=now,
                        lease_owner=None,
                        lease_until_ms=None,
                        last_error="",
                    )
                )
            for item, error, retry_at_ms in failed:
                session.execute(
                    update(d)
                    .where(d.id == item.id, d.lease_owner == item.lease_owner, d.state == "pending")
                    .values(
                        next_attempt_ms=retry_at_ms,
                        last_error=error[:_ERROR_MAX],
                        lease_owner=None,
                        lease_until_ms=None,
                    )
                )

    def release_alert_leases(self, owner: str) -> int:
        """Release the leases held under ``owner`` (the name given to
        ``claim_alert_deliveries``) on pending rows, so they are due again at once; returns how
        many. A deliverer calls it as it starts: a lease of its name is a previous incarnation's
        that died mid-round, and waiting for it to run out (minutes for a large batch) would
        delay those alerts for nothing. Owner names must be unique per running deliverer (the
        process's MQTT client id, which the broker keeps unique)."""
        prefix = f"{owner[:60]}:"
        d = AlertDeliveryRow
        with self._read("releasing alert leases") as session, session.begin():
            done = session.execute(
                update(d)
                .where(
                    d.state == "pending",
                    func.substr(d.lease_owner, 1, len(prefix)) == prefix,
                )
                .values(lease_owner=None, lease_until_ms=None)
                .execution_options(synchronize_session=False)
            )
            return int(done.rowcount)  # type: ignore[attr-defined]

    def prune_alerts(self, created_before_ms: int, *, limit: int = 5000) -> int:
        """Delete up to ``limit`` outbox entries queued before ``created_before_ms`` (epoch ms,
        registry clock) that are finished: routed, and none of their deliveries still pending
        (escalation timers not due yet are unrouted: kept). Their delivery rows go with them,
        in one transaction; returns how many entries. The excursions and acknowledgements they
        notified of stay in the registry (audited): this is delivery bookkeeping only.

        A pruned key is forgotten: queuing that change again would send it again. So the
        cutoff must lie before anything a recompute can still reach (``alerts.retention_days``
        is at least the accepted sample age, docs/alerts.md)."""
        o, d = AlertOutboxRow, AlertDeliveryRow
        pending = select(d.id).where(d.outbox_id == o.id, d.state == "pending").exists()
        with self._read("pruning delivered alerts") as session, session.begin():
            done = list(
                session.execute(
                    select(o.id)
                    .where(o.routed_ms.is_not(None), o.created_ms < created_before_ms, ~pending)
                    .order_by(o.id)
                    .limit(limit)
                ).scalars()
            )
            if not done:
                return 0
            session.execute(delete(d).where(d.outbox_id.in_(done)))
            session.execute(delete(o).where(o.id.in_(done)))
            return len(done)

    def outbox_entries(self, *, routed: bool | None = None) -> list[OutboxEntry]:
        """Every queued notification (``routed``: only routed / only unrouted ones), by id."""
        query = select(AlertOutboxRow).order_by(AlertOutboxRow.id)
        if routed is not None:
            col = AlertOutboxRow.routed_ms
            query = query.where(col.is_not(None) if routed else col.is_(None))
        with self._read("reading the alert outbox") as session:
            return [_entry(r) for r in session.execute(query).scalars()]

    def alert_deliveries(
        self, *, channel: str | None = None, state: DeliveryState | None = None
    ) -> list[ChannelDelivery]:
        """Every delivery row (of ``channel``, in ``state``), by id."""
        d = AlertDeliveryRow
        query = select(d, AlertOutboxRow).join(AlertOutboxRow, AlertOutboxRow.id == d.outbox_id)
        if channel is not None:
            query = query.where(d.channel == channel)
        if state is not None:
            query = query.where(d.state == state)
        with self._read("reading alert deliveries") as session:
            rows = session.execute(query.order_by(d.id))
            return [_delivery(row, out) for row, out in rows]
