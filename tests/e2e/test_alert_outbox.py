"""An alert survives a SIGKILL between recording its change and delivering it (issue 11 item 3).

A real ``coldchain ingest`` on real mosquitto and influxd, with ``COLDCHAIN_ALERTS__HOLD_S``
holding every queued alert back: a chilled truck's range excursion opens and closes, both
changes are recorded with their alerts queued in the outbox, nothing is published yet, and
ingest is SIGKILLed. Restarted without the hold, it delivers each queued alert: the subscriber
gets exactly one per idempotency key, and the outbox marks every row delivered.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from deploy.launcher import Services
from registry import ChannelDelivery, OutboxEntry, open_registry
from simulators.loadgen import LoadPublisher
from tests.e2e.ingest_process import IngestProcess
from tests.e2e.test_rules_restart import FLEET, MIN, _msg, _truck_b_temp
from tests.harness import spine_settings, subscribe_alerts, wait_for

pytestmark = pytest.mark.e2e


class _Subscriber:
    """Every alert of the test's fleet, with the MQTT dup flag."""

    def __init__(self, port: int, name: str) -> None:
        self.items: list[tuple[dict[str, Any], bool]] = []
        self._lock = threading.Lock()
        self._c = subscribe_alerts(port, f"outbox-{name}", self._on_message)

    def _on_message(self, client: object, userdata: object, msg: mqtt.MQTTMessage) -> None:
        body = json.loads(msg.payload)
        if body.get("asset_id") in FLEET.assets:
            with self._lock:
                self.items.append((body, bool(msg.dup)))

    def keys(self) -> Counter[str]:
        with self._lock:
            return Counter(b["key"] for b, _ in self.items)

    def close(self) -> None:
        self._c.disconnect()
        self._c.loop_stop()


def _outbox(url: str) -> list[OutboxEntry]:
    with open_registry(url) as reg:
        return reg.outbox_entries()


def _deliveries(url: str) -> list[ChannelDelivery]:
    with open_registry(url) as reg:
        return reg.alert_deliveries()


def test_sigkill_between_recording_and_delivering_delivers_each_alert_once(
    services: Services, unique_name: str, tmp_path: Path
) -> None:
    settings = spine_settings(services, unique_name, tmp_path)
    settings.fleet_path.write_text(FLEET.to_yaml())
    url = settings.registry_url
    now = int(time.time() * 1000)
    base = now - now % MIN - 100 * MIN
    sub = _Subscriber(services.mosquitto.port, unique_name)
    pub = LoadPublisher("127.0.0.1", services.mosquitto.port, f"pub-{unique_name}")
    held = IngestProcess(settings, tmp_path / "ingest.log", COLDCHAIN_ALERTS__HOLD_S="600")
    ingest = held.start()
    try:
        for m in range(95):  # a range excursion [30, 55]: opened, then closed
            pub.publish(*_msg("truck-b", base + m * MIN, m, _truck_b_temp(m)))
        assert pub.flush(30)

        def both_queued() -> bool:
            changes = {e.key.split(":")[1] for e in _outbox(url) if e.routed_ms is None}
            return {"opened", "closed"} <= changes

        assert wait_for(both_queued, 60, 0.2), held.log.read_text()[-3000:]
        # Recorded and queued, not delivered: the kill lands between the two.
        queued = _outbox(url)
        assert all(e.routed_ms is None for e in queued) and _deliveries(url) == [], queued
        with open_registry(url) as reg:
            recorded = {r.excursion.id for r in reg.find_excursions(asset_id="truck-b")}
        assert {e.key.split(":")[0] for e in queued} <= recorded
        assert sub.keys() == Counter()
        held.kill()

        ingest = IngestProcess(settings, tmp_path / "ingest.log").start()
        keys = {e.key for e in queued}

        def delivered() -> bool:
            rows = _deliveries(url)
            routed = {r.key for r in rows}
            return routed >= keys and all(r.delivered for r in rows) and set(sub.keys()) >= keys

        assert wait_for(delivered, 60, 0.2), (sub.items, _deliveries(url))
        time.sleep(2.0)  # any repeat would be on its way by now
    finally:
        pub.close()
        sub.close()
        ingest.kill()

    rows = _outbox(url)
    assert {e.key for e in rows} == keys  # the restart queued nothing new for the same changes
    got = sub.keys()
    assert got == Counter({k: 1 for k in keys}), sub.items
    changes = sorted(k.split(":")[1] for k in got)
    assert changes == ["closed", "opened"], got
    for body, _ in sub.items:
        assert body["key"] == f"{body['id']}:{body['change']}"
