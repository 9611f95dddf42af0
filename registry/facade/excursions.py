"""``Registry`` methods for excursions: the rules engine's upserts, acknowledgements, queries."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from coldchain.alerts.payload import acknowledged_alert
from coldchain.exceptions import RecordInvalid, RecordNotFound
from coldchain.rules.excursion import Excursion, ExcursionStatus
from registry import audit, excursions, outbox
from registry.facade.base import RegistryBase, as_payload
from registry.facade.checkpoints import save_checkpoint_in
from registry.ids import require_actor
from registry.leases import Fence, check_fence
from registry.models import DISPOSITIONS, ExcursionAckRow, ExcursionRow
from registry.outbox import OutboxMessage
from registry.records import Acknowledgement, Disposition, ExcursionRecord
from registry.shipments import DESCRIPTION_MAX, check_text

__all__ = ["ExcursionMethods"]


class ExcursionMethods(RegistryBase):
    def upsert_excursions(
        self,
        items: Iterable[Excursion],
        *,
        actor: str = "rules-engine",
        checkpoints: Mapping[str, Mapping[str, Any]] | None = None,
        alerts: Iterable[OutboxMessage] = (),
        fence: Fence | None = None,
    ) -> list[str]:
        """Insert or update excursions by id, in one transaction; returns the ids that changed.

        Idempotent: an excursion equal to the stored one changes nothing and writes no audit
        entry. The acknowledgement and the first ``detected_ms``/``detected_late`` survive.
        ``checkpoints`` (key -> state) are saved in the same transaction, so the evaluator's
        state and the excursions it produced commit together; so are ``alerts``, queued in the
        outbox (registry/outbox.py), so a recorded change always has its notification queued.
        ``fence``: only while that lease is held under its token, checked in the same
        transaction (registry/leases.py); else LeaseLost and nothing at all is written.
        """
        batch = list(items)
        changed: list[str] = []
        with self._write("upserting excursions") as (session, head, now):
            if fence is not None:
                check_fence(session, fence)
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
            outbox.enqueue(session, alerts, now)
        return changed

    def upsert_excursion(self, exc: Excursion, *, actor: str = "rules-engine") -> bool:
        """Insert or update one excursion; True if the stored row changed."""
        return bool(self.upsert_excursions([exc], actor=actor))

    def acknowledge_excursion(
        self,
        excursion_id: str,
        *,
        by: str,
        comment: str = "",
        at_ms: int | None = None,
        root_cause: str = "",
        disposition: Disposition | None = None,
        role: str | None = None,
        key_id: str | None = None,
    ) -> ExcursionRecord:
        """Record an operator's acknowledgement; the excursion as it is now. See
        ``record_acknowledgement``."""
        _, record = self.record_acknowledgement(
            excursion_id,
            by=by,
            comment=comment,
            at_ms=at_ms,
            root_cause=root_cause,
            disposition=disposition,
            role=role,
            key_id=key_id,
        )
        return record

    def record_acknowledgement(
        self,
        excursion_id: str,
        *,
        by: str,
        comment: str = "",
        at_ms: int | None = None,
        root_cause: str = "",
        disposition: Disposition | None = None,
        role: str | None = None,
        key_id: str | None = None,
    ) -> tuple[Acknowledgement, ExcursionRecord]:
        """Append an acknowledgement to the excursion's history (seq 1, 2, ...; a second one
        never overwrites the first) and make it the latest shown on the excursion; audited as
        ``excursion.acknowledge`` by ``by``; its ``acknowledged`` alert is queued in the outbox
        in the same transaction (key ``<id>:acknowledged:<seq>``). Returns (the
        acknowledgement, the excursion).

        ``by`` names who (an API key's identity, never its secret; ``role`` and ``key_id``
        beside it), ``at_ms`` is the registry's clock unless given, ``comment`` and
        ``root_cause`` free text (at most 4000 characters, line breaks allowed),
        ``disposition`` what became of the product (registry.models.DISPOSITIONS).
        RecordNotFound: no such excursion. RecordInvalid: a value the registry cannot store.
        """
        require_actor(by, "acknowledged by")
        for name, text in (("comment", comment), ("root_cause", root_cause)):
            check_text(name, text, limit=DESCRIPTION_MAX, multiline=True)
        if disposition is not None and disposition not in DISPOSITIONS:
            raise RecordInvalid(
                f"disposition {disposition!r} is not one of {', '.join(DISPOSITIONS)}"
            )
        if role is not None:
            check_text("role", role, limit=16, may_be_empty=False)
        if key_id is not None:
            check_text("key_id", key_id, limit=64, may_be_empty=False)
        with self._write("acknowledging an excursion") as (session, head, now):
            row = session.get(ExcursionRow, excursion_id)
            if row is None:
                raise RecordNotFound("excursion", excursion_id)
            when = now if at_ms is None else at_ms
            ack_row = ExcursionAckRow(
                excursion_id=excursion_id,
                seq=row.ack_count + 1,
                ack_ms=when,
                by=by,
                role=role,
                key_id=key_id,
                comment=comment,
                root_cause=root_cause,
                disposition=disposition,
            )
            session.add(ack_row)
            row.ack_by, row.ack_ms, row.ack_comment = by, when, comment
            row.ack_disposition = disposition
            row.ack_count += 1
            row.updated_ms = now
            session.flush()
            ack = excursions.ack_to_record(ack_row)
            record = excursions.to_record(row)
            # Its notification, in the same transaction (docs/alerts.md): one per acknowledgement.
            key, payload = acknowledged_alert(record.excursion, ack)
            outbox.enqueue(session, [OutboxMessage(key, payload)], now)
            audit.append(
                session,
                head,
                ts_ms=now,
                actor=by,
                action="excursion.acknowledge",
                entity="excursion",
                entity_id=excursion_id,
                payload=as_payload(ack),
            )
            return ack, record

    def excursion_acknowledgements(self, excursion_id: str) -> list[Acknowledgement]:
        """The excursion's acknowledgements, oldest first. RecordNotFound: no such excursion."""
        with self._read("reading acknowledgements") as session:
            if session.get(ExcursionRow, excursion_id) is None:
                raise RecordNotFound("excursion", excursion_id)
            return excursions.acks_for(session, excursion_id)

    def latest_acknowledgements(self, excursion_ids: Sequence[str]) -> dict[str, Acknowledgement]:
        """Excursion id -> its latest acknowledgement, for those that have one (one query)."""
        with self._read("reading acknowledgements") as session:
            return excursions.latest_acks(session, excursion_ids)

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

    def excursions_updated_since(
        self, since_ms: int, *, limit: int = 10_000
    ) -> list[ExcursionRecord]:
        """Excursions changed (by the rules engine or an acknowledgement) at or after
        ``since_ms`` (registry wall clock), oldest change first: what the registry mirror
        (ingest/mirror.py) polls."""
        with self._read("querying changed excursions") as session:
            return excursions.updated_since(session, since_ms, limit)
