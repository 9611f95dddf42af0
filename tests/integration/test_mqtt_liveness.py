"""The liveness probe against a real mosquitto: idle is healthy, deaf is red and recovers, a
broker that is away is ``mqtt_disconnected``, and the production ACL lets ingest probe."""

from __future__ import annotations

import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from coldchain.contract import device_topic, shared_subscription
from coldchain.settings import MqttSettings
from deploy.launcher import MOSQUITTO_CONFIG_DIR, Mosquitto, Services
from ingest.consumer import Delivery, MqttSource
from ingest.health import Health
from ingest.liveness import MQTT_DISCONNECTED, MQTT_NOT_RECEIVING, probe_subscription
from simulators.loadgen import LoadPublisher
from tests.harness import wait_for

pytestmark = pytest.mark.integration


class _Sink:
    def __init__(self) -> None:
        self.items: list[Delivery] = []
        self._lock = threading.Lock()
        self.src: MqttSource | None = None

    def __call__(self, d: Delivery) -> None:
        with self._lock:
            self.items.append(d)
        if self.src is not None:
            self.src.ack(d)

    def topics(self) -> set[str]:
        with self._lock:
            return {d.topic for d in self.items}


def _source(port: int, name: str, group: str | None = None, **extra: object) -> MqttSource:
    settings = MqttSettings(
        port=port,
        client_id=name,
        share_group=group or name,
        probe_interval_s=0.2,
        probe_missed_intervals=3,
        disconnected_grace_s=0.5,
        **extra,  # type: ignore[arg-type]
    )
    sink = _Sink()
    src = MqttSource(settings, sink, health=Health())
    sink.src = src
    return src


def _returned(src: MqttSource) -> int:
    return int(src.stats()["mqtt_probes_returned"])  # type: ignore[call-overload]


def test_an_idle_process_stays_healthy_and_probes_never_reach_the_pipeline(
    services: Services, unique_name: str
) -> None:
    src = _source(services.mosquitto.port, unique_name)
    src.start()
    try:
        assert src.wait_connected(10)
        # Nothing is published for ten probe intervals: idle, not deaf.
        assert wait_for(lambda: _returned(src) >= 10, 20)
        assert src.health.ok, src.health.problems()
        assert src._deliver.items == []  # type: ignore[attr-defined]
        assert src.probe_rtt_s is not None and src.probe_rtt_s >= 0
    finally:
        src.stop()


def test_a_process_that_lost_its_subscriptions_turns_red_and_recovers(
    services: Services, unique_name: str
) -> None:
    src = _source(services.mosquitto.port, unique_name)
    sink: _Sink = src._deliver  # type: ignore[assignment]
    src.start()
    pub = LoadPublisher("127.0.0.1", services.mosquitto.port, f"pub-{unique_name}")
    try:
        assert src.wait_connected(10)
        assert wait_for(lambda: _returned(src) >= 2, 10)
        # What the broker did on restart, done behind the source's back: the subscriptions
        # are gone while the connection and session stay.
        src._client.unsubscribe(
            [shared_subscription(unique_name, "telemetry"), probe_subscription(unique_name)]
        )
        assert wait_for(lambda: MQTT_NOT_RECEIVING in src.health.problems(), 10)
        assert "nothing received" in src.health.problems()[MQTT_NOT_RECEIVING]
        # It subscribed again by itself: probes return, the problem clears, telemetry flows.
        assert wait_for(lambda: src.health.ok, 10), src.health.problems()
        assert int(src.stats()["mqtt_resubscribes"]) >= 1  # type: ignore[call-overload]
        pub.publish(device_topic("dev-1"), b"after recovery")
        assert pub.flush(10)
        assert wait_for(lambda: device_topic("dev-1") in sink.topics(), 10)
    finally:
        src.stop()
        pub.close()


def test_a_broker_away_longer_than_the_grace_is_mqtt_disconnected(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "mosquitto")
    src = _source(broker.port, "liveness-away")
    try:
        broker.start()
        src.start()
        assert src.wait_connected(10)
        broker.kill()
        assert wait_for(lambda: MQTT_DISCONNECTED in src.health.problems(), 10)
        assert f"127.0.0.1:{broker.port}" in src.health.problems()[MQTT_DISCONNECTED]
        returned = _returned(src)
        broker.start()
        assert wait_for(lambda: src.health.ok and _returned(src) > returned, 30), (
            src.health.problems()
        )
    finally:
        src.stop()
        broker.cleanup()


def test_each_process_of_a_share_group_gets_its_own_probes(
    services: Services, unique_name: str
) -> None:
    """A probe through the telemetry group would reach one member; each process's own group
    reaches exactly that process."""
    sources = [
        _source(services.mosquitto.port, f"{unique_name}-{i}", group=unique_name) for i in range(2)
    ]
    for src in sources:
        src.start()
    try:
        assert all(src.wait_connected(10) for src in sources)
        assert wait_for(lambda: all(_returned(s) >= 10 for s in sources), 20)
        assert all(s.health.ok for s in sources)
    finally:
        for src in sources:
            src.stop()


def test_the_production_acl_lets_ingest_probe_and_receive(tmp_path: Path) -> None:
    creds = {"coldchain-ingest-1": "ingest-pw", "dev-1": "dev-pw"}
    broker = Mosquitto(tmp_path / "mosquitto", credentials=creds)
    src = _source(
        broker.port,
        "coldchain-ingest-1",
        group="coldchain-ingest",
        username="coldchain-ingest-1",
        password="ingest-pw",
    )
    sink: _Sink = src._deliver  # type: ignore[assignment]
    device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="dev-1")
    device.username_pw_set("dev-1", "dev-pw")
    try:
        broker.start()
        src.start()
        assert src.wait_connected(10)
        assert wait_for(lambda: _returned(src) >= 3, 10)
        assert src.health.ok, src.health.problems()
        device.connect("127.0.0.1", broker.port)
        device.loop_start()
        info = device.publish(device_topic("dev-1"), b"{}", qos=1)
        info.wait_for_publish(10)
        assert wait_for(lambda: device_topic("dev-1") in sink.topics(), 10)
    finally:
        device.loop_stop()
        src.stop()
        broker.cleanup()


def test_an_acl_without_the_probe_lines_is_red_while_idle(tmp_path: Path) -> None:
    """An operator's ACL without the probe lines: mosquitto 2.0 accepts the subscription and
    silently drops the probe, so an idle process cannot vouch for its subscriptions and says
    so, instead of looking healthy."""
    production = (MOSQUITTO_CONFIG_DIR / "acl").read_text().splitlines()
    acl = "\n".join(ln for ln in production if "coldchain/v1/ingest" not in ln) + "\n"
    broker = Mosquitto(tmp_path / "mosquitto", credentials={"coldchain-ingest-1": "pw"}, acl=acl)
    src = _source(
        broker.port,
        "coldchain-ingest-1",
        group="coldchain-ingest",
        username="coldchain-ingest-1",
        password="pw",
    )
    try:
        broker.start()
        src.start()
        assert src.wait_connected(10)
        assert wait_for(lambda: MQTT_NOT_RECEIVING in src.health.problems(), 10)
        assert "not even this process's own probe" in src.health.problems()[MQTT_NOT_RECEIVING]
        assert _returned(src) == 0
    finally:
        src.stop()
        broker.cleanup()
