"""``Registry`` methods for excursions: the rules engine's upserts, acknowledgements, queries."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from coldchain.exceptions import RecordRejected
from coldchain.rules.excursion import Excursion, ExcursionStatus
from registry import audit, excursions
from registry.facade.base import RegistryBase, require_text
from registry.facade.checkpoints import save_checkpoint_in
from registry.models import ExcursionRow
from registry.records import ExcursionRecord

__all__ = ["ExcursionMethods"]


class ExcursionMethods(RegistryBase):
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
                save_checkpoint_in(session, key, state, now)
        return changed

    def upsert_excursion(self, exc: Excursion, *, actor: str = "rules-engine") -> bool:
        """Insert or update one excursion; True if the stored row changed."""
        return bool(self.upsert_excursions([exc], actor=actor))

    def acknowledge_excursion(
        self, excursion_id: str, *, by: str, comment: str = "", at_ms: int | None = None
    ) -> ExcursionRecord:
        """Record an operator's acknowledgement (a later one replaces it; both are audited)."""
        require_text(by, "acknowledged by")
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
