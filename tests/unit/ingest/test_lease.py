"""ingest.lease without a broker: the lease keeper's rounds and the fenced registry, on a real
SQLite registry (the lease rows themselves are tested on both backends in
tests/unit/registry/test_registry_leases.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from coldchain.exceptions import LeaseLost, StoreError
from ingest.health import Health
from ingest.lease import PARTITION_LEASED_ELSEWHERE, FencedRegistry, LeaseKeeper
from registry import Fence, Registry, open_registry, upgrade, wall_clock_ms
from registry.models import LeaseRow
from tests.harness import wait_for

NAMES = {0: "rules-partition-0", 1: "rules-partition-1"}


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    upgrade(url)
    return url


@pytest.fixture
def registry(url: str) -> Iterator[Registry]:
    with open_registry(url) as reg:
        yield reg


class Keeper:
    """A LeaseKeeper whose callbacks record what happened."""

    def __init__(self, registry: Registry, owner: str, **kw: float) -> None:
        self.health = Health()
        self.started: list[tuple[int, Fence]] = []
        self.lost: list[tuple[int, str]] = []
        self.refuse_start: Exception | None = None
        self.keeper = LeaseKeeper(
            registry,
            owner,
            NAMES,
            ttl_s=kw.get("ttl_s", 30.0),
            renew_s=kw.get("renew_s", 10.0),
            health=self.health,
            acquired=self._acquired,
            lost=lambda k, reason: self.lost.append((k, reason)),
        )

    def _acquired(self, k: int, fence: Fence) -> None:
        if self.refuse_start is not None:
            raise self.refuse_start
        self.started.append((k, fence))


def _take_over(registry: Registry, name: str, owner: str) -> Fence:
    """Another owner takes ``name`` as after the holder stalled past its expiry."""
    with registry.engine.begin() as conn:
        conn.execute(update(LeaseRow).where(LeaseRow.name == name).values(expires_ms=0))
    lease = registry.acquire_lease(name, owner, ttl_ms=600_000)
    assert lease.held_by(owner)
    return lease.fence()


def test_a_keeper_starts_what_it_acquires_and_the_other_waits_naming_the_holder(
    registry: Registry,
) -> None:
    a, b = Keeper(registry, "owner-a"), Keeper(registry, "owner-b")
    a.keeper.round()
    assert [(k, f.owner, f.token) for k, f in a.started] == [(0, "owner-a", 1), (1, "owner-a", 1)]
    assert a.keeper.held() == [0, 1] and a.health.ok
    b.keeper.round()
    assert b.started == [] and b.keeper.held() == []
    reason = b.health.problems()[PARTITION_LEASED_ELSEWHERE]
    assert "partition 0 (held by owner-a, token 1" in reason and "partition 1" in reason
    assert b.keeper.stats()["rules_partitions_waiting"] == 2
    # A clean stop releases; the waiting keeper's next round takes both, with new tokens.
    a.keeper.release_all()
    b.keeper.round()
    assert [(k, f.owner, f.token) for k, f in b.started] == [(0, "owner-b", 2), (1, "owner-b", 2)]
    assert b.health.ok
    assert b.keeper.stats()["rules_partition_1_lease_token"] == 2


def test_a_partition_that_cannot_start_gives_its_lease_back_and_is_retried(
    registry: Registry,
) -> None:
    a = Keeper(registry, "owner-a")
    a.refuse_start = StoreError("checkpoint unreadable")
    a.keeper.round()
    assert a.started == [] and a.keeper.held() == []
    assert all(lease.owner is None for lease in registry.leases())  # released for others
    assert PARTITION_LEASED_ELSEWHERE in a.health.problems()
    a.refuse_start = None
    a.keeper.round()
    assert [k for k, _ in a.started] == [0, 1] and a.health.ok


def test_a_refused_write_loses_the_partition_for_good_and_releases_nothing(
    registry: Registry,
) -> None:
    a = Keeper(registry, "owner-a")
    a.keeper.round()
    fenced = FencedRegistry(
        registry.engine,
        clock=wall_clock_ms,
        name=NAMES[0],
        lost=lambda fence, exc: a.keeper.report_lost(0, fence, exc),
    )
    fenced.fence = a.keeper.fence(0)
    fenced.save_checkpoint(NAMES[0], {"n": 1})
    intruder = _take_over(registry, NAMES[0], "intruder")
    with pytest.raises(LeaseLost):
        fenced.save_checkpoint(NAMES[0], {"n": 2})
    assert registry.load_checkpoint(NAMES[0]) == {"n": 1}
    a.keeper.round()
    assert [k for k, _ in a.lost] == [0] and "'intruder' holds it (token 2)" in a.lost[0][1]
    assert a.keeper.held() == [1] and a.keeper.stats()["rules_lease_losses"] == 1
    # Never taken back by this owner, even once free again; a stop releases only partition 1.
    assert registry.release_lease(intruder)
    a.keeper.round()
    assert a.keeper.held() == [1] and [k for k, _ in a.started] == [0, 1]
    a.keeper.release_all()
    assert [(lease.name, lease.owner) for lease in registry.leases()] == [
        (NAMES[0], None),
        (NAMES[1], None),
    ]


def test_a_renewal_refused_loses_the_partition(registry: Registry) -> None:
    a = Keeper(registry, "owner-a", ttl_s=30.0, renew_s=0.01)
    a.keeper.round()
    _take_over(registry, NAMES[1], "intruder")
    assert wait_for(lambda: (a.keeper.round(), a.lost)[1] != [], 30)
    assert [k for k, _ in a.lost] == [1] and a.keeper.held() == [0]


def test_a_lease_not_renewed_for_its_ttl_is_given_up(url: str, tmp_path: Path) -> None:
    """The registry goes away: renewals fail, and once a whole TTL passed without one the
    keeper gives its partitions up (another worker may hold them by now)."""
    registry = open_registry(url)
    try:
        a = Keeper(registry, "owner-a", ttl_s=1.0, renew_s=0.1)
        a.keeper.round()
        registry.engine.dispose()
        db = tmp_path / "registry.sqlite3"
        db.rename(tmp_path / "moved.sqlite3")  # the next connection finds no tables
        assert wait_for(lambda: (a.keeper.round(), a.lost)[1] != [] and len(a.lost) == 2, 60)
        assert all("not renewed for 1 s" in reason for _, reason in a.lost)
        assert "registry_unavailable" in a.health.problems()
    finally:
        registry.close()
