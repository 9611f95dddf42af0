"""Fencing leases (registry/leases.py) on SQLite and PostgreSQL: acquire, renew, expire, take
over with a new token, release; a stale token's checkpoint save and excursion upsert are
refused and write nothing; concurrent acquirers get one lease."""

from __future__ import annotations

import json
import threading

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from coldchain.exceptions import LeaseLost, RecordInvalid
from coldchain.rules.excursion import Excursion
from registry import Fence, Lease, OutboxMessage, Registry, checkpoints, open_registry
from registry.leases import check_fence
from tests.harness import wait_for
from tests.unit.registry.test_registry_concurrency import WRITERS, _together

NAME = "rules-partition-3"
TTL = 30_000
T0 = 5_000_000  # registry clock (ms) the tests pass explicitly


def _exc() -> Excursion:
    return Excursion("truck-1", "c1", "range", "range", "warning", "open", 1_000, None, 2_000)


def test_a_free_lease_is_acquired_with_token_1_and_another_owner_is_told_who_holds_it(
    reg: Registry,
) -> None:
    a = reg.acquire_lease(NAME, "worker-a", ttl_ms=TTL, now_ms=T0)
    assert a.held_by("worker-a") and a.token == 1
    assert (a.acquired_ms, a.renewed_ms, a.expires_ms) == (T0, T0, T0 + TTL)
    # Up to the last millisecond before expiry, another owner gets the holder, not the lease.
    b = reg.acquire_lease(NAME, "worker-b", ttl_ms=TTL, now_ms=T0 + TTL - 1)
    assert not b.held_by("worker-b")
    assert (b.owner, b.token, b.expires_ms) == ("worker-a", 1, T0 + TTL)
    assert reg.get_lease(NAME) == a
    assert reg.leases() == [a]
    assert reg.get_lease("rules-partition-4") is None


def test_renewing_extends_the_lease_under_the_same_token(reg: Registry) -> None:
    a = reg.acquire_lease(NAME, "worker-a", ttl_ms=TTL, now_ms=T0)
    renewed = reg.renew_lease(a.fence(), ttl_ms=TTL, now_ms=T0 + 10_000)
    assert (renewed.token, renewed.acquired_ms, renewed.renewed_ms) == (1, T0, T0 + 10_000)
    assert renewed.expires_ms == T0 + 10_000 + TTL
    # Acquiring what one holds renews it too; the token stays.
    again = reg.acquire_lease(NAME, "worker-a", ttl_ms=TTL, now_ms=T0 + 20_000)
    assert (again.owner, again.token, again.expires_ms) == ("worker-a", 1, T0 + 20_000 + TTL)
    # The renewal kept others out past the first expiry.
    b = reg.acquire_lease(NAME, "worker-b", ttl_ms=TTL, now_ms=T0 + TTL + 1)
    assert b.owner == "worker-a"


def test_an_expired_lease_changes_owner_with_the_next_token_and_the_old_fence_is_refused(
    reg: Registry,
) -> None:
    old = reg.acquire_lease(NAME, "worker-a", ttl_ms=TTL, now_ms=T0).fence()
    b = reg.acquire_lease(NAME, "worker-b", ttl_ms=TTL, now_ms=T0 + TTL)
    assert b.held_by("worker-b") and b.token == 2 and b.acquired_ms == T0 + TTL
    with pytest.raises(LeaseLost) as lost:
        reg.renew_lease(old, ttl_ms=TTL, now_ms=T0 + TTL + 1)
    assert (lost.value.holder, lost.value.holder_token) == ("worker-b", 2)
    assert (lost.value.name, lost.value.owner, lost.value.token) == (NAME, "worker-a", 1)
    assert "'worker-b' holds it (token 2)" in str(lost.value)
    # A former owner releases nothing: the lease stays worker-b's.
    assert reg.release_lease(old, now_ms=T0 + TTL + 2) is False
    assert reg.get_lease(NAME) == b
    # Nor does it get it back by acquiring while worker-b's is live.
    assert reg.acquire_lease(NAME, "worker-a", ttl_ms=TTL, now_ms=T0 + TTL + 3).owner == "worker-b"


def test_an_expired_lease_nobody_took_still_writes_and_renews_under_its_token(
    reg: Registry,
) -> None:
    a = reg.acquire_lease(NAME, "worker-a", ttl_ms=TTL, now_ms=T0)
    # Nobody wrote in between, so the token still fences correctly: the writes count.
    reg.save_checkpoint(NAME, {"n": 1}, fence=a.fence())
    assert reg.load_checkpoint(NAME) == {"n": 1}
    late = reg.renew_lease(a.fence(), ttl_ms=TTL, now_ms=T0 + 5 * TTL)
    assert late.token == 1 and late.expires_ms == T0 + 6 * TTL
    back = reg.acquire_lease(NAME, "worker-a", ttl_ms=TTL, now_ms=T0 + 9 * TTL)
    assert back.token == 1 and back.acquired_ms == T0


def test_release_lets_another_owner_take_it_at_once_with_the_next_token(reg: Registry) -> None:
    a = reg.acquire_lease(NAME, "worker-a", ttl_ms=TTL, now_ms=T0)
    assert reg.release_lease(a.fence(), now_ms=T0 + 1) is True
    released = reg.get_lease(NAME)
    assert released is not None and released.owner is None and released.token == 1
    with pytest.raises(ValueError, match="released"):
        released.fence()
    with pytest.raises(LeaseLost, match="it was released"):
        reg.save_checkpoint(NAME, {"n": 1}, fence=a.fence())
    b = reg.acquire_lease(NAME, "worker-b", ttl_ms=TTL, now_ms=T0 + 2)  # long before expiry
    assert b.held_by("worker-b") and b.token == 2
    # A restarted worker-a is a new acquisition too: the token moves on.
    assert reg.release_lease(b.fence(), now_ms=T0 + 3)
    assert reg.acquire_lease(NAME, "worker-a", ttl_ms=TTL, now_ms=T0 + 4).token == 3


def test_a_stale_token_saves_no_checkpoint(reg: Registry) -> None:
    a = reg.acquire_lease(NAME, "worker-a", ttl_ms=TTL, now_ms=T0).fence()
    reg.save_checkpoints({NAME: {"by": "a"}}, fence=a)
    b = reg.acquire_lease(NAME, "worker-b", ttl_ms=TTL, now_ms=T0 + TTL).fence()
    with pytest.raises(LeaseLost):
        reg.save_checkpoints({NAME: {"by": "a", "n": 2}, "other": {"by": "a"}}, fence=a)
    assert reg.load_checkpoints() == {NAME: {"by": "a"}}  # neither key written
    reg.save_checkpoint(NAME, {"by": "b"}, fence=b)
    assert reg.load_checkpoint(NAME) == {"by": "b"}


def test_a_stale_token_upserts_nothing_queues_no_alert_and_audits_nothing(
    reg: Registry,
) -> None:
    a = reg.acquire_lease(NAME, "worker-a", ttl_ms=TTL, now_ms=T0).fence()
    b = reg.acquire_lease(NAME, "worker-b", ttl_ms=TTL, now_ms=T0 + TTL).fence()
    exc = _exc()
    entries_before = reg.audit_entries()
    with pytest.raises(LeaseLost):
        reg.upsert_excursions(
            [exc],
            checkpoints={NAME: {"by": "a"}},
            alerts=[OutboxMessage(f"{exc.id}:opened", json.dumps({"by": "a"}))],
            fence=a,
        )
    assert reg.find_excursions() == []
    assert reg.outbox_entries() == []
    assert reg.load_checkpoint(NAME) is None
    assert reg.audit_entries() == entries_before
    # The holder's identical call writes all of it, in one transaction.
    changed = reg.upsert_excursions(
        [exc],
        checkpoints={NAME: {"by": "b"}},
        alerts=[OutboxMessage(f"{exc.id}:opened", json.dumps({"by": "b"}))],
        fence=b,
    )
    assert changed == [exc.id]
    assert [r.excursion.id for r in reg.find_excursions()] == [exc.id]
    assert [e.key for e in reg.outbox_entries()] == [f"{exc.id}:opened"]
    assert reg.load_checkpoint(NAME) == {"by": "b"}
    assert reg.trail.verify().ok


def test_a_fence_of_a_lease_never_acquired_is_refused(reg: Registry) -> None:
    with pytest.raises(LeaseLost, match="never acquired") as lost:
        reg.save_checkpoint(NAME, {"n": 1}, fence=Fence(NAME, "worker-a", 1))
    assert lost.value.holder is None and lost.value.holder_token is None
    with pytest.raises(LeaseLost):
        reg.upsert_excursions([_exc()], fence=Fence(NAME, "worker-a", 1))
    assert reg.load_checkpoint(NAME) is None and reg.find_excursions() == []


@pytest.mark.parametrize(
    ("name", "owner", "ttl_ms", "message"),
    [
        ("", "worker-a", TTL, "lease name"),
        (NAME, "   ", TTL, "owner"),
        (NAME, "w" * 201, TTL, "at most 200"),
        (NAME, "worker-a", 0, "ttl_ms"),
    ],
)
def test_bad_lease_arguments_are_invalid(
    reg: Registry, name: str, owner: str, ttl_ms: int, message: str
) -> None:
    with pytest.raises(RecordInvalid, match=message):
        reg.acquire_lease(name, owner, ttl_ms=ttl_ms, now_ms=T0)
    assert reg.leases() == []


def test_concurrent_acquirers_get_one_lease_and_one_takeover(migrated_url: str) -> None:
    """Workers in separate processes (each its own engine), released at once: one owner per
    round, and after it expired exactly one of the others takes it, with the next token."""
    got: list[list[tuple[str, int]]] = [[] for _ in range(WRITERS)]

    def acquirer(now_ms: int) -> None:
        def run(i: int) -> None:
            with open_registry(migrated_url) as reg:
                lease = reg.acquire_lease(NAME, f"worker-{i}", ttl_ms=TTL, now_ms=now_ms)
                if lease.held_by(f"worker-{i}"):
                    got[i].append((lease.owner or "", lease.token))

        _together(run)

    acquirer(T0)
    first = [g for per in got for g in per]
    assert len(first) == 1 and first[0][1] == 1
    winner = first[0][0]
    for per in got:
        per.clear()
    # Expired: every worker (the first owner too) tries again at once.
    acquirer(T0 + TTL)
    second = [g for per in got for g in per]
    assert len(second) == 1
    with open_registry(migrated_url) as reg:
        lease = reg.get_lease(NAME)
    assert lease is not None and lease.owner == second[0][0]
    # The same owner keeps its token; a new one gets the next.
    assert lease.token == (1 if second[0][0] == winner else 2)


# SQLite has one write lock: a writer and an acquirer simply take turns.
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_takeover_waits_for_a_write_in_progress_under_the_old_token(migrated_url: str) -> None:
    """The fence check locks the lease row until the write commits: a takeover that comes
    meanwhile waits for it, so no write under the old token lands after the takeover."""
    with open_registry(migrated_url) as reg:
        old = reg.acquire_lease(NAME, "worker-a", ttl_ms=TTL, now_ms=T0).fence()
        taken: list[Lease] = []
        with Session(reg.engine) as session, session.begin():
            check_fence(session, old)
            checkpoints.save(session, NAME, {"by": "a"}, T0 + 1)
            # Worker B finds the lease expired and tries to take it, in another connection.
            takeover = threading.Thread(
                target=lambda: taken.append(
                    reg.acquire_lease(NAME, "worker-b", ttl_ms=TTL, now_ms=T0 + TTL)
                )
            )
            takeover.start()
            assert wait_for(lambda: _waiting_for_a_lock(reg) == 1, 30)
            assert taken == []
        takeover.join(30)  # A committed: B's acquisition goes ahead
        assert [(t.owner, t.token) for t in taken] == [("worker-b", 2)]
        assert reg.load_checkpoint(NAME) == {"by": "a"}  # A's write landed before
        with pytest.raises(LeaseLost):
            reg.save_checkpoint(NAME, {"by": "a", "late": True}, fence=old)


def _waiting_for_a_lock(reg: Registry) -> int:
    with reg.engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        )
