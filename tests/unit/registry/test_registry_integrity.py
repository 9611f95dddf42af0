"""Integrity evidence: conflicting rewrites recorded with both values, audited, idempotent."""

from __future__ import annotations

from coldchain.rules import Rewrite
from registry import Registry


def _rw(ts: int, new: float, new_seq: int = 710) -> Rewrite:
    return Rewrite(
        device_id="truck-gs-01-tcu",
        asset_id="truck-gs-01",
        ts_ms=ts,
        old_seq=700,
        new_seq=new_seq,
        changes={"temp/rear-air": (-19.0, new), "door/rear": (False, True)},
        detected_ms=5_000,
    )


def test_rewrites_are_recorded_once_with_both_values_and_audited(reg: Registry) -> None:
    first, second = _rw(1_000, 25.0), _rw(2_000, 24.0)
    assert reg.record_rewrites([first, second, first]) == [first.id, second.id]
    assert reg.record_rewrites([_rw(1_000, 25.0)]) == []  # the same content again: no-op
    found = reg.find_rewrites(asset_id="truck-gs-01")
    assert found == [first, second]
    assert found[0].changes["temp/rear-air"] == (-19.0, 25.0) and found[0].kept == "new"
    assert reg.find_rewrites(device_id="truck-gs-01-tcu", from_ms=1_500) == [second]
    assert reg.find_rewrites(asset_id="other") == []
    assert reg.record_rewrites([]) == []
    report = reg.verify_audit_chain()
    assert report.ok and report.checked == 2
