"""Spool identities in the registry: register, raise the high-water mark, accept a problem."""

from __future__ import annotations

import pytest

from coldchain.exceptions import RecordRejected
from registry import Registry


def test_register_then_advance_the_high_water_mark(reg: Registry) -> None:
    assert reg.spool_identity("ingest-1") is None
    rec = reg.register_spool("ingest-1", "a" * 32, "/var/spool.sqlite3", 0)
    assert (rec.spool_id, rec.high_water, rec.problem) == ("a" * 32, 0, None)
    assert reg.advance_spool_high_water("ingest-1", "a" * 32, 120)
    assert not reg.advance_spool_high_water("ingest-1", "a" * 32, 100)  # only upwards
    assert not reg.advance_spool_high_water("ingest-1", "b" * 32, 500)  # another spool: no
    stored = reg.spool_identity("ingest-1")
    assert stored is not None and stored.high_water == 120
    assert [s.client_id for s in reg.spool_identities()] == ["ingest-1"]


def test_a_problem_stays_until_accepted_and_both_are_audited(reg: Registry) -> None:
    reg.register_spool("ingest-1", "a" * 32, "/s", 10)
    rec = reg.register_spool(
        "ingest-1", "b" * 32, "/s", 0, problem="spool_replaced", detail="old spool gone"
    )
    assert (rec.problem, rec.problem_detail) == ("spool_replaced", "old spool gone")
    # A later registration without a problem (e.g. the same spool again) keeps it pending.
    assert reg.register_spool("ingest-1", "b" * 32, "/s", 5).problem == "spool_replaced"
    accepted = reg.accept_spool("ingest-1", by="alice", comment="InfluxDB checked")
    assert accepted.problem is None and accepted.spool_id == "b" * 32
    assert reg.accept_spool("ingest-1", by="alice").problem is None  # idempotent
    entries = reg.audit_entries(entity="ingest")
    assert [e.action for e in entries] == [
        "spool.register",
        "spool.register",
        "spool.register",
        "spool.accept",
    ]
    assert entries[-1].actor == "alice" and "InfluxDB checked" in entries[-1].payload
    assert reg.verify_audit_chain().ok


def test_accept_needs_a_known_client_and_a_name(reg: Registry) -> None:
    with pytest.raises(RecordRejected, match="no spool recorded"):
        reg.accept_spool("ghost", by="alice")
    reg.register_spool("ingest-1", "a" * 32, "/s", 0)
    with pytest.raises(RecordRejected, match="must not be empty"):
        reg.accept_spool("ingest-1", by=" ")
    with pytest.raises(RecordRejected, match="unknown spool problem"):
        reg.register_spool("ingest-1", "a" * 32, "/s", 0, problem="lost")  # type: ignore[arg-type]
