"""Onboarding without restarts (issue 11, item 4), on a real ``coldchain ingest``, mosquitto
and influxd: a device unknown when it publishes is dead-lettered; the fleet file changes while
ingest runs; the device's next messages are accepted without a restart; ``coldchain
deadletters replay`` brings its earlier readings into InfluxDB exactly once; a second replay
does nothing new; a bad fleet file is refused while the fleet in force stays."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coldchain.fleet import Fleet
from deploy.launcher import Services
from ingest.spool import Spool
from simulators.loadgen import LoadMessage, LoadPublisher, SeededLoad, make_fleet
from tests.e2e.ingest_process import ROOT, IngestProcess
from tests.harness import expected_readings, spine_settings, stored_points, wait_for

pytestmark = pytest.mark.e2e

NEW_DEVICE, NEW_ASSET = "load-dev-0001", "load-truck-0001"
_CLI = (sys.executable, "-m", "cli.main")


def _write_fleet(path: Path, fleet: Fleet) -> None:
    tmp = path.with_suffix(".new")
    tmp.write_text(fleet.to_yaml(), encoding="utf-8")
    os.replace(tmp, path)  # atomically, as docs/operations.md asks


def _publish(pub: LoadPublisher, messages: list[LoadMessage]) -> None:
    for m in messages:
        pub.publish(m.topic, m.payload)
    assert pub.flush(30)


def _unknown_letters(spool_path: Path) -> list[dict[str, object]]:
    spool = Spool(spool_path)
    try:
        return spool.find_dead_letters(device_id=NEW_DEVICE, reason="unknown_device", limit=1000)
    finally:
        spool.close()


def _replay(ingest: IngestProcess) -> tuple[int, dict[str, object]]:
    proc = subprocess.run(
        [*_CLI, "deadletters", "replay", "--device", NEW_DEVICE, "--wait-s", "60", "--json"],
        env={**os.environ, **ingest.env},
        cwd=ROOT,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode in (0, 1), proc.stderr.decode()
    return proc.returncode, json.loads(proc.stdout)


def test_a_device_registered_while_ingest_runs_is_accepted_and_its_dead_letters_replayed(
    services: Services, unique_name: str, tmp_path: Path
) -> None:
    full = make_fleet(2)
    settings = spine_settings(services, unique_name, tmp_path)
    _write_fleet(settings.fleet_path, Fleet([full.assets["load-truck-0000"]]))
    ingest = IngestProcess(settings, tmp_path / "ingest.log", COLDCHAIN_FLEET_RELOAD_S="0.5")
    ingest.start()
    assert ingest.proc is not None
    pid = ingest.proc.pid
    now = int(time.time() * 1000)
    messages = list(SeededLoad(full, seed=11).messages(40, now - 3_600_000))
    new_device = [m for m in messages if m.asset_id == NEW_ASSET]
    early, late = new_device[:20], new_device[20:]
    pub = LoadPublisher("127.0.0.1", services.mosquitto.port, f"pub-{unique_name}")
    try:
        # 1. Unknown at publish time: every message is dead-lettered with its full payload.
        _publish(pub, [m for m in messages if m.asset_id != NEW_ASSET] + early)
        assert wait_for(lambda: len(_unknown_letters(settings.spool.path)) == len(early), 60)
        assert stored_points(services, settings.influx.database, NEW_ASSET) == {}

        # 2. A fleet file that does not check is refused; the fleet in force stays.
        settings.fleet_path.write_text("assets:\n  - id: [broken\n", encoding="utf-8")
        assert wait_for(lambda: ingest.healthz()[1].startswith("fleet_rejected: "), 30)
        assert str(settings.fleet_path) in ingest.healthz()[1]

        # 3. The device is registered while ingest runs: its new messages are accepted.
        _write_fleet(settings.fleet_path, full)
        assert wait_for(lambda: ingest.metrics()["fleet_reloads"] >= 1, 30)
        assert wait_for(lambda: ingest.healthz()[0] == 200, 30), ingest.healthz()
        _publish(pub, late)
        want_late = expected_readings(late)[NEW_ASSET]
        assert wait_for(
            lambda: stored_points(services, settings.influx.database, NEW_ASSET) == want_late, 60
        ), "the newly registered device's messages were not stored"
        assert ingest.proc.poll() is None and ingest.proc.pid == pid  # no restart
        assert len(_unknown_letters(settings.spool.path)) == len(early)  # no new letters

        # 4. Replay: the earlier readings arrive, exactly once.
        code, counts = _replay(ingest)
        assert code == 0, counts
        assert (counts["letters"], counts["queued_now"], counts["replayed"]) == (20, 20, 20)
        assert counts["outcomes"] == {"stored": 20}
        want_all = expected_readings(new_device)[NEW_ASSET]
        assert wait_for(
            lambda: stored_points(services, settings.influx.database, NEW_ASSET) == want_all, 60
        ), "replayed readings missing from InfluxDB"
        assert ingest.metrics()["replayed_messages"] == len(early)
        letters = _unknown_letters(settings.spool.path)
        assert {(r["replay"], r["replay_outcome"]) for r in letters} == {("replayed", "stored")}

        # 5. A second replay finds nothing new to do.
        code, counts = _replay(ingest)
        assert code == 0, counts
        assert (counts["letters"], counts["queued_now"], counts["replayed"]) == (20, 0, 0)
        assert counts["replayed_before"] == 20
        time.sleep(1.0)  # a replay poll interval: nothing more must be taken
        assert ingest.metrics()["replayed_messages"] == len(early)
        assert stored_points(services, settings.influx.database, NEW_ASSET) == want_all
    finally:
        pub.close()
        ingest.kill()
