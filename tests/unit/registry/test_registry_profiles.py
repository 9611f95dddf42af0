"""Profile assignments are an insert-only history looked up by time."""

from __future__ import annotations

import pytest

from coldchain.exceptions import RecordRejected
from registry import Registry


def test_profile_in_force_is_the_latest_from_ms_not_after_t(reg: Registry) -> None:
    reg.assign_profile("truck-1", "c1", "chilled", from_ms=1_000, assigned_by="ops")
    reg.assign_profile("truck-1", "c1", "frozen", from_ms=5_000, assigned_by="ops")
    reg.assign_profile("truck-1", "c2", "pharma", from_ms=0, assigned_by="ops")

    def at(t: int) -> str | None:
        found = reg.profile_at("truck-1", "c1", t)
        return None if found is None else found.profile

    assert at(999) is None  # before any assignment: caller falls back to the fleet file
    assert at(1_000) == "chilled"  # from_ms is inclusive
    assert at(4_999) == "chilled"
    assert at(5_000) == "frozen"
    assert at(10**13) == "frozen"
    c2 = reg.profile_at("truck-1", "c2", 3_000)
    assert c2 is not None and c2.profile == "pharma"


def test_assignments_recorded_out_of_order_are_ordered_by_from_ms(reg: Registry) -> None:
    reg.assign_profile("s", "z", "frozen", from_ms=5_000, assigned_by="ops")
    reg.assign_profile("s", "z", "chilled", from_ms=1_000, assigned_by="ops", reason="backfill")
    assert [a.profile for a in reg.profile_history("s", "z")] == ["chilled", "frozen"]
    found = reg.profile_at("s", "z", 2_000)
    assert found is not None and found.reason == "backfill"


def test_a_correction_at_the_same_from_ms_wins_and_history_keeps_both(reg: Registry) -> None:
    first = reg.assign_profile("s", "z", "chilled", from_ms=1_000, assigned_by="ops")
    fixed = reg.assign_profile(
        "s", "z", "pharma", from_ms=1_000, assigned_by="qa", reason="wrong profile"
    )
    assert fixed.id > first.id
    found = reg.profile_at("s", "z", 1_500)
    assert found is not None and found.profile == "pharma"
    assert [(a.profile, a.assigned_by) for a in reg.profile_history("s", "z")] == [
        ("chilled", "ops"),
        ("pharma", "qa"),
    ]


def test_each_assignment_is_audited(reg: Registry) -> None:
    reg.assign_profile("s", "z", "chilled", from_ms=1_000, assigned_by="ops", reason="new")
    (entry,) = reg.audit_entries(entity="compartment", entity_id="s/z")
    assert entry.action == "profile.assign"
    assert entry.actor == "ops"
    assert '"profile":"chilled"' in entry.payload


def test_empty_fields_are_rejected(reg: Registry) -> None:
    with pytest.raises(RecordRejected, match="profile"):
        reg.assign_profile("s", "z", "", from_ms=0, assigned_by="ops")
    assert reg.profile_history("s", "z") == []


def test_full_history_for_the_rules_engine(reg: Registry) -> None:
    reg.assign_profile("t2", "c1", "frozen", from_ms=2, assigned_by="ops")
    reg.assign_profile("t1", "c1", "chilled", from_ms=1, assigned_by="ops")
    reg.assign_profile("t1", "c2", "pharma", from_ms=3, assigned_by="ops")
    assert [(a.asset_id, a.from_ms) for a in reg.profile_history()] == [
        ("t1", 1),
        ("t2", 2),
        ("t1", 3),
    ]
    assert [a.compartment_id for a in reg.profile_history("t1")] == ["c1", "c2"]
