"""The broker keeps devices apart: mosquitto from deploy/ (launcher) with the password file and
ACL written by ``coldchain broker users`` from the demo fleet, and a TLS listener with a CA
made by deploy/mosquitto/make-certs.sh (openssl) for this test session.

"Never arrives" is checked with a later message on the same path that does arrive: mosquitto
routes messages of one connection in order, so once the later one is in, the earlier one would
have been too.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from cli.main import main as coldchain
from coldchain.contract.telemetry import MAX_BATCH_SAMPLES
from coldchain.fleet import load_fleet
from deploy.launcher import DEPLOY_DIR, MOSQUITTO_CONFIG_DIR, Mosquitto, Services, TlsFiles
from ingest.service import IngestService
from simulators import Simulation, library_scenario
from tests.harness import spine_settings, stored_counts, wait_for

pytestmark = pytest.mark.integration

FLEET = Path(__file__).resolve().parents[2] / "fleet" / "demo.yaml"
INGEST = "coldchain-ingest-1"
OPERATOR = "coldchain-operator"
DEV_A = "truck-jy-01-tcu"
DEV_B = "truck-gs-01-tcu"


def _setting(name: str) -> int:
    for line in (MOSQUITTO_CONFIG_DIR / "coldchain.conf").read_text().splitlines():
        if line.startswith(name + " "):
            return int(line.split()[1])
    raise AssertionError(f"{name} not in coldchain.conf")


def telemetry(device: str) -> str:
    return f"coldchain/v1/devices/{device}/telemetry"


@dataclass
class Broker:
    mosquitto: Mosquitto
    secrets: dict[str, str]
    tls: TlsFiles


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    root = tmp_path_factory.mktemp("broker")
    conf = root / "config"
    conf.mkdir()
    args = ["--fleet", str(FLEET), "--passwd", str(conf / "passwd"), "--acl", str(conf / "acl")]
    assert coldchain(["broker", "users", *args, "--secrets", str(conf / "secrets.yaml")]) == 0
    certs = root / "certs"
    subprocess.run(
        ["bash", str(DEPLOY_DIR / "mosquitto" / "make-certs.sh"), str(certs), "127.0.0.1"],
        check=True,
        capture_output=True,
    )
    tls = TlsFiles(ca=certs / "ca.crt", cert=certs / "server.crt", key=certs / "server.key")
    m = Mosquitto(root / "mosquitto", password_file=conf / "passwd", acl_file=conf / "acl", tls=tls)
    m.start()
    try:
        yield Broker(m, yaml.safe_load((conf / "secrets.yaml").read_text()), tls)
    finally:
        m.cleanup()


class Client:
    """A paho client that records what happens to it."""

    def __init__(
        self,
        broker: Broker,
        user: str | None,
        *,
        client_id: str = "",
        clean: bool = True,
        password: str | None = None,
        tls: bool = False,
        port: int | None = None,
    ) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self.connacks: list[mqtt.ReasonCode] = []
        self.disconnects: list[mqtt.ReasonCode] = []
        self.subacks: list[list[mqtt.ReasonCode]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id or f"x-{user}", clean_session=clean
        )
        if user is not None:
            self.client.username_pw_set(user, password or broker.secrets[user])
        if tls:
            self.client.tls_set(ca_certs=str(broker.tls.ca))
        self.client.reconnect_delay_set(30, 60)  # no reconnect during a test
        self.client.on_connect = lambda _c, _u, _f, rc, _p: self.connacks.append(rc)
        self.client.on_disconnect = lambda _c, _u, _f, rc, _p: self.disconnects.append(rc)
        self.client.on_subscribe = lambda _c, _u, _m, rcs, _p: self.subacks.append(list(rcs))
        self.client.on_message = self._on_message
        default = broker.mosquitto.tls_port if tls else broker.mosquitto.port
        self.client.connect("127.0.0.1", port or default)
        self.client.loop_start()

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(msg)

    def payloads(self) -> list[bytes]:
        with self._lock:
            return [bytes(m.payload) for m in self.messages]

    def connected(self, timeout_s: float = 10) -> bool:
        return wait_for(lambda: bool(self.connacks), timeout_s) and not self.connacks[-1].is_failure

    def subscribe(self, *topics: str) -> list[mqtt.ReasonCode]:
        before = len(self.subacks)
        self.client.subscribe([(t, 1) for t in topics])
        assert wait_for(lambda: len(self.subacks) > before, 10)
        return self.subacks[-1]

    def publish(self, topic: str, payload: bytes, timeout_s: float = 30) -> bool:
        """QoS 1; True once the broker acknowledged it (PUBACK)."""
        info = self.client.publish(topic, payload, qos=1)
        deadline = time.monotonic() + timeout_s
        while not info.is_published() and time.monotonic() < deadline:
            if self.disconnects:
                return False
            time.sleep(0.01)
        return info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _offline_ingest_session(broker: Broker) -> None:
    ingest = Client(broker, INGEST, client_id=INGEST, clean=False)
    assert ingest.connected()
    ingest.subscribe(telemetry("+"))
    ingest.close()


def test_a_device_cannot_take_the_ingest_client_id_and_wipe_its_backlog(broker: Broker) -> None:
    """The issue's measurement: a device connecting with the ingest's client id and a clean
    session wiped 100 of 100 queued messages. The broker now takes the username as client id."""
    _offline_ingest_session(broker)
    device = Client(broker, DEV_A)
    assert device.connected()
    payloads = [f"m{i}".encode() for i in range(100)]
    assert all(device.publish(telemetry(DEV_A), p) for p in payloads)
    device.close()
    intruder = Client(broker, DEV_B, client_id=INGEST, clean=True)
    assert intruder.connected()
    intruder.close()
    ingest = Client(broker, INGEST, client_id=INGEST, clean=False)
    try:
        assert ingest.connected()
        assert wait_for(lambda: len(ingest.payloads()) >= 100, 30)
        assert ingest.payloads() == payloads
        # Nor can it disconnect the live ingest: the intruder gets its own session.
        intruder = Client(broker, DEV_B, client_id=INGEST, clean=True)
        assert intruder.connected()
        device = Client(broker, DEV_A)
        assert device.connected() and device.publish(telemetry(DEV_A), b"after")
        assert wait_for(lambda: b"after" in ingest.payloads(), 30)
        assert ingest.disconnects == [] and len(ingest.connacks) == 1
        intruder.close()
        device.close()
    finally:
        ingest.close()


def test_a_device_cannot_take_another_devices_client_id(broker: Broker) -> None:
    victim = Client(broker, DEV_A, client_id=DEV_A)
    intruder = Client(broker, DEV_B, client_id=DEV_A)
    ingest = Client(broker, INGEST, client_id=INGEST)
    try:
        assert victim.connected() and intruder.connected() and ingest.connected()
        ingest.subscribe(telemetry(DEV_A))
        assert victim.publish(telemetry(DEV_A), b"still-here")
        assert wait_for(lambda: b"still-here" in ingest.payloads(), 30)
        assert victim.disconnects == [] and len(victim.connacks) == 1
    finally:
        for c in (victim, intruder, ingest):
            c.close()


def test_a_device_cannot_publish_on_another_devices_topic(broker: Broker) -> None:
    ingest = Client(broker, INGEST, client_id=INGEST)
    device = Client(broker, DEV_B)
    try:
        assert ingest.connected() and device.connected()
        ingest.subscribe("coldchain/v1/devices/#")
        for topic in (telemetry(DEV_A), f"coldchain/v1/devices/{DEV_A}/events"):
            device.publish(topic, b"forged")
        device.publish("coldchain/v1/alerts/truck-jy-01", b"forged")
        assert device.publish(telemetry(DEV_B), b"own")
        assert wait_for(lambda: b"own" in ingest.payloads(), 30)
        assert ingest.payloads() == [b"own"]
    finally:
        ingest.close()
        device.close()


def test_a_device_cannot_read_other_devices_telemetry_or_alerts(broker: Broker) -> None:
    spy = Client(broker, DEV_B)
    operator = Client(broker, OPERATOR)
    ingest = Client(broker, INGEST, client_id=INGEST)
    device = Client(broker, DEV_A)
    try:
        assert all(c.connected() for c in (spy, operator, ingest, device))
        spy.subscribe("coldchain/v1/devices/#", "coldchain/v1/alerts/#", "#")
        operator.subscribe("coldchain/v1/alerts/#")
        ingest.subscribe(telemetry("+"))
        assert device.publish(telemetry(DEV_A), b"reading")
        assert ingest.publish("coldchain/v1/alerts/truck-jy-01", b"alert")
        assert wait_for(lambda: b"reading" in ingest.payloads(), 30)
        assert wait_for(lambda: b"alert" in operator.payloads(), 30)
        # The broker wrote both to every allowed reader in the same pass; give the spy's
        # socket a moment more anyway: a late delivery would be a failure, not a flake.
        time.sleep(1.0)
        assert spy.payloads() == []
    finally:
        for c in (spy, operator, ingest, device):
            c.close()


def test_an_oversize_packet_is_refused_at_the_door_and_stays_on_the_device(
    broker: Broker,
) -> None:
    """Over max_packet_size: the sender is disconnected before the broker reads the payload,
    without a PUBACK (so a device keeps the message), and ingest never sees it."""
    limit = _setting("max_packet_size")
    ingest = Client(broker, INGEST, client_id=INGEST)
    device = Client(broker, DEV_A)
    pid = broker.mosquitto.proc.pid  # type: ignore[union-attr]
    try:
        assert ingest.connected() and device.connected()
        ingest.subscribe(telemetry("+"))
        rss_before = _rss_bytes(pid)
        # No PUBACK: the device still holds the message (its own limit is its to fix).
        assert not device.publish(telemetry(DEV_A), b"x" * (8 * limit))
        assert wait_for(lambda: bool(device.disconnects), 30)
        # The broker never allocated the payload.
        assert _rss_bytes(pid) - rss_before < limit
        again = Client(broker, DEV_A)
        assert again.connected() and again.publish(telemetry(DEV_A), b"small")
        assert wait_for(lambda: b"small" in ingest.payloads(), 30)
        assert ingest.payloads() == [b"small"]
        again.close()
    finally:
        ingest.close()
        device.client.loop_stop()


def test_the_largest_legitimate_backlog_message_gets_through(broker: Broker) -> None:
    """A 5,000-sample backlog batch of the demo's richest device (the cold-store gateway)
    fits under max_packet_size and arrives whole."""
    device_id, payload = largest_backlog_payload()
    assert len(payload) <= _setting("max_packet_size") - 1024
    ingest = Client(broker, INGEST, client_id=INGEST)
    device = Client(broker, device_id)
    try:
        assert ingest.connected() and device.connected()
        ingest.subscribe(telemetry("+"))
        assert device.publish(telemetry(device_id), payload, timeout_s=60)
        assert wait_for(lambda: bool(ingest.payloads()), 60)
        assert ingest.payloads() == [payload]
    finally:
        ingest.close()
        device.close()


def test_wrong_password_anonymous_and_unknown_users_are_refused(broker: Broker) -> None:
    attempts = [
        Client(broker, DEV_A, password="wrong"),
        Client(broker, None, client_id="anon"),
        Client(broker, "ghost-device", password="x"),
        Client(broker, DEV_A, password="wrong", tls=True),
    ]
    try:
        for c in attempts:
            assert wait_for(lambda c=c: bool(c.connacks) or bool(c.disconnects), 10)
            assert not c.connected(0.1)
    finally:
        for c in attempts:
            c.client.loop_stop()


def test_tls_with_the_generated_ca_works_and_plain_tcp_on_the_tls_port_fails(
    broker: Broker,
) -> None:
    ingest = Client(broker, INGEST, client_id=INGEST)
    device = Client(broker, DEV_A, tls=True)
    try:
        assert ingest.connected() and device.connected()
        ingest.subscribe(telemetry("+"))
        assert device.publish(telemetry(DEV_A), b"over-tls")
        assert wait_for(lambda: b"over-tls" in ingest.payloads(), 30)
    finally:
        ingest.close()
        device.close()
    # Plain MQTT on the TLS port: the broker reads a CONNECT as a bad TLS handshake.
    plain = Client(broker, DEV_A, port=broker.mosquitto.tls_port)
    try:
        assert wait_for(lambda: bool(plain.disconnects), 10)
        assert not plain.connacks
    finally:
        plain.client.loop_stop()
    # A client that does not trust our CA (the system's store only) refuses the server.
    untrusting = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="untrusting")
    untrusting.tls_set()
    with pytest.raises(ssl.SSLCertVerificationError):
        untrusting.connect("127.0.0.1", broker.mosquitto.tls_port)  # type: ignore[arg-type]


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def largest_backlog_payload() -> tuple[str, bytes]:
    """A MAX_BATCH_SAMPLES backlog batch made of the demo scenario's largest single sample."""
    best: tuple[int, dict[str, object]] | None = None
    start = datetime(2026, 11, 1, tzinfo=UTC)
    for i, m in enumerate(Simulation(library_scenario("demo"), start=start, seed=1).messages()):
        if i > 5000:
            break
        single = m.kind == "telemetry" and b'"samples"' not in m.payload
        if single and (best is None or len(m.payload) > best[0]):
            best = (len(m.payload), json.loads(m.payload))
    assert best is not None
    sample = {k: v for k, v in best[1].items() if k not in ("v", "device_id")}
    seq = int(sample["seq"])  # type: ignore[call-overload]
    samples = [sample | {"seq": seq + i} for i in range(MAX_BATCH_SAMPLES)]
    device_id = str(best[1]["device_id"])
    body = {"v": 1, "device_id": device_id, "samples": samples}
    return device_id, json.dumps(body, separators=(",", ":")).encode()


def test_the_real_ingest_stores_a_devices_own_readings_and_never_a_forged_one(
    broker: Broker, services: Services, unique_name: str, tmp_path: Path
) -> None:
    """IngestService with its broker user (client id = username) on production's broker:
    the device's own reading over TLS is stored; the same device's reading forged onto another
    device's topic (payload naming that device, so ingest would accept it) never arrives:
    not stored, not dead-lettered."""
    fleet = load_fleet(FLEET)
    base = spine_settings(services, unique_name, tmp_path)
    shutil.copyfile(FLEET, base.fleet_path)
    mqtt_settings = base.mqtt.model_copy(
        update={
            "port": broker.mosquitto.port,
            "username": INGEST,
            "password": broker.secrets[INGEST],
            "client_id": INGEST,
            "share_group": "",
        }
    )
    settings = base.model_copy(update={"mqtt": mqtt_settings})
    service = IngestService(settings, fleet)
    service.start()
    device = Client(broker, DEV_B, tls=True)
    now = datetime.now(UTC)

    def sample(device_id: str, seq: int) -> bytes:
        body = {"v": 1, "device_id": device_id, "ts": now.isoformat(), "seq": seq}
        body["temps_c"] = {"front-air": -18.0}
        return json.dumps(body).encode()

    try:
        assert device.connected()
        health = service.metrics.health
        assert wait_for(lambda: health.ok, 30), health.problems()
        device.publish(telemetry(DEV_A), sample(DEV_A, 1))  # forged: DEV_B writing as DEV_A
        assert device.publish(telemetry(DEV_B), sample(DEV_B, 2))
        assert wait_for(lambda: service.metrics.received_messages >= 1, 30)
        assert service.wait_drained(30)
        assert service.metrics.received_messages == 1
        assert service.dead_letters() == []
        counts = stored_counts(services, settings.influx.database)
        assert counts == {"truck-gs-01": 1}
    finally:
        device.close()
        service.stop()
