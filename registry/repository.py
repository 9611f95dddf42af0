"""``Registry``: the one interface the rest of coldchain uses for the registry database.

Every method is one transaction. Every mutating method (except checkpoint saves, see
registry/checkpoints.py) takes the writers' lock on the audit head first and writes its audit
entries in the same transaction, so a change and its audit entry commit or roll back together.
SQLAlchemy errors never leave the registry: they become StoreError (transient, retry) or
RecordRejected (for good).

The methods live in ``registry/facade/``, one module per kind of record (excursions,
checkpoints, profiles, shipments, custody, audit), plus registry/integrity.py,
registry/spools.py, registry/outbox.py and registry/leases.py; ``Registry`` combines them.

Thread safety: one Registry (engine + pool) may be shared by threads; each call uses its own
session.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine
from sqlalchemy.engine import URL

from registry.audit_trail import AuditTrail
from registry.db import make_engine
from registry.facade.audit import AuditMethods
from registry.facade.base import wall_clock_ms
from registry.facade.checkpoints import CheckpointMethods
from registry.facade.custody import CustodyMethods
from registry.facade.excursions import ExcursionMethods
from registry.facade.profiles import ProfileMethods
from registry.facade.shipments import ShipmentMethods
from registry.integrity import IntegrityStore
from registry.keys import ApiKeyStore
from registry.leases import LeaseMethods
from registry.outbox import AlertOutbox
from registry.spools import SpoolIdentities

__all__ = ["Registry", "open_registry", "wall_clock_ms"]


class Registry(
    ExcursionMethods,
    CheckpointMethods,
    ProfileMethods,
    ShipmentMethods,
    CustodyMethods,
    AuditMethods,
    LeaseMethods,
    IntegrityStore,
    SpoolIdentities,
    AlertOutbox,
):
    """The registry database (docs/registry.md): ``Registry(engine, clock=...)``; usually
    opened with ``open_registry(url)``. A context manager that disposes the engine on exit.
    ``keys``: the API keys (registry/keys.py); ``trail``: the reads chain, heads and
    verification of both chains (registry/audit_trail.py)."""

    def __init__(self, engine: Engine, *, clock: Callable[[], int] = wall_clock_ms) -> None:
        super().__init__(engine, clock=clock)
        self.keys = ApiKeyStore(engine, self._sessions, clock)  # API keys (registry/keys.py)
        self.trail = AuditTrail(engine, self._sessions, clock)  # reads, heads, verify all

    def __enter__(self) -> Registry:
        return self


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
