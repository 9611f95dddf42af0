"""The rules engine inside ingest, through real mosquitto and influxd, with late data.

The coverage-loss scenario: a truck loses coverage for two hours while its chilled door stands
open for twenty minutes, then uploads its backlog. Live, a data gap must open while the truck is
silent and become ``recovered`` when the backlog fills it; the door and temperature excursions
inside the gap must be created late (``detected_late``), each announced on MQTT, once per
lifecycle change, never per reading.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from deploy.launcher import Services
from ingest.service import IngestService
from registry import open_registry
from simulators import GroundTruth, library_scenario
from simulators.publish import ReplayClock, ReplayProgress, replay_window, run_live
from simulators.replay_clock import ingest_progress
from tests.harness import spine_settings

pytestmark = pytest.mark.e2e


class _Alerts:
    def __init__(self, port: int) -> None:
        self.items: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="alerts-watcher")
        self._c.on_connect = lambda c, *_: c.subscribe("coldchain/v1/alerts/#", qos=1)
        self._c.on_subscribe = lambda *_: self._ready.set()
        self._c.on_message = self._on_message
        self._c.connect("127.0.0.1", port)
        self._c.loop_start()
        assert self._ready.wait(10)

    def _on_message(self, client: object, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.items.append({"topic": msg.topic, **json.loads(msg.payload)})

    def close(self) -> None:
        self._c.disconnect()
        self._c.loop_stop()


def test_backlog_recovers_the_gap_and_reveals_late_excursions(
    services: Services, unique_name: str, tmp_path: Path
) -> None:
    scenario = library_scenario("coverage_loss_backlog")
    fleet = scenario.fleet()
    settings = spine_settings(services, unique_name, tmp_path)
    speedup = 1440.0
    start, end = replay_window(scenario)
    progress = ReplayProgress(start)  # a stall of the publisher or ingest is no silence
    clock = ReplayClock(start, speedup, end, progress=progress)
    service = IngestService(settings, fleet, clock_ms=clock)
    progress.follow(ingest_progress(service))
    service.start()
    alerts = _Alerts(services.mosquitto.port)
    try:
        clock.begin()
        run_live(
            scenario,
            port=services.mosquitto.port,
            speedup=speedup,
            start=start,
            truth_path=tmp_path / "truth.json",
            progress=progress,
        )
        assert service.wait_drained(60), service.stats()
        time.sleep(1.0)  # alerts are QoS 1 on their way
    finally:
        alerts.close()
        service.stop()

    truth = GroundTruth.read(tmp_path / "truth.json")
    loss = next(f for f in truth.faults if f["kind"] == "coverage_loss")
    door = next(f for f in truth.faults if f["kind"] == "door_open")
    loss_start, loss_end = (_ms(loss["start"]), _ms(loss["end"]))
    door_start = _ms(door["start"])
    with open_registry(settings.registry_url) as reg:
        found = {
            (r.excursion.rule, r.excursion.start_ms): r.excursion
            for r in reg.find_excursions(asset_id="truck-nt-01")
        }
    gaps = [e for e in found.values() if e.kind == "data_gap"]
    # One gap: opened on silence during the outage, then filled by the backlog.
    assert [g.status for g in gaps] == ["recovered"]
    assert loss_start <= gaps[0].start_ms <= loss_start + 11 * 60_000

    late = [e for e in found.values() if e.detected_late]
    assert {e.kind for e in late} >= {"door_open", "range"}
    door_exc = next(e for e in late if e.kind == "door_open")
    # Door rule: open longer than the allowed minutes, starting when the door opened.
    assert abs(door_exc.start_ms - door_start) <= 60_000
    for e in late:
        assert loss_start <= e.start_ms <= loss_end, e
        # Detected on the replay clock only once the backlog came, after the coverage returned.
        assert e.detected_ms >= loss_end, e

    by_id: dict[str, list[str]] = {}
    for a in alerts.items:
        assert a["topic"] == "coldchain/v1/alerts/truck-nt-01"
        by_id.setdefault(a["id"], []).append(a["change"])
    assert set(by_id) == {e.id for e in found.values()}, "every excursion announced"
    assert by_id[gaps[0].id][-1] == "recovered"
    for e in late:
        assert by_id[e.id][-1] == "closed"
    # Lifecycle changes only: a handful per excursion, not one per reading.
    assert max(len(v) for v in by_id.values()) <= 3
    # Issue 9: the time actually out of range and the return travel with the record, from the
    # engine through the registry and the alert.
    rng = next(e for e in late if e.kind == "range")
    assert rng.end_ms is not None and rng.out_of_range_s is not None and rng.returned_ms
    assert 0 < rng.out_of_range_s * 1000 <= rng.end_ms - rng.start_ms
    assert rng.start_ms < rng.returned_ms <= rng.end_ms
    last = [a for a in alerts.items if a["id"] == rng.id][-1]
    assert (last["out_of_range_s"], last["returned_ms"]) == (rng.out_of_range_s, rng.returned_ms)


def _ms(iso: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)
