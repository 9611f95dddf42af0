"""The launcher starts real services on free loopback ports with the project's configs."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from deploy.launcher import (
    MOSQUITTO_CONFIG_DIR,
    Influxd,
    Mosquitto,
    ServiceError,
    Services,
    free_port,
)
from tests.harness import wait_for

pytestmark = pytest.mark.integration


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _settings(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def test_services_start_answer_and_stop_cleanly(tmp_path: Path) -> None:
    with Services(tmp_path) as s:
        assert _listening(s.mosquitto.port)
        assert s.influxd.query("SHOW DATABASES")["results"]
        ports = (s.mosquitto.port, s.influxd.port)
    assert not any(_listening(p) for p in ports)


def test_the_broker_runs_production_configuration(tmp_path: Path) -> None:
    """Every production setting is in the running config except the listed overrides."""
    m = Mosquitto(tmp_path / "m")
    m.start()
    try:
        running = _settings(m.config_path.read_text())
        overridden = set(m.config_overrides())
        production = _settings((MOSQUITTO_CONFIG_DIR / "mosquitto.conf").read_text())
        kept = [ln for ln in production if ln.split()[0] not in overridden]
        assert [ln for ln in running if ln in kept] == kept
        # Durability settings survive the override, and only what the launcher must change.
        autosave = [ln for ln in production if ln.startswith("autosave")]
        assert autosave and all(ln in running for ln in autosave)
        assert "persistence true" in running
        assert overridden == {
            "listener",
            "persistence_location",
            "log_dest",
            "allow_anonymous",
            "password_file",
            "acl_file",
            "use_username_as_clientid",
            "include_dir",
            "user",
            # The TLS listener and its files, left out unless tls= is given.
            "tls_listener",
            "cafile",
            "certfile",
            "keyfile",
            "tls_version",
        }
        assert f"listener {m.port} 127.0.0.1" in running
        assert [ln for ln in running if ln.startswith("listener")] == [
            f"listener {m.port} 127.0.0.1"
        ]
        assert f"persistence_location {m.data_dir}/" in running
        # coldchain.conf is included unchanged: the queue limits and session expiry.
        included = (m.data_dir / "conf.d" / "coldchain.conf").read_text()
        assert included == (MOSQUITTO_CONFIG_DIR / "coldchain.conf").read_text()
        assert "max_queued_messages 2000000" in _settings(included)
    finally:
        m.cleanup()


class _Queued:
    """A persistent (clean_session=False) non-shared subscriber that records payloads."""

    def __init__(self, port: int, client_id: str) -> None:
        self.got: list[bytes] = []
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False
        )
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_a: self.subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client: object, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.got.append(bytes(msg.payload))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _version(path: Path) -> tuple[int, int]:
    st = path.stat()
    return (st.st_ino, st.st_mtime_ns)


def _publish(port: int, topic: str, payloads: list[bytes]) -> None:
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="launcher-test-pub")
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    try:
        infos = [pub.publish(topic, p, qos=1) for p in payloads]
        for info in infos:
            info.wait_for_publish(10)
            assert info.is_published()
    finally:
        pub.disconnect()
        pub.loop_stop()


@pytest.mark.parametrize("how", ["graceful", "sigkill_after_save"])
def test_the_broker_writes_its_store_and_restores_it(tmp_path: Path, how: str) -> None:
    """Queued QoS 1 messages of an absent persistent session survive a restart because the
    store is really written (the issue: a root-owned directory made persistence silently off)."""
    m = Mosquitto(tmp_path / "m")
    m.start()
    try:
        assert m.store_path.is_file()  # start() checked that the broker can write it
        sub = _Queued(m.port, "queued-sub")
        sub.client.subscribe("launcher/test", qos=1)
        assert sub.subscribed.wait(10)
        sub.close()
        payloads = [f"m{i}".encode() for i in range(20)]
        _publish(m.port, "launcher/test", payloads)
        port, before = m.port, _version(m.store_path)
        if how == "graceful":
            m.restart()
        else:
            m.save_store()
            m.kill()
            assert not m.running
            m.start()
        assert m.port == port and _version(m.store_path) != before
        again = _Queued(m.port, "queued-sub")
        try:
            assert wait_for(lambda: len(again.got) >= 20, 15)
            assert sorted(again.got) == sorted(payloads)
        finally:
            again.close()
    finally:
        m.cleanup()


def test_a_store_the_broker_cannot_write_fails_loudly(tmp_path: Path) -> None:
    """The issue's case: the broker's account cannot write the data directory. The launcher
    must refuse to run a broker without persistence, naming the directory."""
    data = tmp_path / "unwritable"
    data.mkdir()
    if os.geteuid() == 0:
        # As root mosquitto drops to the account in `user`: the directory is root's, mode 0755,
        # under pytest's 0700 directories, so `mosquitto` can neither enter nor write it.
        m = Mosquitto(data, user="mosquitto")
    else:
        # Another account cannot be used: leave the launcher its files and take away the
        # right to create the store.
        (data / "mosquitto.conf").touch()
        (data / "mosquitto.log").touch()
        (data / "conf.d").mkdir()
        data.chmod(0o555)
        m = Mosquitto(data)
    try:
        with pytest.raises(ServiceError) as info:
            m.start(timeout_s=10)
        assert f"cannot write its store in {data}" in str(info.value)
        assert "Permission denied" in str(info.value)
        assert not m.running and not _listening(m.port)
    finally:
        data.chmod(0o755)
        m.cleanup()


def test_anonymous_access_is_refused_when_credentials_are_asked_for(tmp_path: Path) -> None:
    m = Mosquitto(tmp_path / "m", credentials={"coldchain-ingest": "s3cret"})
    m.start()
    try:
        running = _settings(m.config_path.read_text())
        assert "allow_anonymous false" in running
        assert f"acl_file {m.data_dir / 'acl'}" in running
        assert (m.data_dir / "acl").read_text() == (MOSQUITTO_CONFIG_DIR / "acl").read_text()
        refused: list[object] = []
        anon = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="anon")
        anon.on_connect = lambda _c, _u, _f, reason, _p: refused.append(reason)
        anon.connect("127.0.0.1", m.port)
        anon.loop_start()
        try:
            assert wait_for(lambda: bool(refused), 10)
            assert getattr(refused[0], "is_failure", False)
        finally:
            anon.loop_stop()
    finally:
        m.cleanup()


def test_influxd_keeps_data_across_restart(tmp_path: Path) -> None:
    influxd = Influxd(tmp_path / "influxd")
    influxd.start()
    try:
        influxd.query('CREATE DATABASE "keep"')
        influxd.stop()
        assert not influxd.running
        influxd.start()
        names = influxd.query("SHOW DATABASES")["results"][0]["series"][0]["values"]  # type: ignore[index]
        assert ["keep"] in names
    finally:
        influxd.cleanup()


def test_a_service_that_cannot_start_says_why(tmp_path: Path) -> None:
    first = Mosquitto(tmp_path / "a")
    first.start()
    try:
        clash = Mosquitto(tmp_path / "b", port=first.port)
        with pytest.raises(ServiceError) as info:
            clash.start(timeout_s=5)
        assert f"port {first.port} on 127.0.0.1 is already in use" in str(info.value)
    finally:
        first.cleanup()


def test_free_ports_lie_below_the_ephemeral_range() -> None:
    """Ports the kernel gives outgoing connections could be taken while a service restarts."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = {free_port() for _ in range(20)}
    assert all(10_000 <= p < low for p in ports)
