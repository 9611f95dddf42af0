"""A replay's clock cannot run ahead of the data (simulators/replay_clock.py), through real
mosquitto and influxd.

The coverage-loss scenario at 2880x (a truck silent for two hours, then its backlog) with two
stalls injected at fixed points of the stream, each 1.5 s of wall time = 72 simulated minutes,
far past the 10 min data-gap limit: the publisher sleeps (as when the machine does not schedule
it), then ingest's spool is locked (its group commit waits, as on a slow disk). A clock driven
by the wall clock alone reads both as the truck's silence; this one stops. The real silence is
still seen: one data gap, opened during the outage and recovered by the backlog, as in
test_rules_live.py.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from deploy.launcher import Services
from ingest.service import IngestService
from registry import open_registry
from simulators import GroundTruth, SimMessage, library_scenario
from simulators.publish import ReplayClock, ReplayProgress, replay_window, run_live
from simulators.replay_clock import ingest_progress
from tests.harness import spine_settings

pytestmark = pytest.mark.e2e

SPEEDUP = 2880.0
STALL_S = 1.5  # 72 simulated minutes
GAP_LIMIT_MS = 10 * 60_000


class _Stalls:
    """Stalls the publisher at ``publisher_at`` and ingest's spool at ``ingest_at`` (offsets of
    the simulated window) and records what a wall-clock-only replay clock read meanwhile."""

    def __init__(
        self, start: datetime, spool: Path, old: ReplayClock, new: ReplayClock, p: ReplayProgress
    ) -> None:
        self.publisher_at = start + timedelta(hours=1)
        self.ingest_at = start + timedelta(hours=4, minutes=30)
        self.spool, self.old, self.new, self.progress = spool, old, new, p
        self.seen: dict[str, dict[str, float]] = {}
        self.threads: list[threading.Thread] = []

    def __call__(self, msg: SimMessage) -> None:
        out_ms = msg.time.timestamp() * 1000
        if "publisher" not in self.seen and msg.time >= self.publisher_at:
            time.sleep(STALL_S)
            self.seen["publisher"] = {"old": self.old() - out_ms, "new": self.new() - out_ms}
        if "ingest" not in self.seen and msg.time >= self.ingest_at:
            self.seen["ingest"] = {}
            locked = threading.Event()
            t = threading.Thread(target=self._lock_spool, args=(locked,))
            t.start()
            self.threads.append(t)
            assert locked.wait(30)

    def _lock_spool(self, locked: threading.Event) -> None:
        db = sqlite3.connect(self.spool, timeout=30.0, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")  # ingest's group commits wait for the lock
            locked.set()
            time.sleep(STALL_S)
            done_ms = self.progress.processed_ms()
            self.seen["ingest"] = {"old": self.old() - done_ms, "new": self.new() - done_ms}
            db.execute("ROLLBACK")
        finally:
            db.close()


def test_stalls_of_the_publisher_or_ingest_open_no_data_gap(
    services: Services, unique_name: str, tmp_path: Path
) -> None:
    scenario = library_scenario("coverage_loss_backlog")
    fleet = scenario.fleet()
    settings = spine_settings(services, unique_name, tmp_path)
    start, end = replay_window(scenario)
    progress = ReplayProgress(start)
    clock = ReplayClock(start, SPEEDUP, end, progress=progress, slack_s=60.0)
    old = ReplayClock(start, SPEEDUP, end)  # the wall clock's pace alone, for comparison
    service = IngestService(settings, fleet, clock_ms=clock)
    progress.follow(ingest_progress(service))
    service.start()
    stalls = _Stalls(start, settings.spool.path, old, clock, progress)
    try:
        clock.begin()
        old.begin()
        stats = run_live(
            scenario,
            port=services.mosquitto.port,
            speedup=SPEEDUP,
            start=start,
            truth_path=tmp_path / "truth.json",
            on_publish=stalls,
            progress=progress,
        )
        for t in stalls.threads:
            t.join(30)
        assert service.wait_drained(60), service.stats()
    finally:
        service.stop()

    # Both stalls happened, and the wall clock's pace alone ran past the gap limit in each.
    pub, ing = stalls.seen["publisher"], stalls.seen["ingest"]
    assert pub["old"] > GAP_LIMIT_MS and ing["old"] > GAP_LIMIT_MS, stalls.seen
    # The bounded clock: at most one sample interval past what was out, and past what ingest
    # processed at most the publisher's allowance plus that interval.
    assert pub["new"] <= 60_000, stalls.seen
    assert ing["new"] <= progress.ahead_ms + 60_000, stalls.seen
    assert stats.held_s > 0.5, stats  # the publisher waited for the stalled ingest
    assert progress.lost == 0

    truth = GroundTruth.read(tmp_path / "truth.json")
    loss = next(f for f in truth.faults if f["kind"] == "coverage_loss")
    loss_start, loss_end = (_ms(loss["start"]), _ms(loss["end"]))
    with open_registry(settings.registry_url) as reg:
        found = [r.excursion for r in reg.find_excursions()]
    gaps = [e for e in found if e.kind == "data_gap"]
    # The one real silence, and nothing for the stalls.
    assert [g.status for g in gaps] == ["recovered"], gaps
    assert loss_start <= gaps[0].start_ms <= loss_start + 11 * 60_000
    assert gaps[0].detected_ms < loss_end  # seen live, during the outage
    assert not [e for e in found if e.kind == "clock_skew"], found


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)
