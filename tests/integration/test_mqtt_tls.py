"""Ingest, rules workers and ``coldchain alerts deliver`` reach a broker over TLS
(``COLDCHAIN_MQTT__TLS_*``): a real mosquitto with production's TLS listener and a CA made by
deploy/mosquitto/make-certs.sh, as an operator runs them when the broker is on another machine.
"""

from __future__ import annotations

import queue
import subprocess
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from coldchain.exceptions import ConfigError
from coldchain.settings import MqttSettings
from deploy.launcher import DEPLOY_DIR, Mosquitto, TlsFiles
from ingest.channels import MqttPublisher
from ingest.consumer import Delivery, MqttSource
from ingest.mqtt_client import use_tls

pytestmark = pytest.mark.integration

TOPIC = "coldchain/v1/devices/dev-tls/telemetry"


def _make_certs(out: Path) -> TlsFiles:
    subprocess.run(
        ["bash", str(DEPLOY_DIR / "mosquitto" / "make-certs.sh"), str(out), "127.0.0.1"],
        check=True,
        capture_output=True,
    )
    return TlsFiles(ca=out / "ca.crt", cert=out / "server.crt", key=out / "server.key")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    root = tmp_path_factory.mktemp("tls-broker")
    m = Mosquitto(root / "mosquitto", tls=_make_certs(root / "certs"))
    m.start()
    try:
        yield m
    finally:
        m.cleanup()


def _settings(broker: Mosquitto, ca: Path, client_id: str) -> MqttSettings:
    assert broker.tls_port is not None
    return MqttSettings(port=broker.tls_port, client_id=client_id, share_group="", tls_ca_path=ca)


def _device(broker: Mosquitto) -> mqtt.Client:
    assert broker.tls is not None and broker.tls_port is not None
    device = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="dev-tls")
    device.tls_set(ca_certs=str(broker.tls.ca))
    device.connect("127.0.0.1", broker.tls_port)
    device.loop_start()
    return device


def test_ingest_receives_over_tls_with_the_brokers_ca(broker: Mosquitto) -> None:
    assert broker.tls is not None
    got: queue.Queue[Delivery] = queue.Queue()
    source = MqttSource(_settings(broker, broker.tls.ca, "ingest-tls"), got.put, ("telemetry",))
    source.start()
    device = _device(broker)
    try:
        assert source.wait_connected(30), "no TLS connection with the broker's own CA"
        device.publish(TOPIC, b"over-tls", qos=1).wait_for_publish(30)
        delivery = got.get(timeout=30)
        assert (delivery.topic, delivery.payload) == (TOPIC, b"over-tls")
        assert source.ack_many([delivery]) == 1
    finally:
        device.loop_stop()
        device.disconnect()
        source.stop()


def test_a_broker_certificate_from_another_ca_is_refused(broker: Mosquitto, tmp_path: Path) -> None:
    other = _make_certs(tmp_path / "other")  # a CA that never signed the broker's certificate
    source = MqttSource(_settings(broker, other.ca, "ingest-untrusting"), print, ("telemetry",))
    source.start()
    try:
        # Refused at the handshake, every retry: never connected, never subscribed.
        assert not source.wait_connected(5)
    finally:
        source.stop(timeout_s=1)


def test_alert_delivery_publishes_over_tls(broker: Mosquitto) -> None:
    assert broker.tls is not None
    received: queue.Queue[bytes] = queue.Queue()
    watcher = _device(broker)
    watcher.on_message = lambda _c, _u, msg: received.put(msg.payload)
    watcher.subscribe("coldchain/v1/alerts/#", qos=1)
    publisher = MqttPublisher(_settings(broker, broker.tls.ca, "x"), "coldchain-alerts-tls")
    try:
        assert publisher.connected.wait(30)
        publisher.publish("coldchain/v1/alerts/truck-1", b"alert").wait_for_publish(30)
        assert received.get(timeout=30) == b"alert"
    finally:
        publisher.close()
        watcher.loop_stop()
        watcher.disconnect()


def test_a_ca_file_that_is_not_pem_names_the_option(tmp_path: Path) -> None:
    bad = tmp_path / "ca.crt"
    bad.write_text("not a certificate\n")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="t")
    with pytest.raises(ConfigError, match=r"COLDCHAIN_MQTT__TLS_CA_PATH=.*not a CA"):
        use_tls(client, MqttSettings(tls_ca_path=bad))
