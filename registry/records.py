"""Plain, immutable values the registry returns (never live ORM objects)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from coldchain.rules.excursion import Excursion

__all__ = [
    "AuditEntry",
    "ChainReport",
    "CustodyAction",
    "CustodyEvent",
    "CustodyLeg",
    "CustodySource",
    "ExcursionRecord",
    "ProfileAssignment",
    "Shipment",
]

CustodyAction = Literal["load", "unload", "handover", "deliver"]
CustodySource = Literal["api", "mqtt"]


@dataclass(frozen=True, slots=True)
class ExcursionRecord:
    """A stored excursion with its acknowledgement and last change time (wall clock)."""

    excursion: Excursion
    updated_ms: int
    ack_by: str | None = None
    ack_ms: int | None = None
    ack_comment: str | None = None

    @property
    def acknowledged(self) -> bool:
        return self.ack_ms is not None


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
    id: str
    profile: str
    description: str
    origin: str
    destination: str
    created_ms: int


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
