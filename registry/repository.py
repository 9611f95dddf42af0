"""``Registry``: the one interface the rest of coldchain uses for the registry database.

Every method is one transaction. Every mutating method (except checkpoint saves, see
registry/checkpoints.py) takes the writers' lock on the audit head first and writes its audit
entries in the same transaction, so a change and its audit entry commit or roll back together.
SQLAlchemy errors never leave this module: they become StoreError (transient, retry) or
RecordRejected (for good).

Thread safety: one Registry (engine + pool) may be shared by threads; each call uses its own
session.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from coldchain.exceptions import RecordRejected
from coldchain.rules.excursion import Excursion, ExcursionStatus
from registry import audit, checkpoints, custody, excursions, profiles
from registry.audit_trail import AuditTrail
from registry.db import make_engine, make_session_factory, translate_errors
from registry.ids import require_actor, require_identifier, require_shipment_id
from registry.keys import ApiKeyStore
from registry.models import (
    AuditRow,
    CustodyEventRow,
    ExcursionRow,
    ProfileAssignmentRow,
    ShipmentRow,
)
from registry.records import (
    AuditEntry,
    ChainReport,
    CustodyAction,
    CustodyEvent,
    CustodyLeg,
    CustodySource,
    ExcursionRecord,
    ProfileAssignment,
    Shipment,
)

__all__ = ["Registry", "open_registry", "wall_clock_ms"]

_ACTIONS = ("load", "unload", "handover", "deliver")
_SOURCES = ("api", "mqtt")


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def open_registry(
    url: str | URL, *, check_schema: bool = True, clock: Callable[[], int] = wall_clock_ms
) -> Registry:
    """Open the registry at ``url``. With ``check_schema`` (default) this connects once and
    raises StoreError unless the database is migrated to this code's head (`coldchain init`)."""
    registry = Registry(make_engine(url), clock=clock)
    if check_schema:
        from registry.migrate import check_schema as _check

        try:
            _check(registry.engine)
        except BaseException:
            registry.close()
            raise
    return registry


class Registry:
    def __init__(self, engine: Engine, *, clock: Callable[[], int] = wall_clock_ms) -> None:
        self.engine = engine
        self._sessions = make_session_factory(engine)
        self._clock = clock
        self.keys = ApiKeyStore(engine, self._sessions, clock)  # API keys (registry/keys.py)
        self.trail = AuditTrail(engine, self._sessions, clock)  # reads, heads, verify all

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @contextmanager
    def _read(self, what: str) -> Iterator[Session]:
        with translate_errors(what, self.engine.url), self._sessions() as session:
            yield session

    @contextmanager
    def _write(self, what: str) -> Iterator[tuple[Session, audit.AuditHead, int]]:
        """A write transaction: head locked first; yields (session, head, now_ms)."""
        with (
            translate_errors(what, self.engine.url),
            self._sessions() as session,
            session.begin(),
        ):
            head = audit.lock_head(session)
            yield session, head, self._clock()

    # -- excursions ------------------------------------------------------------------------

    def upsert_excursions(
        self,
        items: Iterable[Excursion],
        *,
        actor: str = "rules-engine",
        checkpoints: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> list[str]:
        """Insert or update excursions by id, in one transaction; returns the ids that changed.

        Idempotent: an excursion equal to the stored one changes nothing and writes no audit
        entry. The acknowledgement and the first ``detected_ms``/``detected_late`` survive.
        ``checkpoints`` (key -> state) are saved in the same transaction, so the evaluator's
        state and the excursions it produced commit together.
        """
        batch = list(items)
        changed: list[str] = []
        with self._write("upserting excursions") as (session, head, now):
            for exc in batch:
                row = excursions.apply(session, exc, now)
                if row is None:
                    continue
                session.flush()
                audit.append(
                    session,
                    head,
                    ts_ms=now,
                    actor=actor,
                    action="excursion.upsert",
                    entity="excursion",
                    entity_id=exc.id,
                    payload=excursions.row_payload(row),
                )
                changed.append(exc.id)
            for key, state in (checkpoints or {}).items():
                self._save_checkpoint(session, key, state, now)
        return changed

    def upsert_excursion(self, exc: Excursion, *, actor: str = "rules-engine") -> bool:
        """Insert or update one excursion; True if the stored row changed."""
        return bool(self.upsert_excursions([exc], actor=actor))

    def acknowledge_excursion(
        self, excursion_id: str, *, by: str, comment: str = "", at_ms: int | None = None
    ) -> ExcursionRecord:
        """Record an operator's acknowledgement (a later one replaces it; both are audited)."""
        _require(by, "acknowledged by")
        with self._write("acknowledging an excursion") as (session, head, now):
            row = session.get(ExcursionRow, excursion_id)
            if row is None:
                raise RecordRejected(f"no excursion with id {excursion_id!r}")
            row.ack_by = by
            row.ack_ms = now if at_ms is None else at_ms
            row.ack_comment = comment
            row.updated_ms = now
            session.flush()
            audit.append(
                session,
                head,
                ts_ms=now,
                actor=by,
                action="excursion.acknowledge",
                entity="excursion",
                entity_id=excursion_id,
                payload={"ack_by": by, "ack_ms": row.ack_ms, "ack_comment": comment},
            )
            return excursions.to_record(row)

    def get_excursion(self, excursion_id: str) -> ExcursionRecord | None:
        with self._read("reading an excursion") as session:
            row = session.get(ExcursionRow, excursion_id)
            return None if row is None else excursions.to_record(row)

    def find_excursions(
        self,
        *,
        asset_id: str | None = None,
        compartment_id: str | None = None,
        from_ms: int | None = None,
        to_ms: int | None = None,
        status: ExcursionStatus | Sequence[ExcursionStatus] | None = None,
        acknowledged: bool | None = None,
        superseded: bool | None = None,
        limit: int = 10_000,
    ) -> list[ExcursionRecord]:
        """Excursions touching [from_ms, to_ms) (open ones extend forever), oldest first."""
        with self._read("querying excursions") as session:
            return excursions.find(
                session,
                asset_id=asset_id,
                compartment_id=compartment_id,
                from_ms=from_ms,
                to_ms=to_ms,
                status=status,
                acknowledged=acknowledged,
                superseded=superseded,
                limit=limit,
            )

    # -- rules-engine checkpoints (not audited) -------------------------------------------

    def save_checkpoints(self, states: Mapping[str, Mapping[str, Any]]) -> None:
        """Save several checkpoints in one transaction (JSON-able dicts; else RecordRejected)."""
        now = self._clock()
        with self._read("saving checkpoints") as session, session.begin():
            for key, state in states.items():
                self._save_checkpoint(session, key, state, now)

    def save_checkpoint(self, key: str, state: Mapping[str, Any]) -> None:
        self.save_checkpoints({key: state})

    def load_checkpoint(self, key: str) -> dict[str, Any] | None:
        with self._read("loading a checkpoint") as session:
            return checkpoints.load(session, key)

    def load_checkpoints(self, prefix: str = "") -> dict[str, dict[str, Any]]:
        """All checkpoints whose key starts with ``prefix`` (all of them by default)."""
        with self._read("loading checkpoints") as session:
            return checkpoints.load_prefix(session, prefix)

    @staticmethod
    def _save_checkpoint(session: Session, key: str, state: Mapping[str, Any], now: int) -> None:
        _require(key, "checkpoint key")
        checkpoints.save(session, key, state, now)

    # -- profile assignments ---------------------------------------------------------------

    def assign_profile(
        self,
        asset_id: str,
        compartment_id: str,
        profile: str,
        *,
        from_ms: int,
        assigned_by: str,
        reason: str = "",
    ) -> ProfileAssignment:
        """Append an assignment: ``profile`` holds from ``from_ms`` until a later one."""
        require_identifier(asset_id, "asset_id")
        require_identifier(compartment_id, "compartment_id")
        _require(profile, "profile")
        _require(assigned_by, "assigned_by")
        with self._write("assigning a profile") as (session, head, now):
            row = ProfileAssignmentRow(
                asset_id=asset_id,
                compartment_id=compartment_id,
                profile=profile,
                from_ms=from_ms,
                assigned_by=assigned_by,
                reason=reason,
                recorded_ms=now,
            )
            session.add(row)
            session.flush()
            record = profiles.to_record(row)
            audit.append(
                session,
                head,
                ts_ms=now,
                actor=assigned_by,
                action="profile.assign",
                entity="compartment",
                entity_id=f"{asset_id}/{compartment_id}",
                payload=_asdict(record),
            )
            return record

    def profile_at(self, asset_id: str, compartment_id: str, t_ms: int) -> ProfileAssignment | None:
        """The assignment in force at ``t_ms`` (None: none recorded; use the fleet file's)."""
        with self._read("looking up a profile assignment") as session:
            return profiles.at(session, asset_id, compartment_id, t_ms)

    def profile_history(
        self, asset_id: str | None = None, compartment_id: str | None = None
    ) -> list[ProfileAssignment]:
        """Assignments (all, or of one asset / compartment) in (from_ms, id) order; what the
        rules engine loads at start-up."""
        with self._read("reading profile history") as session:
            return profiles.history(session, asset_id, compartment_id)

    # -- shipments and custody -------------------------------------------------------------

    def create_shipment(
        self,
        shipment_id: str,
        *,
        profile: str,
        actor: str,
        description: str = "",
        origin: str = "",
        destination: str = "",
        created_ms: int | None = None,
    ) -> tuple[Shipment, bool]:
        """Create a shipment; (shipment, created). Repeating an identical create is a no-op;
        a different one with the same id is RecordRejected, as is an id that is not a
        shipment id (coldchain.identifiers)."""
        require_shipment_id(shipment_id)
        _require(profile, "profile")
        with self._write("creating a shipment") as (session, head, now):
            existing = session.get(ShipmentRow, shipment_id)
            if existing is not None:
                old = custody.shipment_to_record(existing)
                same = (old.profile, old.description, old.origin, old.destination) == (
                    profile,
                    description,
                    origin,
                    destination,
                )
                if not same:
                    raise RecordRejected(f"shipment {shipment_id!r} exists with other details")
                return old, False
            row = ShipmentRow(
                id=shipment_id,
                profile=profile,
                description=description,
                origin=origin,
                destination=destination,
                created_ms=now if created_ms is None else created_ms,
            )
            session.add(row)
            session.flush()
            record = custody.shipment_to_record(row)
            audit.append(
                session,
                head,
                ts_ms=now,
                actor=actor,
                action="shipment.create",
                entity="shipment",
                entity_id=shipment_id,
                payload=_asdict(record),
            )
            return record, True

    def get_shipment(self, shipment_id: str) -> Shipment | None:
        with self._read("reading a shipment") as session:
            row = session.get(ShipmentRow, shipment_id)
            return None if row is None else custody.shipment_to_record(row)

    def list_shipments(self, *, after: str | None = None, limit: int = 100) -> list[Shipment]:
        """Shipments in id order; pass the last id seen as ``after`` for the next page."""
        with self._read("listing shipments") as session:
            return custody.list_shipments(session, after=after, limit=limit)

    def record_custody_event(
        self,
        shipment_id: str,
        action: CustodyAction,
        asset_id: str,
        compartment_id: str | None,
        *,
        ts_ms: int,
        actor: str,
        source: CustodySource = "api",
        received_ms: int | None = None,
    ) -> tuple[CustodyEvent, bool]:
        """Record a load/unload/handover scan; (event, created).

        Idempotent on (shipment_id, action, ts_ms, asset_id): a redelivered scan returns the
        stored event with created False and writes nothing. A "duplicate" that names another
        compartment or actor contradicts the stored scan: RecordRejected. So is an unknown
        shipment, and ids or an actor that break coldchain.identifiers' rules.
        """
        if action not in _ACTIONS:
            raise RecordRejected(f"custody action {action!r} is not one of {_ACTIONS}")
        if source not in _SOURCES:
            raise RecordRejected(f"custody source {source!r} is not one of {_SOURCES}")
        require_shipment_id(shipment_id)
        require_identifier(asset_id, "asset_id")
        if compartment_id is not None:
            require_identifier(compartment_id, "compartment_id")
        require_actor(actor)
        with self._write("recording a custody event") as (session, head, now):
            if session.get(ShipmentRow, shipment_id) is None:
                raise RecordRejected(f"custody event for unknown shipment {shipment_id!r}")
            existing = session.execute(
                select(CustodyEventRow).where(
                    CustodyEventRow.shipment_id == shipment_id,
                    CustodyEventRow.action == action,
                    CustodyEventRow.ts_ms == ts_ms,
                    CustodyEventRow.asset_id == asset_id,
                )
            ).scalar_one_or_none()
            if existing is not None:
                if (existing.compartment_id, existing.actor) != (compartment_id, actor):
                    raise RecordRejected(
                        f"custody {action} of {shipment_id!r} on {asset_id!r} at {ts_ms} is "
                        f"already recorded with compartment {existing.compartment_id!r} and "
                        f"actor {existing.actor!r}"
                    )
                return custody.event_to_record(existing), False
            row = CustodyEventRow(
                shipment_id=shipment_id,
                action=action,
                asset_id=asset_id,
                compartment_id=compartment_id,
                ts_ms=ts_ms,
                actor=actor,
                source=source,
                received_ms=now if received_ms is None else received_ms,
            )
            session.add(row)
            session.flush()
            record = custody.event_to_record(row)
            audit.append(
                session,
                head,
                ts_ms=now,
                actor=actor,
                action=f"custody.{action}",
                entity="shipment",
                entity_id=shipment_id,
                payload=_asdict(record),
            )
            return record, True

    def custody_events(self, shipment_id: str) -> list[CustodyEvent]:
        with self._read("reading custody events") as session:
            return custody.events_for(session, shipment_id)

    def custody_legs(self, shipment_id: str) -> list[CustodyLeg]:
        """Where the shipment was, leg by leg (see registry.custody.derive_legs)."""
        return custody.derive_legs(self.custody_events(shipment_id))

    def custody_legs_of(self, shipment_ids: Sequence[str]) -> dict[str, list[CustodyLeg]]:
        """``custody_legs`` of several shipments in one query: id -> legs ([] without scans)."""
        with self._read("reading custody events") as session:
            return custody.legs_for(session, shipment_ids)

    def shipments_on_asset(
        self, asset_id: str, from_ms: int, to_ms: int
    ) -> dict[str, list[CustodyLeg]]:
        """Shipments that had a leg on ``asset_id`` overlapping [from_ms, to_ms)."""
        with self._read("finding shipments on an asset") as session:
            return custody.shipments_on_asset(session, asset_id, from_ms, to_ms)

    # -- audit -----------------------------------------------------------------------------

    def audit_entries(
        self,
        *,
        entity: str | None = None,
        entity_id: str | None = None,
        after_seq: int = 0,
        limit: int = 1000,
    ) -> list[AuditEntry]:
        with self._read("reading the audit log") as session:
            query = select(AuditRow).where(AuditRow.seq > after_seq)
            if entity is not None:
                query = query.where(AuditRow.entity == entity)
            if entity_id is not None:
                query = query.where(AuditRow.entity_id == entity_id)
            rows = session.execute(query.order_by(AuditRow.seq).limit(limit)).scalars()
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

    def audit_head(self) -> tuple[int, str]:
        """(seq, hash) of the last entry: publish it (reports, another system) as an anchor."""
        with self._read("reading the audit head") as session:
            head = audit.read_head(session)
            return head.seq, head.hash

    def verify_audit_chain(self, *, anchor: tuple[int, str] | None = None) -> ChainReport:
        """Check every link of the audit chain; see registry.audit.verify_chain."""
        with self._read("verifying the audit chain") as session:
            # One snapshot for the whole walk, so concurrent appends cannot look like tampering:
            # SQLite's transaction is one already; PostgreSQL's default READ COMMITTED is not.
            if self.engine.dialect.name == "postgresql":
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            return audit.verify_chain(session, anchor=anchor)


def _require(value: str, name: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise RecordRejected(f"{name} must be a non-empty string, got {value!r}")


def _asdict(record: Any) -> dict[str, Any]:
    return dataclasses.asdict(record)
