"""Fencing leases: one owner at a time for a named resource (a rules partition), and a fencing
token that lets the registry refuse a former owner's writes.

A lease row (``leases``) names its ``owner``, a fencing ``token`` and an expiry on the
registry's clock. ``acquire_lease`` takes it when it is free, released, expired, or already
the caller's; the token grows by one each time another owner takes it, so a token is never
handed out twice. The holder renews it (``renew_lease``) well before it expires and releases
it on a clean stop (``release_lease``). A write made for the resource passes the holder's
``Fence`` (name, owner, token): the registry checks it in the write's own transaction
(``check_fence``) and raises ``LeaseLost``, writing nothing, once another owner holds the
lease. This is the fencing-token scheme of Kleppmann's "How to do distributed locking"
(2016): expiry decides when another owner may take over; the token, not the clock, decides
whose writes count, so a holder that stalled past its expiry (GC pause, SIGSTOP, a slow
disk) cannot overwrite its successor's work.

A lease that expired but that nobody took is still its owner's: its token still writes, and
its owner may renew it or acquire it again under the same token (nobody wrote in between).

Concurrency: every call is one transaction whose first statement writes the lease row (an
``INSERT ... ON CONFLICT DO NOTHING`` or a conditional ``UPDATE``): on PostgreSQL a row lock
held to commit, which two acquirers take in turn (the second re-reads the row the first
committed); on SQLite the database write lock, taken before any read. The fence check is an
``UPDATE`` of the row too, so an acquisition waits for a write in progress under the old
token and that write never commits after its successor took over. Not audited
(``UNAUDITED_TABLES``): operational state, renewed every few seconds; takeovers are logged by
the workers.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from coldchain.exceptions import LeaseLost, RecordInvalid
from registry.facade.base import RegistryBase
from registry.models import LEASE_OWNER, LeaseRow

__all__ = ["Fence", "Lease", "LeaseMethods", "check_fence"]

_NAME_MAX = 200


@dataclass(frozen=True, slots=True)
class Fence:
    """What a lease holder writes under: the lease ``name``, its ``owner`` and the fencing
    ``token`` it acquired it with (``Lease.fence()``)."""

    name: str
    owner: str
    token: int


@dataclass(frozen=True, slots=True)
class Lease:
    """A lease row as stored. ``owner`` None: released (or never taken). Times are epoch ms
    on the registry's clock: ``acquired_ms`` when ``token`` was issued, ``renewed_ms`` the last
    acquisition or renewal, ``expires_ms`` when another owner may take it."""

    name: str
    owner: str | None
    token: int
    acquired_ms: int
    renewed_ms: int
    expires_ms: int

    def held_by(self, owner: str) -> bool:
        """True when ``owner`` holds it (acquired and not taken over since)."""
        return self.owner is not None and self.owner == owner

    def fence(self) -> Fence:
        """The fence its owner writes under. ValueError for a released lease."""
        if self.owner is None:
            raise ValueError(f"lease {self.name!r} is released: it fences nothing")
        return Fence(self.name, self.owner, self.token)


def _lease(row: LeaseRow) -> Lease:
    return Lease(row.name, row.owner, row.token, row.acquired_ms, row.renewed_ms, row.expires_ms)


def _check_names(name: str, owner: str) -> None:
    for what, value, limit in (("lease name", name, _NAME_MAX), ("owner", owner, LEASE_OWNER)):
        if not isinstance(value, str) or not value.strip() or len(value) > limit:
            raise RecordInvalid(
                f"lease {what} must be a non-blank string of at most {limit} characters, "
                f"got {value!r}"
            )


def _row(session: Session, name: str) -> LeaseRow | None:
    return session.execute(select(LeaseRow).where(LeaseRow.name == name)).scalar_one_or_none()


def _lost(session: Session, fence: Fence) -> LeaseLost:
    row = _row(session, fence.name)
    return LeaseLost(
        fence.name,
        fence.owner,
        fence.token,
        holder=None if row is None else row.owner,
        holder_token=None if row is None else row.token,
    )


def _fenced(fence: Fence) -> tuple[object, ...]:
    return (
        LeaseRow.name == fence.name,
        LeaseRow.owner == fence.owner,
        LeaseRow.token == fence.token,
    )


def check_fence(session: Session, fence: Fence) -> None:
    """In the caller's write transaction: LeaseLost unless ``fence`` still holds its lease.

    An ``UPDATE`` that changes nothing but locks the row (PostgreSQL) or takes the write lock
    (SQLite), so the lease cannot change hands before the caller's transaction ends."""
    done = session.execute(
        update(LeaseRow)
        .where(*_fenced(fence))  # type: ignore[arg-type]
        .values(token=LeaseRow.token)
        .execution_options(synchronize_session=False)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise _lost(session, fence)


def _insert_free(session: Session, name: str, now: int) -> None:
    """The lease row, free, unless it exists (race-free: ON CONFLICT DO NOTHING)."""
    values = {
        "name": name,
        "owner": None,
        "token": 0,
        "acquired_ms": now,
        "renewed_ms": now,
        "expires_ms": now,
    }
    dialect = session.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        insert = sqlite_insert if dialect == "sqlite" else pg_insert
        stmt = insert(LeaseRow).values(**values).on_conflict_do_nothing(index_elements=["name"])
        session.execute(stmt)
    elif session.get(LeaseRow, name) is None:  # other backends: not race-free
        session.add(LeaseRow(**values))
        session.flush()


class LeaseMethods(RegistryBase):
    """``Registry`` methods for fencing leases (one transaction each; module docstring)."""

    def acquire_lease(
        self, name: str, owner: str, *, ttl_ms: int, now_ms: int | None = None
    ) -> Lease:
        """Take lease ``name`` for ``owner`` until ``now_ms + ttl_ms`` (registry clock by
        default) if nobody holds it, it expired, or ``owner`` holds it already (then this
        renews it under the same token); returns the lease as stored after the call:
        ``lease.held_by(owner)`` says whether it was taken, else ``lease.owner`` holds it until
        ``lease.expires_ms``. The token grows by one when the lease changes owner (from 1).

        ``owner`` must be unique per running process (a restarted process is another owner).
        RecordInvalid: a blank or too long name or owner, ``ttl_ms`` not positive."""
        _check_names(name, owner)
        if ttl_ms <= 0:
            raise RecordInvalid(f"lease ttl_ms must be positive, got {ttl_ms}")
        now = self._clock() if now_ms is None else now_ms
        mine = LeaseRow.owner == owner
        with self._read("acquiring a lease") as session, session.begin():
            _insert_free(session, name, now)
            session.execute(
                update(LeaseRow)
                .where(
                    LeaseRow.name == name,
                    or_(mine, LeaseRow.owner.is_(None), LeaseRow.expires_ms <= now),
                )
                .values(
                    owner=owner,
                    token=case((mine, LeaseRow.token), else_=LeaseRow.token + 1),
                    acquired_ms=case((mine, LeaseRow.acquired_ms), else_=now),
                    renewed_ms=now,
                    expires_ms=now + ttl_ms,
                )
                .execution_options(synchronize_session=False)
            )
            row = _row(session, name)
            assert row is not None  # inserted above if it was missing
            return _lease(row)

    def renew_lease(self, fence: Fence, *, ttl_ms: int, now_ms: int | None = None) -> Lease:
        """Extend the lease ``fence`` holds to ``now_ms + ttl_ms``; the lease as stored.
        LeaseLost (nothing written) once another owner took it or it was released."""
        if ttl_ms <= 0:
            raise RecordInvalid(f"lease ttl_ms must be positive, got {ttl_ms}")
        now = self._clock() if now_ms is None else now_ms
        with self._read("renewing a lease") as session, session.begin():
            done = session.execute(
                update(LeaseRow)
                .where(*_fenced(fence))  # type: ignore[arg-type]
                .values(renewed_ms=now, expires_ms=now + ttl_ms)
                .execution_options(synchronize_session=False)
            )
            if done.rowcount != 1:  # type: ignore[attr-defined]
                raise _lost(session, fence)
            row = _row(session, fence.name)
            assert row is not None
            return _lease(row)

    def release_lease(self, fence: Fence, *, now_ms: int | None = None) -> bool:
        """Release the lease if ``fence`` still holds it (another owner may take it at once;
        the token stays, the next owner's is one more); False, and nothing changed, if it is
        not held under ``fence`` (a lease is never released for someone else)."""
        now = self._clock() if now_ms is None else now_ms
        with self._read("releasing a lease") as session, session.begin():
            done = session.execute(
                update(LeaseRow)
                .where(*_fenced(fence))  # type: ignore[arg-type]
                .values(owner=None, expires_ms=now)
                .execution_options(synchronize_session=False)
            )
            return int(done.rowcount) == 1  # type: ignore[attr-defined]

    def get_lease(self, name: str) -> Lease | None:
        """The lease row ``name`` (None: never acquired)."""
        with self._read("reading a lease") as session:
            row = _row(session, name)
            return None if row is None else _lease(row)

    def leases(self) -> list[Lease]:
        """Every lease row, by name (operators: who owns which partition)."""
        with self._read("reading leases") as session:
            rows = session.execute(select(LeaseRow).order_by(LeaseRow.name)).scalars()
            return [_lease(r) for r in rows]
