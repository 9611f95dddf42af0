"""A rules worker's fencing leases: one owner per partition at a time, enforced by the registry.

The broker allows one connection per client id, but two workers started for the same partition
by mistake take the session from each other in turn and both evaluate and write. So before it
subscribes, a worker acquires the partition's lease in the registry (``registry/leases.py``,
``rules-partition-<k>``), and every write it makes for the partition carries the lease's
fencing token (``FencedRegistry``), checked in the write's own transaction.

Guarantees:
- A partition is evaluated only by the holder of its lease: a worker starts a partition
  (resumes its checkpoint, connects its MQTT session) only after acquiring the lease, and a
  worker that finds it held by a live owner waits, logs who holds it, and raises the health
  problem ``partition_leased_elsewhere`` until it gets it (``LeaseKeeper``).
- A former owner's writes never land: its checkpoint saves and excursion upserts (with their
  alerts) are refused with ``LeaseLost`` and write nothing once another owner took the lease,
  whatever the clocks say. Its MQTT acknowledgements follow checkpoints, so it acknowledges
  nothing either: the new owner gets those items from the broker.
- A holder renews every ``rules.lease_renew_s`` (default a third of ``rules.lease_ttl_s``); one
  that cannot renew for ``lease_ttl_s`` (registry unreachable) or learns the lease moved
  treats the partition as lost: the worker stops it and exits non-zero (``RulesWorker``).
- A worker that dies without releasing is taken over once its lease expired: within
  ``lease_ttl_s`` of its last renewal, plus one wait interval (at most 1 s). A clean stop
  releases the leases after the last checkpoint, so the next owner starts at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from coldchain.exceptions import ColdchainError, LeaseLost
from coldchain.rules.excursion import Excursion
from ingest.health import Health
from registry import Fence, Lease, OutboxMessage, Registry

__all__ = ["PARTITION_LEASED_ELSEWHERE", "FencedRegistry", "LeaseKeeper"]

log = logging.getLogger("coldchain.rules.lease")

PARTITION_LEASED_ELSEWHERE = "partition_leased_elsewhere"
_REGISTRY_UNAVAILABLE = "registry_unavailable"


class FencedRegistry(Registry):
    """The registry as one partition's rules stage sees it: its checkpoint saves and excursion
    upserts carry the partition's current ``fence`` (None until the lease is acquired: writes
    are refused), and a refusal calls ``lost(fence, exc)`` before ``LeaseLost`` propagates (the
    stage keeps what it could not write and retries; the worker stops it meanwhile). Reads and
    other writes are the plain registry's. Shares ``engine`` with the registry it was made from,
    which closes it (``close`` here does nothing)."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], int],
        name: str,
        lost: Callable[[Fence | None, LeaseLost], None],
    ) -> None:
        super().__init__(engine, clock=clock)
        self.name = name
        self.fence: Fence | None = None
        self._lost = lost

    def close(self) -> None:
        """The engine is the worker registry's: closed with it."""

    def _current(self, fence: Fence | None) -> Fence:
        f = fence if fence is not None else self.fence
        if f is None:
            exc = LeaseLost(self.name, "", 0, holder=None, holder_token=None)
            self._lost(None, exc)
            raise exc
        return f

    def save_checkpoints(
        self, states: Mapping[str, Mapping[str, Any]], *, fence: Fence | None = None
    ) -> None:
        f = self._current(fence)
        try:
            super().save_checkpoints(states, fence=f)
        except LeaseLost as exc:
            self._lost(f, exc)
            raise

    def upsert_excursions(
        self,
        items: Iterable[Excursion],
        *,
        actor: str = "rules-engine",
        checkpoints: Mapping[str, Mapping[str, Any]] | None = None,
        alerts: Iterable[OutboxMessage] = (),
        fence: Fence | None = None,
    ) -> list[str]:
        f = self._current(fence)
        try:
            return super().upsert_excursions(
                items, actor=actor, checkpoints=checkpoints, alerts=alerts, fence=f
            )
        except LeaseLost as exc:
            self._lost(f, exc)
            raise


@dataclass
class _Held:
    fence: Fence
    renewed_mono: float  # when the last successful acquisition or renewal was sent


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


class LeaseKeeper:
    """Acquires, renews and releases one owner's leases ``names`` (partition -> lease name).

    ``acquired(k, fence)`` is called (on the keeper's thread) once partition ``k``'s lease is
    held: start the partition; a ColdchainError from it releases the lease and retries later.
    ``lost(k, reason)`` is called once when the lease is found held by another owner, or could
    not be renewed for ``ttl_s``: stop writing for ``k`` (nothing is released). Run ``run()``
    in a thread after a first ``round()``; ``stop()``, then ``release_all()`` on a clean stop.
    """

    def __init__(
        self,
        registry: Registry,
        owner: str,
        names: Mapping[int, str],
        *,
        ttl_s: float,
        renew_s: float,
        health: Health,
        acquired: Callable[[int, Fence], None],
        lost: Callable[[int, str], None],
    ) -> None:
        self.owner = owner
        self._registry = registry
        self._names = dict(names)
        self._ttl_s = ttl_s
        self._ttl_ms = int(ttl_s * 1000)
        self._renew_s = renew_s
        self._poll_s = min(renew_s, 1.0)
        self._health = health
        self._acquired = acquired
        self._on_lost = lost
        self._held: dict[int, _Held] = {}
        self._waiting: dict[int, Lease | None] = dict.fromkeys(self._names)
        self._gone: set[int] = set()  # lost for good: never acquired again by this owner
        self._reported: list[tuple[int, Fence | None, str]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self.acquisitions_total = 0
        self.renewals_total = 0
        self.losses_total = 0

    def fence(self, k: int) -> Fence | None:
        held = self._held.get(k)
        return None if held is None else held.fence

    def held(self) -> list[int]:
        return sorted(self._held)

    def report_lost(self, k: int, fence: Fence | None, exc: LeaseLost) -> None:
        """Any thread: a write for ``k`` under ``fence`` was refused (handled by the keeper)."""
        with self._lock:
            self._reported.append((k, fence, str(exc)))
        self._wake.set()

    def run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self._poll_s)  # a reported loss wakes it early
            self._wake.clear()
            if self._stopping.is_set():
                return
            self.round()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def round(self) -> None:
        """One pass: losses reported by writers, renewals due, acquisitions of waiting leases,
        then the health problems that follow."""
        with self._lock:
            reported, self._reported = self._reported, []
        for k, fence, reason in reported:
            held = self._held.get(k)
            if held is not None and (fence is None or fence == held.fence):
                self._lose(k, reason)
        registry_error: str | None = None
        for k, held in list(self._held.items()):
            if self._stopping.is_set():
                return
            sent = time.monotonic()
            if sent - held.renewed_mono < self._renew_s:
                continue
            try:
                self._registry.renew_lease(held.fence, ttl_ms=self._ttl_ms)
            except LeaseLost as exc:
                self._lose(k, str(exc))
                continue
            except ColdchainError as exc:
                registry_error = f"renewing the lease of partition {k}: {exc}"
                if time.monotonic() - held.renewed_mono >= self._ttl_s:
                    self._lose(k, f"not renewed for {self._ttl_s:g} s (registry: {exc})")
                continue
            held.renewed_mono = sent
            self.renewals_total += 1
        for k in sorted(self._waiting):
            if self._stopping.is_set():
                return
            try:
                self._try_acquire(k)
            except ColdchainError as exc:
                registry_error = f"acquiring the lease of partition {k}: {exc}"
        if registry_error is None:
            self._health.clear(_REGISTRY_UNAVAILABLE)
        else:
            self._health.raise_problem(_REGISTRY_UNAVAILABLE, registry_error)
        self._report_waiting()

    def _try_acquire(self, k: int) -> None:
        name = self._names[k]
        sent = time.monotonic()
        lease = self._registry.acquire_lease(name, self.owner, ttl_ms=self._ttl_ms)
        if not lease.held_by(self.owner):
            before = self._waiting.get(k)
            if before is None or (before.owner, before.token) != (lease.owner, lease.token):
                log.warning(
                    "partition %d: lease %s is held by %s (token %d) until %s; waiting",
                    k,
                    name,
                    lease.owner,
                    lease.token,
                    _utc(lease.expires_ms),
                )
            self._waiting[k] = lease
            return
        fence = lease.fence()
        self._held[k] = _Held(fence, sent)
        del self._waiting[k]
        self.acquisitions_total += 1
        log.info("partition %d: lease %s acquired (token %d)", k, name, fence.token)
        try:
            self._acquired(k, fence)
        except ColdchainError as exc:
            log.error("partition %d could not start (lease released, retrying): %s", k, exc)
            del self._held[k]
            self._waiting[k] = None
            self._release(fence)

    def _lose(self, k: int, reason: str) -> None:
        self._held.pop(k, None)
        self._gone.add(k)
        self.losses_total += 1
        log.error("partition %d: lease lost, stopping it: %s", k, reason)
        self._on_lost(k, reason)

    def _report_waiting(self) -> None:
        if not self._waiting:
            self._health.clear(PARTITION_LEASED_ELSEWHERE)
            return
        parts = []
        for k, lease in sorted(self._waiting.items()):
            if lease is None or lease.owner is None:
                parts.append(f"partition {k} (not acquired yet)")
            else:
                parts.append(
                    f"partition {k} (held by {lease.owner}, token {lease.token}, until "
                    f"{_utc(lease.expires_ms)})"
                )
        self._health.raise_problem(
            PARTITION_LEASED_ELSEWHERE, "waiting for the lease of " + ", ".join(parts)
        )

    def _release(self, fence: Fence) -> bool:
        try:
            return self._registry.release_lease(fence)
        except ColdchainError as exc:  # it expires by itself after the TTL
            log.warning("lease %s not released (it expires by itself): %s", fence.name, exc)
            return False

    def release_all(self) -> None:
        """Release every lease still held (after a clean stop's last checkpoint)."""
        for k, held in sorted(self._held.items()):
            if self._release(held.fence):
                log.info("partition %d: lease %s released", k, held.fence.name)
        self._held.clear()

    def stats(self) -> dict[str, object]:
        out: dict[str, object] = {
            "rules_lease_acquisitions": self.acquisitions_total,
            "rules_lease_renewals": self.renewals_total,
            "rules_lease_losses": self.losses_total,
            "rules_partitions_waiting": len(self._waiting),
        }
        for k in self._names:
            fence = self.fence(k)
            out[f"rules_partition_{k}_lease_token"] = 0 if fence is None else fence.token
        return out

    @property
    def lost_any(self) -> bool:
        return bool(self._gone)
