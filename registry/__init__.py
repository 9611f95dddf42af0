"""The registry database: what is not a time series.

Shipments, custody events, excursions with their lifecycle and acknowledgements, compartment
profile assignments (with history), rules-engine checkpoints, spool identities, integrity
evidence, the alert outbox, fencing leases of the rules partitions, API keys
(``Registry.keys``) and an append-only hash-chained audit log of changes and regulator reads
(``Registry.trail``), on SQLAlchemy 2 + Alembic; SQLite by default, PostgreSQL with the same
code. See docs/registry.md.

Typical use::

    from registry import open_registry, upgrade
    upgrade(settings.registry_url)            # coldchain init does this
    reg = open_registry(settings.registry_url)
    reg.upsert_excursions(excursions, checkpoints={"truck-1/c1": state})
"""

from registry.audit import GENESIS, canonical_json, entry_hash
from registry.audit_guard import restore_audit_guards
from registry.audit_trail import AuditTrail
from registry.audit_verify import AuditReport
from registry.custody import derive_legs
from registry.db import make_engine
from registry.keys import ApiKey, KeyScope
from registry.leases import Fence, Lease
from registry.migrate import check_schema, current_revision, head_revision, upgrade
from registry.outbox import ChannelDelivery, Fanout, OutboxEntry, OutboxMessage
from registry.records import (
    Acknowledgement,
    AuditEntry,
    ChainReport,
    CustodyAction,
    CustodyEvent,
    CustodyLeg,
    CustodySource,
    Disposition,
    ExcursionRecord,
    ProfileAssignment,
    Shipment,
    ShipmentStatus,
    SpoolIdentity,
)
from registry.repository import Registry, open_registry, wall_clock_ms

__all__ = [
    "GENESIS",
    "Acknowledgement",
    "ApiKey",
    "AuditEntry",
    "AuditReport",
    "AuditTrail",
    "ChainReport",
    "ChannelDelivery",
    "CustodyAction",
    "CustodyEvent",
    "CustodyLeg",
    "CustodySource",
    "Disposition",
    "ExcursionRecord",
    "Fanout",
    "Fence",
    "KeyScope",
    "Lease",
    "OutboxEntry",
    "OutboxMessage",
    "ProfileAssignment",
    "Registry",
    "Shipment",
    "ShipmentStatus",
    "SpoolIdentity",
    "canonical_json",
    "check_schema",
    "current_revision",
    "derive_legs",
    "entry_hash",
    "head_revision",
    "make_engine",
    "open_registry",
    "restore_audit_guards",
    "upgrade",
    "wall_clock_ms",
]
