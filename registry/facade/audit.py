"""``Registry`` methods for the hash-chained audit log (registry/audit.py): entries, head,
verification."""

from __future__ import annotations

from sqlalchemy import select

from registry import audit
from registry.facade.base import RegistryBase
from registry.models import AuditRow
from registry.records import AuditEntry, ChainReport

__all__ = ["AuditMethods"]


class AuditMethods(RegistryBase):
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
