"""``Registry`` methods for compartment profile assignments (an insert-only history)."""

from __future__ import annotations

from registry import audit, profiles
from registry.facade.base import RegistryBase, as_payload, require_text
from registry.ids import require_identifier
from registry.models import ProfileAssignmentRow
from registry.records import ProfileAssignment

__all__ = ["ProfileMethods"]


class ProfileMethods(RegistryBase):
    def assign_profile(
        self,
        asset_id: str,
        compartment_id: str,
        profile: str,
        *,
        from_ms: int,
        assigned_by: str,
        reason: str = "",
    ) -> ProfileAssignment:
        """Append an assignment: ``profile`` holds from ``from_ms`` until a later one."""
        require_identifier(asset_id, "asset_id")
        require_identifier(compartment_id, "compartment_id")
        require_text(profile, "profile")
        require_text(assigned_by, "assigned_by")
        with self._write("assigning a profile") as (session, head, now):
            row = ProfileAssignmentRow(
                asset_id=asset_id,
                compartment_id=compartment_id,
                profile=profile,
                from_ms=from_ms,
                assigned_by=assigned_by,
                reason=reason,
                recorded_ms=now,
            )
            session.add(row)
            session.flush()
            record = profiles.to_record(row)
            audit.append(
                session,
                head,
                ts_ms=now,
                actor=assigned_by,
                action="profile.assign",
                entity="compartment",
                entity_id=f"{asset_id}/{compartment_id}",
                payload=as_payload(record),
            )
            return record

    def profile_at(self, asset_id: str, compartment_id: str, t_ms: int) -> ProfileAssignment | None:
        """The assignment in force at ``t_ms`` (None: none recorded; use the fleet file's)."""
        with self._read("looking up a profile assignment") as session:
            return profiles.at(session, asset_id, compartment_id, t_ms)

    def profile_history(
        self, asset_id: str | None = None, compartment_id: str | None = None
    ) -> list[ProfileAssignment]:
        """Assignments (all, or of one asset / compartment) in (from_ms, id) order; what the
        rules engine loads at start-up."""
        with self._read("reading profile history") as session:
            return profiles.history(session, asset_id, compartment_id)
