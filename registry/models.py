"""Registry tables (SQLAlchemy 2 typed ORM). Portable: the same metadata runs on SQLite and
PostgreSQL.

Conventions (see docs/registry.md for the why):
- every time is integer epoch milliseconds UTC (``BigInteger``), like device time everywhere else
  in coldchain; no ``DateTime`` columns, so no time-zone conversion differs between backends;
- ids are bounded strings; enumerations are short strings guarded by CHECK constraints;
- JSON is stored as ``Text`` holding canonical JSON, so the audit hash does not depend on how a
  backend normalises a ``JSON``/``JSONB`` value;
- constraints and indexes are named by the naming convention below, so migrations can refer to
  them by name on every backend (SQLite batch mode needs names).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "ALERT_DELIVERY_STATES",
    "AlertDeliveryRow",
    "AlertOutboxRow",
    "ApiKeyRow",
    "AuditHeadRow",
    "AuditReadHeadRow",
    "AuditReadRow",
    "AuditRow",
    "Base",
    "CheckpointRow",
    "CustodyEventRow",
    "ExcursionAckRow",
    "ExcursionRow",
    "IntegrityEvidenceRow",
    "LeaseRow",
    "ProfileAssignmentRow",
    "ShipmentRow",
    "SpoolIdentityRow",
]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID = 64  # coldchain identifiers (assets, compartments) are at most 64 characters
SHIPMENT_ID = 128  # shipment ids come from outside (SSCC, GRAI, customer references)
ACTOR = 200  # as coldchain.rules.profiles.ProfileAssignment.by
HASH = 64  # sha256 hex
LEASE_OWNER = 200  # a lease holder's name (registry/leases.py)
PLACE = 200  # origin, destination, shipper, consignee: a name or a GS1 GLN

# Shipment statuses: the first three follow the custody scans, "cancelled" is set by a person.
SHIPMENT_STATUSES = ("registered", "in_custody", "delivered", "cancelled")
# What became of the product after an excursion (the latest acknowledgement's decision).
DISPOSITIONS = ("pending", "quarantined", "released", "returned", "destroyed", "not_affected")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ExcursionRow(Base):
    """One excursion (coldchain.rules.Excursion) plus its acknowledgement."""

    __tablename__ = "excursions"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'closed', 'recovered')", name="status"),
        CheckConstraint("severity IN ('info', 'warning', 'critical')", name="severity"),
        CheckConstraint("end_ms IS NULL OR end_ms >= start_ms", name="end_after_start"),
        Index(None, "asset_id", "compartment_id", "start_ms"),
        Index(None, "status", "start_ms"),
        Index(None, "start_ms"),
    )

    id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    asset_id: Mapped[str] = mapped_column(String(ID))
    compartment_id: Mapped[str] = mapped_column(String(ID))
    rule: Mapped[str] = mapped_column(String(ID))
    kind: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    start_ms: Mapped[int] = mapped_column(BigInteger)
    end_ms: Mapped[int | None] = mapped_column(BigInteger)
    detected_ms: Mapped[int] = mapped_column(BigInteger)
    detected_late: Mapped[bool] = mapped_column(Boolean)
    peak_c: Mapped[float | None] = mapped_column(Float)
    degree_minutes: Mapped[float] = mapped_column(Float)
    profile: Mapped[str] = mapped_column(String(ID))
    detail: Mapped[str] = mapped_column(Text)
    # A recomputation showed it never happened as reported; kept for the audit trail.
    superseded: Mapped[bool] = mapped_column(Boolean)
    # Time actually beyond the limits and the last return within them (temperature-limit
    # rules; NULL for other kinds and rows written before revision 0002).
    out_of_range_s: Mapped[float | None] = mapped_column(Float)
    returned_ms: Mapped[int | None] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)
    # The latest acknowledgement, for listings (revision 0007 keeps every one of them in
    # excursion_acknowledgements; these columns repeat the last and count them).
    ack_by: Mapped[str | None] = mapped_column(String(ACTOR))
    ack_ms: Mapped[int | None] = mapped_column(BigInteger)
    ack_comment: Mapped[str | None] = mapped_column(Text)
    ack_disposition: Mapped[str | None] = mapped_column(String(16))
    ack_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ExcursionAckRow(Base):
    """One acknowledgement of an excursion by an operator. Append-only (triggers refuse UPDATE
    and DELETE): a second acknowledgement is a new row, never an overwrite."""

    __tablename__ = "excursion_acknowledgements"
    __table_args__ = (
        UniqueConstraint("excursion_id", "seq"),
        CheckConstraint(_in("disposition", DISPOSITIONS), name="disposition"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    excursion_id: Mapped[str] = mapped_column(
        String(ID), ForeignKey("excursions.id", ondelete="RESTRICT")
    )
    seq: Mapped[int] = mapped_column(Integer)  # 1, 2, ... per excursion
    ack_ms: Mapped[int] = mapped_column(BigInteger)  # wall clock of the registry
    by: Mapped[str] = mapped_column(String(ACTOR))
    role: Mapped[str | None] = mapped_column(String(16))
    key_id: Mapped[str | None] = mapped_column(String(64))
    comment: Mapped[str] = mapped_column(Text)
    root_cause: Mapped[str] = mapped_column(Text)
    # NULL only for acknowledgements recorded before revision 0007 (no disposition then).
    disposition: Mapped[str | None] = mapped_column(String(16))


class ProfileAssignmentRow(Base):
    """Which product profile a compartment holds from ``from_ms`` on. Insert-only history."""

    __tablename__ = "profile_assignments"
    __table_args__ = (Index(None, "asset_id", "compartment_id", "from_ms"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    asset_id: Mapped[str] = mapped_column(String(ID))
    compartment_id: Mapped[str] = mapped_column(String(ID))
    profile: Mapped[str] = mapped_column(String(ID))
    from_ms: Mapped[int] = mapped_column(BigInteger)
    assigned_by: Mapped[str] = mapped_column(String(ACTOR))
    reason: Mapped[str] = mapped_column(Text)
    recorded_ms: Mapped[int] = mapped_column(BigInteger)


class CheckpointRow(Base):
    """The streaming rules evaluator's state for one key, as JSON text."""

    __tablename__ = "rule_checkpoints"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    state: Mapped[str] = mapped_column(Text)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class ShipmentRow(Base):
    """A shipment: what a business system registered, and where its custody stands.

    ``status``, ``custody_from_ms`` and ``custody_to_ms`` are derived from the custody scans
    (registry.custody.shipment_state) and rewritten in the transaction of every scan, so
    listings can filter on them; ``cancelled`` is set only by ``cancel_shipment``.
    ``create_body`` is the canonical JSON of the create request, what a repeated create is
    compared with (the shipment may have been updated since).
    """

    __tablename__ = "shipments"
    __table_args__ = (
        CheckConstraint(_in("status", SHIPMENT_STATUSES), name="status"),
        Index(None, "shipper", "id"),
        Index(None, "status", "id"),
        Index(None, "created_ms"),
        Index(None, "custody_from_ms"),
    )

    id: Mapped[str] = mapped_column(String(SHIPMENT_ID), primary_key=True)
    profile: Mapped[str] = mapped_column(String(ID))
    description: Mapped[str] = mapped_column(Text)
    origin: Mapped[str] = mapped_column(String(PLACE))
    destination: Mapped[str] = mapped_column(String(PLACE))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    # Revision 0007: the business facts of the write API.
    shipper: Mapped[str] = mapped_column(String(PLACE), default="", server_default="")
    consignee: Mapped[str] = mapped_column(String(PLACE), default="", server_default="")
    quantity: Mapped[float | None] = mapped_column(Float)
    unit: Mapped[str | None] = mapped_column(String(32))
    planned_departure_ms: Mapped[int | None] = mapped_column(BigInteger)
    planned_arrival_ms: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(
        String(16), default="registered", server_default="registered"
    )
    custody_from_ms: Mapped[int | None] = mapped_column(BigInteger)
    custody_to_ms: Mapped[int | None] = mapped_column(BigInteger)
    cancelled_ms: Mapped[int | None] = mapped_column(BigInteger)
    cancelled_by: Mapped[str | None] = mapped_column(String(ACTOR))
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    updated_ms: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    create_body: Mapped[str | None] = mapped_column(Text)


class CustodyEventRow(Base):
    """A load / unload / handover scan. The unique key makes a redelivered scan a no-op."""

    __tablename__ = "custody_events"
    __table_args__ = (
        UniqueConstraint("shipment_id", "action", "ts_ms", "asset_id"),
        CheckConstraint("action IN ('load', 'unload', 'handover', 'deliver')", name="action"),
        CheckConstraint("source IN ('api', 'mqtt')", name="source"),
        Index(None, "asset_id", "ts_ms"),
        # A unique index, not a constraint: SQLite can add it without rebuilding the table.
        Index(None, "event_id", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    shipment_id: Mapped[str] = mapped_column(
        String(SHIPMENT_ID), ForeignKey("shipments.id", ondelete="RESTRICT")
    )
    action: Mapped[str] = mapped_column(String(16))
    asset_id: Mapped[str] = mapped_column(String(ID))
    compartment_id: Mapped[str | None] = mapped_column(String(ID))
    ts_ms: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(ACTOR))
    source: Mapped[str] = mapped_column(String(8))
    received_ms: Mapped[int] = mapped_column(BigInteger)
    # The caller's id for the event (write API; revision 0007): what makes a retried POST the
    # same event. NULL for MQTT scans, identified by their natural key above.
    event_id: Mapped[str | None] = mapped_column(String(SHIPMENT_ID))


class IntegrityEvidenceRow(Base):
    """A conflicting rewrite of a device's sample (coldchain.rules.Rewrite): same device and
    device time, another ``seq`` or value. ``changes`` is canonical JSON
    ``{series: [old, new]}``; ``kept`` names the value the stored series keeps ("new")."""

    __tablename__ = "integrity_evidence"
    __table_args__ = (Index(None, "asset_id", "ts_ms"), Index(None, "device_id", "ts_ms"))

    id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    asset_id: Mapped[str] = mapped_column(String(ID))
    device_id: Mapped[str] = mapped_column(String(ID))
    ts_ms: Mapped[int] = mapped_column(BigInteger)
    old_seq: Mapped[int] = mapped_column(BigInteger)
    new_seq: Mapped[int] = mapped_column(BigInteger)
    changes: Mapped[str] = mapped_column(Text)
    kept: Mapped[str] = mapped_column(String(16))
    detected_ms: Mapped[int] = mapped_column(BigInteger)


class AuditRow(Base):
    """Append-only, hash-chained log: ``hash = sha256(prev_hash + canonical JSON of the row)``."""

    __tablename__ = "audit_log"
    __table_args__ = (Index(None, "entity", "entity_id"),)

    # Assigned by the writer as head.seq + 1 under the head row lock, never by the database:
    # a gap in seq is a deleted row.
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    ts_ms: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(ACTOR))
    action: Mapped[str] = mapped_column(String(64))
    entity: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str] = mapped_column(String(SHIPMENT_ID + 32))
    payload: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(HASH))
    hash: Mapped[str] = mapped_column(String(HASH), unique=True)


class AuditHeadRow(Base):
    """Exactly one row (id 1): the last seq and hash of the audit chain.

    Every mutating transaction updates it *first*, which serialises writers on every backend
    (a row lock on PostgreSQL, the write lock on SQLite) so the chain never forks. It also lets
    ``verify_audit_chain`` notice a truncated tail.
    """

    __tablename__ = "audit_head"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(HASH))


class SpoolIdentityRow(Base):
    """The spool an ingest process (``client_id``, its MQTT session) writes, recorded outside
    the spool so that a deleted, replaced or rolled-back spool file is noticed at start-up.

    ``high_water`` is a lower bound of the spool's row-id sequence (raised periodically); a spool
    whose sequence is below it is an older copy. ``problem`` (``spool_replaced`` or
    ``spool_corrupt``) stays set until an operator accepts it (``coldchain spool accept``).
    """

    __tablename__ = "spool_identities"
    __table_args__ = (
        CheckConstraint(
            "problem IS NULL OR problem IN ('spool_replaced', 'spool_corrupt')", name="problem"
        ),
    )

    client_id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    spool_id: Mapped[str] = mapped_column(String(ID))
    spool_path: Mapped[str] = mapped_column(Text)
    high_water: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)
    problem: Mapped[str | None] = mapped_column(String(32))
    problem_detail: Mapped[str] = mapped_column(Text)
    problem_ms: Mapped[int | None] = mapped_column(BigInteger)


class AuditReadRow(Base):
    """The read chain: regulator reads (trace, report, export), hash-chained like ``audit_log``
    with its own head, so audited reads never wait on the writers' lock (docs/registry.md)."""

    __tablename__ = "audit_read_log"
    __table_args__ = (Index(None, "entity", "entity_id"),)

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    ts_ms: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(ACTOR))
    action: Mapped[str] = mapped_column(String(64))
    entity: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str] = mapped_column(String(SHIPMENT_ID + 32))
    payload: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(HASH))
    hash: Mapped[str] = mapped_column(String(HASH), unique=True)


class AuditReadHeadRow(Base):
    """Exactly one row (id 1): the last seq and hash of the read chain (as ``audit_head``)."""

    __tablename__ = "audit_read_head"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(HASH))


class ApiKeyRow(Base):
    """An API key: the SHA-256 of its secret (never the secret), its role, expiry, revocation
    and, for a regulator, an optional scope (canonical JSON lists). Rows are never deleted: a
    revoked key stays for the audit trail (registry/keys.py)."""

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("role IN ('admin', 'operator', 'integrator', 'regulator')", name="role"),
        CheckConstraint(
            "role = 'regulator' OR (scope_shippers IS NULL AND scope_shipments IS NULL)",
            name="scope_regulator_only",
        ),
        Index(None, "secret_sha256", unique=True),
    )

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    secret_sha256: Mapped[str] = mapped_column(String(HASH))
    role: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(ACTOR))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(String(ACTOR))
    expires_ms: Mapped[int | None] = mapped_column(BigInteger)
    revoked_ms: Mapped[int | None] = mapped_column(BigInteger)
    revoked_by: Mapped[str | None] = mapped_column(String(ACTOR))
    # JSON lists; NULL: no restriction of that kind (both NULL: the regulator sees everything).
    scope_shippers: Mapped[str | None] = mapped_column(Text)
    scope_shipments: Mapped[str | None] = mapped_column(Text)


class AlertOutboxRow(Base):
    """A notification queued in the transaction that recorded its change (one per change).

    ``key`` is the idempotency key (``<excursion id>:<change>``, ingest.rules_io.alert_key),
    unique: queuing the same change twice is a no-op. ``payload`` is the alert (JSON text).
    It is routed (``routed_ms`` set, one ``AlertDeliveryRow`` per channel its routes chose) once
    ``route_after_ms`` has come: at once for a change, later for an escalation timer. Not
    audited: delivery bookkeeping derived from audited excursion changes (docs/registry.md).
    """

    __tablename__ = "alert_outbox"
    __table_args__ = (
        UniqueConstraint("key"),
        Index(None, "routed_ms", "route_after_ms"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200))
    payload: Mapped[str] = mapped_column(Text)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    route_after_ms: Mapped[int] = mapped_column(BigInteger)
    routed_ms: Mapped[int | None] = mapped_column(BigInteger)


ALERT_DELIVERY_STATES = ("pending", "delivered", "dropped")


class AlertDeliveryRow(Base):
    """One outbox entry's delivery to one configured channel (docs/alerts.md).

    ``state``: ``pending`` (retried from ``next_attempt_ms`` on), ``delivered`` (the channel
    acknowledged it at ``delivered_ms``) or ``dropped`` (a route's quiet hours said so;
    ``last_error`` says why). ``attempts`` counts attempts started; a process holds the row
    while ``lease_owner``/``lease_until_ms`` say so, so two deliverers never send it at once.
    Not audited, like the outbox.
    """

    __tablename__ = "alert_deliveries"
    __table_args__ = (
        UniqueConstraint("outbox_id", "channel"),
        CheckConstraint(
            "state IN (" + ", ".join(f"'{s}'" for s in ALERT_DELIVERY_STATES) + ")",
            name="state",
        ),
        Index(None, "state", "next_attempt_ms"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    outbox_id: Mapped[int] = mapped_column(ForeignKey("alert_outbox.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(10))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_ms: Mapped[int] = mapped_column(BigInteger)
    delivered_ms: Mapped[int | None] = mapped_column(BigInteger)
    last_error: Mapped[str] = mapped_column(Text)
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_until_ms: Mapped[int | None] = mapped_column(BigInteger)


class LeaseRow(Base):
    """A fencing lease (registry/leases.py): who may write for ``name`` (a rules partition,
    ``rules-partition-<k>``) and under which fencing ``token``.

    ``token`` grows by one each time another owner acquires the lease (never reused);
    ``owner`` NULL: released. ``expires_ms`` is on the registry's clock: once it has passed,
    another owner may take the lease. Not audited: operational state renewed every few seconds
    (docs/registry.md).
    """

    __tablename__ = "leases"
    __table_args__ = (CheckConstraint("token >= 0", name="token"),)

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(LEASE_OWNER))
    token: Mapped[int] = mapped_column(BigInteger)
    acquired_ms: Mapped[int] = mapped_column(BigInteger)
    renewed_ms: Mapped[int] = mapped_column(BigInteger)
    expires_ms: Mapped[int] = mapped_column(BigInteger)
