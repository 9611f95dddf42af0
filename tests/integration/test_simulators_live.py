"""The live runner against a real mosquitto: what a subscriber receives is what was simulated."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from coldchain.contract import parse_message
from deploy.launcher import Services
from simulators import GroundTruth, SimMessage, library_scenario
from simulators.publish import run_live, run_scale

pytestmark = pytest.mark.integration


class Subscriber:
    def __init__(
        self,
        port: int,
        client_id: str,
        topic: str = "coldchain/v1/devices/#",
        keep_retained: bool = False,
    ) -> None:
        self.messages: list[tuple[str, bytes, bool, float]] = []
        self._lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)

        def on_connect(c: mqtt.Client, u: Any, f: Any, rc: Any, p: Any) -> None:
            c.subscribe(topic, qos=1)

        def on_subscribe(c: mqtt.Client, u: Any, mid: int, rcs: Any, p: Any) -> None:
            ready.set()

        def on_message(c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
            # Retained messages replayed on subscribing come from earlier tests on this broker.
            if msg.retain and not keep_retained:
                return
            with self._lock:
                self.messages.append((msg.topic, bytes(msg.payload), msg.retain, time.time()))

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert ready.wait(10), "subscription not confirmed"

    def wait_for(self, count: int, timeout_s: float = 20.0) -> list[tuple[str, bytes, bool, float]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= count:
                    break
            time.sleep(0.05)
        time.sleep(0.2)  # anything beyond the expected count would show up now
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscriber(services: Services, unique_name: str) -> Iterator[Subscriber]:
    sub = Subscriber(services.mosquitto.port, unique_name)
    yield sub
    sub.close()


def test_live_backlog_arrives_complete_with_original_device_times(
    services: Services, subscriber: Subscriber, tmp_path: Any
) -> None:
    scenario = library_scenario("coverage_loss_backlog")
    sent: list[SimMessage] = []
    truth_path = tmp_path / "truth.json"
    t0 = time.time()
    stats = run_live(
        scenario,
        port=services.mosquitto.port,
        speedup=6 * 3600 / 2.0,  # the 6 h scenario in ~2 s
        truth_path=truth_path,
        on_publish=sent.append,
    )
    wall = time.time() - t0
    assert 1.5 <= wall <= 15.0, "the accelerated clock paces the run"
    assert stats.acked == stats.messages == len(sent)

    got = subscriber.wait_for(len(sent))
    assert sorted(p for t, p, *_ in got) == sorted(m.payload for m in sent)

    truth = GroundTruth.read(truth_path)
    gap = next(f for f in truth.faults if f["kind"] == "coverage_loss")
    start, end = datetime.fromisoformat(gap["start"]), datetime.fromisoformat(gap["end"])
    batches = [
        parse_message(p) for t, p, *_ in got if t.endswith("/telemetry") and b'"samples"' in p
    ]
    backlog = [s for b in batches for s in b.samples_list()]
    truth_times = [
        datetime.fromisoformat(t)
        for t in truth.series("truck-nt-01", "main")["t"]
        if start <= datetime.fromisoformat(t)
    ]
    assert len(batches) >= 2
    assert [s.ts for s in backlog] == truth_times[: len(backlog)]
    assert all(start <= s.ts < end + timedelta(seconds=60) for s in backlog)

    # Never past the wall clock: no device time is ahead of when it was received.
    for topic, payload, _, received in got:
        if topic.endswith("/telemetry"):
            for s in parse_message(payload).samples_list():
                assert s.ts.timestamp() <= received + 1.0


def test_each_device_has_its_own_connection_and_a_retained_status(
    services: Services, unique_name: str
) -> None:
    scenario = library_scenario("dock_handover")
    stats = run_live(scenario, port=services.mosquitto.port, speedup=0)
    assert stats.connections == len(scenario.fleet().device_ids) == 2
    topic = "coldchain/v1/devices/+/status"
    late = Subscriber(services.mosquitto.port, unique_name + "-late", topic, keep_retained=True)
    try:
        got = late.wait_for(99, timeout_s=2)
    finally:
        late.close()
    retained = {json.loads(p)["device_id"]: json.loads(p)["state"] for _, p, r, _ in got if r}
    mine = {d: retained.get(d) for d in scenario.fleet().device_ids}
    assert mine == {"truck-sz-02-tcu": "online", "store-gz-gw": "online"}, got


def test_scale_mode_multiplexes_and_everything_arrives(
    services: Services, subscriber: Subscriber
) -> None:
    stats = run_scale(300, port=services.mosquitto.port, connections=3, time_limit_s=2.0)
    assert stats.connections == 3
    assert stats.devices == 300
    assert stats.messages > 1000 and stats.acked == stats.messages
    assert stats.msgs_per_s > 300
    got = subscriber.wait_for(stats.messages)
    assert len(got) == stats.messages
    telemetry = [p for t, p, *_ in got if t.endswith("/telemetry")]
    assert {parse_message(p).device_id for p in telemetry[:500]} <= {
        f"scale-truck-{i:05d}-tcu" for i in range(300)
    } | {f"scale-store-{i:05d}-gw" for i in range(300)}
