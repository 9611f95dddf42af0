"""Compartment profile assignments: an insert-only history; the one in force at time t is the
latest ``from_ms <= t`` (ties: the later recorded one, so a correction is a new row)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.models import ProfileAssignmentRow
from registry.records import ProfileAssignment

__all__ = ["at", "history", "to_record"]


def to_record(row: ProfileAssignmentRow) -> ProfileAssignment:
    return ProfileAssignment(
        id=row.id,
        asset_id=row.asset_id,
        compartment_id=row.compartment_id,
        profile=row.profile,
        from_ms=row.from_ms,
        assigned_by=row.assigned_by,
        reason=row.reason,
        recorded_ms=row.recorded_ms,
    )


def at(session: Session, asset_id: str, compartment_id: str, t_ms: int) -> ProfileAssignment | None:
    row = session.execute(
        select(ProfileAssignmentRow)
        .where(
            ProfileAssignmentRow.asset_id == asset_id,
            ProfileAssignmentRow.compartment_id == compartment_id,
            ProfileAssignmentRow.from_ms <= t_ms,
        )
        .order_by(ProfileAssignmentRow.from_ms.desc(), ProfileAssignmentRow.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    return None if row is None else to_record(row)


def history(
    session: Session, asset_id: str | None = None, compartment_id: str | None = None
) -> list[ProfileAssignment]:
    """Assignments ordered by (from_ms, id): with a "last one wins" scan (as
    coldchain.rules.profiles.profile_at does) a later correction at the same from_ms wins."""
    query = select(ProfileAssignmentRow)
    if asset_id is not None:
        query = query.where(ProfileAssignmentRow.asset_id == asset_id)
    if compartment_id is not None:
        query = query.where(ProfileAssignmentRow.compartment_id == compartment_id)
    rows = session.execute(
        query.order_by(ProfileAssignmentRow.from_ms, ProfileAssignmentRow.id)
    ).scalars()
    return [to_record(r) for r in rows]
