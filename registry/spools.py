"""Spool identities: which spool file each ingest client writes (``Registry`` methods).

The spool is the only copy of what ingest acknowledged and InfluxDB does not hold yet. Its
identity (a random id stored inside the spool) and a lower bound of its row-id sequence are
recorded here, outside the spool, keyed by the ingest client id (its MQTT session), so that a
spool deleted, replaced or restored from an older copy while ingest was stopped is noticed at
the next start instead of silently losing acknowledged readings. docs/operations.md.

Registering a spool and accepting a problem are audited (they mark possible data loss);
raising the high-water mark is not (it is a cache, like rule checkpoints).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, cast

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from coldchain.exceptions import RecordRejected
from registry import audit
from registry.models import SpoolIdentityRow
from registry.records import SpoolIdentity, SpoolProblem

__all__ = ["SpoolIdentities"]

_PROBLEMS = ("spool_replaced", "spool_corrupt")


def _record(row: SpoolIdentityRow) -> SpoolIdentity:
    return SpoolIdentity(
        client_id=row.client_id,
        spool_id=row.spool_id,
        spool_path=row.spool_path,
        high_water=row.high_water,
        updated_ms=row.updated_ms,
        problem=cast(SpoolProblem | None, row.problem),
        problem_detail=row.problem_detail,
        problem_ms=row.problem_ms,
    )


def _payload(record: SpoolIdentity) -> dict[str, Any]:
    return {
        "spool_id": record.spool_id,
        "spool_path": record.spool_path,
        "high_water": record.high_water,
        "problem": record.problem,
        "problem_detail": record.problem_detail,
    }


class SpoolIdentities:
    """Mixin of ``registry.Registry``: the spool-identity methods (one transaction each)."""

    _clock: Callable[[], int]

    def _read(self, what: str) -> AbstractContextManager[Session]:
        raise NotImplementedError  # provided by Registry

    def _write(self, what: str) -> AbstractContextManager[tuple[Session, audit.AuditHead, int]]:
        raise NotImplementedError  # provided by Registry

    def spool_identity(self, client_id: str) -> SpoolIdentity | None:
        """The spool recorded for ``client_id``, or None before its first start."""
        with self._read("reading a spool identity") as session:
            row = session.get(SpoolIdentityRow, client_id)
            return None if row is None else _record(row)

    def spool_identities(self) -> list[SpoolIdentity]:
        """Every client's spool, by client id."""
        with self._read("reading spool identities") as session:
            rows = session.execute(select(SpoolIdentityRow).order_by(SpoolIdentityRow.client_id))
            return [_record(r) for r in rows.scalars()]

    def register_spool(
        self,
        client_id: str,
        spool_id: str,
        spool_path: str,
        high_water: int,
        *,
        problem: SpoolProblem | None = None,
        detail: str = "",
        actor: str = "ingest",
    ) -> SpoolIdentity:
        """Record that ``client_id`` now writes spool ``spool_id`` (insert or replace), with a
        ``problem`` an operator must accept (``accept_spool``) when the previous one was lost.

        A problem already pending is kept unless a new one replaces it. Audited.
        """
        if problem is not None and problem not in _PROBLEMS:
            raise RecordRejected(f"unknown spool problem {problem!r}")
        with self._write("registering a spool") as (session, head, now):
            row = session.get(SpoolIdentityRow, client_id)
            if row is None:
                row = SpoolIdentityRow(client_id=client_id, problem=None, problem_detail="")
                session.add(row)
            row.spool_id = spool_id
            row.spool_path = spool_path
            row.high_water = high_water
            row.updated_ms = now
            if problem is not None:
                row.problem, row.problem_detail, row.problem_ms = problem, detail, now
            session.flush()
            record = _record(row)
            audit.append(
                session,
                head,
                ts_ms=now,
                actor=actor,
                action="spool.register",
                entity="ingest",
                entity_id=client_id,
                payload=_payload(record),
            )
            return record

    def advance_spool_high_water(self, client_id: str, spool_id: str, high_water: int) -> bool:
        """Raise the recorded high-water mark of ``client_id``'s spool ``spool_id``; False when
        the record names another spool or already holds a higher mark. Not audited."""
        now = self._clock()
        with self._read("advancing a spool high-water mark") as session, session.begin():
            result = session.execute(
                update(SpoolIdentityRow)
                .where(
                    SpoolIdentityRow.client_id == client_id,
                    SpoolIdentityRow.spool_id == spool_id,
                    SpoolIdentityRow.high_water < high_water,
                )
                .values(high_water=high_water, updated_ms=now)
            )
            return bool(getattr(result, "rowcount", 0))

    def accept_spool(self, client_id: str, *, by: str, comment: str = "") -> SpoolIdentity:
        """An operator accepts the spool problem of ``client_id`` (what was lost is known or
        recovered by hand); the running ingest clears its health problem. Idempotent: with no
        problem pending nothing changes. Audited. RecordRejected if the client is unknown."""
        if not by.strip():
            raise RecordRejected("accepted by: must not be empty")
        with self._write("accepting a spool") as (session, head, now):
            row = session.get(SpoolIdentityRow, client_id)
            if row is None:
                raise RecordRejected(f"no spool recorded for ingest client {client_id!r}")
            if row.problem is None:
                return _record(row)
            before = _record(row)
            row.problem, row.problem_ms = None, None
            row.updated_ms = now
            session.flush()
            audit.append(
                session,
                head,
                ts_ms=now,
                actor=by,
                action="spool.accept",
                entity="ingest",
                entity_id=client_id,
                payload=_payload(before) | {"comment": comment},
            )
            return _record(row)
