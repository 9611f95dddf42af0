"""The launcher starts real services on free loopback ports with the project's configs."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from deploy.launcher import Influxd, Mosquitto, ServiceError, Services

pytestmark = pytest.mark.integration


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def test_services_start_answer_and_stop_cleanly(tmp_path: Path) -> None:
    with Services(tmp_path) as s:
        assert _listening(s.mosquitto.port)
        assert s.influxd.query("SHOW DATABASES")["results"]
        conf = (tmp_path / "mosquitto" / "mosquitto.conf").read_text()
        # The project's broker settings, not mosquitto's lossy defaults.
        assert "max_queued_messages 2000000" in conf
        assert f"listener {s.mosquitto.port} 127.0.0.1" in conf
        ports = (s.mosquitto.port, s.influxd.port)
    assert not any(_listening(p) for p in ports)


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
