"""Concurrent writers on one registry, each with its own engine (as separate processes have):
on PostgreSQL they really run at once, where SQLite's one write lock used to hide races.

Every mutating call locks the audit head row first (registry/audit.py ``lock_head``), so
writers are serialised and each sees the others' commits: the same excursion upserted by two
writers is one row with one audit entry per real change; checkpoints and alert claims are
single statements that cannot interleave badly; the chain stays one chain.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import threading
from collections.abc import Callable

import pytest

from cli.main import main
from coldchain.rules.excursion import Excursion
from registry import Fanout, OutboxMessage, open_registry
from registry.outbox import Routing
from tests.unit.registry.writer_process import append_custody_and_reads

WRITERS = 4


def _together(work: Callable[[int], None], n: int = WRITERS) -> None:
    """Run ``work(i)`` for i in range(n) in threads released at once; re-raise any error."""
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def run(i: int) -> None:
        try:
            start.wait(30)
            work(i)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a writer is stuck"
    assert errors == [], errors


def test_writers_upserting_the_same_excursion_keep_one_row_and_one_entry_per_change(
    migrated_url: str,
) -> None:
    """Like two rules processes recomputing one excursion: the same ten versions each."""
    first = Excursion("truck-1", "c1", "range", "range", "warning", "open", 1_000, None, 2_000)
    versions = [dataclasses.replace(first, peak_c=8.0 + k, end_ms=None) for k in range(9)]
    versions.append(dataclasses.replace(first, peak_c=17.0, status="closed", end_ms=9_000))
    changed = [0] * WRITERS

    def writer(i: int) -> None:
        with open_registry(migrated_url) as reg:
            for version in versions:
                # As the rules stage records a change: its checkpoint and its alert with it.
                key = f"{version.id}/{version.status}"
                changed[i] += len(
                    reg.upsert_excursions(
                        [version],
                        checkpoints={"truck-1/c1": {"by": i, "peak_c": version.peak_c}},
                        alerts=[OutboxMessage(key, "{}")],
                    )
                )

    _together(writer)
    with open_registry(migrated_url) as reg:
        (row,) = reg.find_excursions()
        assert row.excursion == versions[-1]  # every writer's last write is the last version
        upserts = [e for e in reg.audit_entries() if e.action == "excursion.upsert"]
        assert len(upserts) == sum(changed) >= len(versions)
        # Each entry records the row as that writer left it: the last one is the final row.
        assert json.loads(upserts[-1].payload)["peak_c"] == 17.0
        # One alert per (excursion, state), however many writers queued it.
        assert [e.key for e in reg.outbox_entries()] == [f"{first.id}/open", f"{first.id}/closed"]
        checkpoint = reg.load_checkpoint("truck-1/c1")
        assert checkpoint is not None and checkpoint["peak_c"] == 17.0
        assert reg.trail.verify().ok


def test_writers_saving_the_same_checkpoint_never_fail_and_one_value_wins(
    migrated_url: str,
) -> None:
    def writer(i: int) -> None:
        with open_registry(migrated_url) as reg:
            for n in range(20):
                reg.save_checkpoints({"truck-1/c1": {"by": i, "n": n}, f"own/{i}": {"n": n}})

    _together(writer)
    with open_registry(migrated_url) as reg:
        shared = reg.load_checkpoint("truck-1/c1")
        assert shared is not None and shared["n"] == 19 and shared["by"] in range(WRITERS)
        assert reg.load_checkpoints("own/") == {f"own/{i}": {"n": 19} for i in range(WRITERS)}


def test_claimers_never_get_the_same_alert(migrated_url: str) -> None:
    """Deliverers of several processes: each due delivery goes to exactly one claimer."""
    total = 60
    with open_registry(migrated_url) as reg:
        reg.enqueue_alerts([OutboxMessage(f"exc-{k}:opened", "{}") for k in range(total)])
        entries = reg.unrouted_alerts(now_ms=5_000_000_000_000, limit=total)
        reg.route_alerts(
            [Routing(e.id, [Fanout("mqtt", 1)]) for e in entries], now_ms=5_000_000_000_000
        )
        ids = {d.id for d in reg.alert_deliveries()}
    assert len(ids) == total
    claimed: list[list[int]] = [[] for _ in range(WRITERS)]

    def claimer(i: int) -> None:
        with open_registry(migrated_url) as reg:
            while batch := reg.claim_alert_deliveries(
                "mqtt", owner=f"p{i}", lease_ms=10**12, now_ms=5_000_000_000_000, limit=4
            ):
                claimed[i].extend(d.id for d in batch)

    _together(claimer)
    every = [delivery_id for ids_of in claimed for delivery_id in ids_of]
    assert sorted(every) == sorted(ids)  # each row once: none twice, none left


# SQLite's single write lock is exercised by the thread tests; processes cost seconds each.
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_processes_appending_at_once_leave_one_chain_that_audit_verify_accepts(
    migrated_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    processes, count = 3, 10
    with open_registry(migrated_url) as reg:
        reg.create_shipment("S1", profile="chilled", actor="api")
    # A fork server imports the registry once and forks each writer from that clean,
    # single-threaded process (not from pytest's): real processes, one import's cost.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tests.unit.registry.writer_process"])
    workers = [
        context.Process(target=append_custody_and_reads, args=(migrated_url, n, count))
        for n in range(processes)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(180)
    assert [w.exitcode for w in workers] == [0] * processes
    assert main(["audit", "verify", "--registry-url", migrated_url]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "audit intact"
    with open_registry(migrated_url) as reg:
        heads = reg.trail.heads()
        assert heads["writes"][0] == 1 + processes * count
        assert heads["reads"][0] == processes * count
        assert len(reg.custody_events("S1")) == processes * count
