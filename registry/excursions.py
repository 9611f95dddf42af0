"""Excursions: upsert by deterministic id, acknowledge, query. Session-level functions; the
``Registry`` facade owns transactions and the audit entries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from coldchain.rules.excursion import Excursion, ExcursionStatus, RuleKind, Severity
from registry.models import ExcursionAckRow, ExcursionRow
from registry.records import Acknowledgement, Disposition, ExcursionRecord

__all__ = [
    "ENGINE_FIELDS",
    "ack_to_record",
    "acks_for",
    "apply",
    "find",
    "latest_acks",
    "row_payload",
    "to_record",
    "updated_since",
]

# Columns the rules engine owns; an upsert rewrites these and nothing else. ``detected_ms`` and
# ``detected_late`` are first-report-wins (when we first knew is a fact; recomputation does not
# change it), and the acknowledgement columns are never touched by an upsert.
ENGINE_FIELDS = (
    "asset_id",
    "compartment_id",
    "rule",
    "kind",
    "severity",
    "status",
    "start_ms",
    "end_ms",
    "peak_c",
    "degree_minutes",
    "profile",
    "detail",
    "superseded",
    "out_of_range_s",
    "returned_ms",
)


def apply(session: Session, exc: Excursion, now_ms: int) -> ExcursionRow | None:
    """Insert or update the row for ``exc``; returns the row if anything changed, else None."""
    row = session.get(ExcursionRow, exc.id, with_for_update=False)
    if row is None:
        row = ExcursionRow(
            id=exc.id,
            detected_ms=exc.detected_ms,
            detected_late=exc.detected_late,
            updated_ms=now_ms,
            **{f: getattr(exc, f) for f in ENGINE_FIELDS},
        )
        session.add(row)
        return row
    changed = False
    for name in ENGINE_FIELDS:
        value = getattr(exc, name)
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    if not changed:
        return None
    row.updated_ms = now_ms
    return row


def row_payload(row: ExcursionRow) -> dict[str, Any]:
    """Every column of the row, for the audit entry (the state after the change)."""
    return {c.key: getattr(row, c.key) for c in ExcursionRow.__table__.columns}


def to_record(row: ExcursionRow) -> ExcursionRecord:
    exc = Excursion(
        asset_id=row.asset_id,
        compartment_id=row.compartment_id,
        rule=row.rule,
        kind=cast(RuleKind, row.kind),
        severity=cast(Severity, row.severity),
        status=cast(ExcursionStatus, row.status),
        start_ms=row.start_ms,
        end_ms=row.end_ms,
        detected_ms=row.detected_ms,
        detected_late=row.detected_late,
        peak_c=row.peak_c,
        degree_minutes=row.degree_minutes,
        profile=row.profile,
        detail=row.detail,
        id=row.id,
        superseded=row.superseded,
        out_of_range_s=row.out_of_range_s,
        returned_ms=row.returned_ms,
    )
    return ExcursionRecord(
        exc,
        row.updated_ms,
        row.ack_by,
        row.ack_ms,
        row.ack_comment,
        ack_disposition=row.ack_disposition,
        ack_count=row.ack_count,
    )


def ack_to_record(row: ExcursionAckRow) -> Acknowledgement:
    return Acknowledgement(
        excursion_id=row.excursion_id,
        seq=row.seq,
        ack_ms=row.ack_ms,
        by=row.by,
        role=row.role,
        key_id=row.key_id,
        comment=row.comment,
        root_cause=row.root_cause,
        disposition=cast(Disposition | None, row.disposition),
    )


def acks_for(session: Session, excursion_id: str) -> list[Acknowledgement]:
    """Every acknowledgement of one excursion, oldest (seq 1) first."""
    rows = session.execute(
        select(ExcursionAckRow)
        .where(ExcursionAckRow.excursion_id == excursion_id)
        .order_by(ExcursionAckRow.seq)
    ).scalars()
    return [ack_to_record(r) for r in rows]


def latest_acks(session: Session, excursion_ids: Sequence[str]) -> dict[str, Acknowledgement]:
    """The latest acknowledgement of each excursion that has one, from one query."""
    if not excursion_ids:
        return {}
    latest = (
        select(ExcursionAckRow.excursion_id, func.max(ExcursionAckRow.seq).label("seq"))
        .where(ExcursionAckRow.excursion_id.in_(set(excursion_ids)))
        .group_by(ExcursionAckRow.excursion_id)
        .subquery()
    )
    rows = session.execute(
        select(ExcursionAckRow).join(
            latest,
            (ExcursionAckRow.excursion_id == latest.c.excursion_id)
            & (ExcursionAckRow.seq == latest.c.seq),
        )
    ).scalars()
    return {r.excursion_id: ack_to_record(r) for r in rows}


def find(
    session: Session,
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
    """Excursions overlapping [from_ms, to_ms) (an open one extends to infinity), oldest first."""
    query = select(ExcursionRow)
    if asset_id is not None:
        query = query.where(ExcursionRow.asset_id == asset_id)
    if compartment_id is not None:
        query = query.where(ExcursionRow.compartment_id == compartment_id)
    if to_ms is not None:
        query = query.where(ExcursionRow.start_ms < to_ms)
    if from_ms is not None:
        query = query.where(or_(ExcursionRow.end_ms.is_(None), ExcursionRow.end_ms >= from_ms))
    if status is not None:
        statuses = [status] if isinstance(status, str) else list(status)
        query = query.where(ExcursionRow.status.in_(statuses))
    if acknowledged is not None:
        query = query.where(
            ExcursionRow.ack_ms.is_not(None) if acknowledged else ExcursionRow.ack_ms.is_(None)
        )
    if superseded is not None:
        query = query.where(ExcursionRow.superseded.is_(superseded))
    query = query.order_by(ExcursionRow.start_ms, ExcursionRow.id).limit(limit)
    return [to_record(r) for r in session.execute(query).scalars()]


def updated_since(session: Session, since_ms: int, limit: int = 10_000) -> list[ExcursionRecord]:
    """Excursions whose row changed (engine upsert or acknowledgement: ``updated_ms``, the
    writer's wall clock) at or after ``since_ms``, oldest change first."""
    query = (
        select(ExcursionRow)
        .where(ExcursionRow.updated_ms >= since_ms)
        .order_by(ExcursionRow.updated_ms, ExcursionRow.id)
        .limit(limit)
    )
    return [to_record(r) for r in session.execute(query).scalars()]
