"""Plain, immutable values the registry returns (never live ORM objects)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from coldchain.rules.excursion import Excursion

__all__ = [
    "Acknowledgement",
    "AuditEntry",
    "ChainReport",
    "CustodyAction",
    "CustodyEvent",
    "CustodyLeg",
    "CustodySource",
    "Disposition",
    "ExcursionRecord",
    "ProfileAssignment",
    "Shipment",
    "ShipmentStatus",
    "SpoolIdentity",
    "SpoolProblem",
]

CustodyAction = Literal["load", "unload", "handover", "deliver"]
CustodySource = Literal["api", "mqtt"]
SpoolProblem = Literal["spool_replaced", "spool_corrupt"]
ShipmentStatus = Literal["registered", "in_custody", "delivered", "cancelled"]
Disposition = Literal["pending", "quarantined", "released", "returned", "destroyed", "not_affected"]


@dataclass(frozen=True, slots=True)
class ExcursionRecord:
    """A stored excursion with its acknowledgement and last change time (wall clock)."""

    excursion: Excursion
    updated_ms: int
    ack_by: str | None = None
    ack_ms: int | None = None
    ack_comment: str | None = None
    # The latest acknowledgement's disposition, and how many there are (the history:
    # Registry.excursion_acknowledgements).
    ack_disposition: str | None = None
    ack_count: int = 0

    @property
    def acknowledged(self) -> bool:
        return self.ack_ms is not None


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """One acknowledgement of an excursion (``seq`` 1, 2, ... per excursion; never changed).

    ``by`` is who recorded it (for the HTTP API the key's identity, never the secret; for the
    CLI the person named), ``role`` and ``key_id`` the API key's when there was one,
    ``ack_ms`` the registry's wall clock. ``disposition`` is None only for acknowledgements
    recorded before revision 0007.
    """

    excursion_id: str
    seq: int
    ack_ms: int
    by: str
    role: str | None
    key_id: str | None
    comment: str
    root_cause: str
    disposition: Disposition | None


@dataclass(frozen=True, slots=True)
class ProfileAssignment:
    id: int
    asset_id: str
    compartment_id: str
    profile: str
    from_ms: int
    assigned_by: str
    reason: str
    recorded_ms: int


@dataclass(frozen=True, slots=True)
class Shipment:
    """A registered shipment. The fields after ``created_ms`` came with the write API
    (revision 0007; empty or None for shipments registered before it).

    ``status`` follows the custody scans (``registered`` before the first, ``in_custody``
    while a leg is open, ``delivered`` after the delivery) unless ``cancelled``;
    ``custody_from_ms``/``custody_to_ms`` span its custody (device time; ``custody_to_ms``
    None while in custody). ``quantity`` is in ``unit`` (free text, UN/ECE Recommendation 20
    codes suggested); planned times are epoch ms UTC.
    """

    id: str
    profile: str
    description: str
    origin: str
    destination: str
    created_ms: int
    shipper: str = ""
    consignee: str = ""
    quantity: float | None = None
    unit: str | None = None
    planned_departure_ms: int | None = None
    planned_arrival_ms: int | None = None
    status: ShipmentStatus = "registered"
    custody_from_ms: int | None = None
    custody_to_ms: int | None = None
    cancelled_ms: int | None = None
    cancelled_by: str | None = None
    cancel_reason: str | None = None
    updated_ms: int = 0


@dataclass(frozen=True, slots=True)
class CustodyEvent:
    id: int
    shipment_id: str
    action: CustodyAction
    asset_id: str
    compartment_id: str | None  # None: the asset's dock / unmonitored area
    ts_ms: int
    actor: str
    source: CustodySource
    received_ms: int
    event_id: str | None = None  # the caller's id (write API); None for MQTT scans


@dataclass(frozen=True, slots=True)
class CustodyLeg:
    """Where a shipment was from ``from_ms`` until ``to_ms`` (None: still there).

    ``compartment_id`` None means unmonitored: on the dock of ``asset_id`` (after an unload, or a
    load/handover that named no compartment).
    """

    asset_id: str
    compartment_id: str | None
    from_ms: int
    to_ms: int | None

    @property
    def monitored(self) -> bool:
        return self.compartment_id is not None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    ts_ms: int
    actor: str
    action: str
    entity: str
    entity_id: str
    payload: str  # canonical JSON text, exactly as hashed
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class ChainReport:
    """Result of ``verify_audit_chain``. ``ok`` False names the first bad ``seq`` and why."""

    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    bad_seq: int | None = None
    problem: str = ""
    chain: str = "writes"  # "writes" (audit_log) or "reads" (audit_read_log)

    def __str__(self) -> str:
        name = "audit chain" if self.chain == "writes" else f"audit {self.chain} chain"
        if self.ok:
            return f"{name} intact: {self.checked} entries, head {self.head_seq}:{self.head_hash}"
        return f"{name} broken at seq {self.bad_seq}: {self.problem}"


@dataclass(frozen=True, slots=True)
class SpoolIdentity:
    """Which spool an ingest client writes (see ``registry.models.SpoolIdentityRow``).

    ``problem`` is set while a replaced or corrupt spool has not been accepted by an operator;
    ``problem_detail`` says what was found and what may be lost.
    """

    client_id: str
    spool_id: str
    spool_path: str
    high_water: int
    updated_ms: int
    problem: SpoolProblem | None = None
    problem_detail: str = ""
    problem_ms: int | None = None
