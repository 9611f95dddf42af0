"""Ingest's ``/healthz`` follows the broker: red while it is away, green and receiving again
after it comes back (persistence on, as in production), nothing acknowledged lost."""

from __future__ import annotations

import http.client
import time
from pathlib import Path

import pytest

from deploy.launcher import Services, free_port
from ingest.service import IngestService
from simulators.loadgen import LoadPublisher, SeededLoad, make_fleet
from tests.harness import expected_readings, spine_settings, stored_counts, wait_for

pytestmark = pytest.mark.e2e


def _healthz(port: int) -> tuple[int, str]:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/healthz")
        resp = conn.getresponse()
        result = resp.status, resp.read().decode()
        conn.close()
        return result
    except OSError as exc:
        return 0, str(exc)


def test_healthz_is_red_while_the_broker_is_away_and_ingest_receives_after_it_returns(
    fresh_services: Services, unique_name: str, tmp_path: Path
) -> None:
    services = fresh_services
    fleet = make_fleet(4)
    base = spine_settings(services, unique_name, tmp_path)
    port = free_port()
    settings = base.model_copy(
        update={
            "metrics_port": port,
            "mqtt": base.mqtt.model_copy(
                update={"probe_interval_s": 0.2, "disconnected_grace_s": 1.0}
            ),
        }
    )
    service = IngestService(settings, fleet, rules=False)
    service.start()
    now_ms = int(time.time() * 1000)
    messages = list(SeededLoad(fleet, seed=3).messages(100, now_ms - 4_000_000))
    pub = LoadPublisher("127.0.0.1", services.mosquitto.port, f"pub-{unique_name}")
    try:
        assert wait_for(lambda: _healthz(port) == (200, "ok\n"), 20)
        for m in messages[:200]:
            pub.publish(m.topic, m.payload)
        assert pub.flush(30)
        pub.close()
        # A crash after the last autosave: the store holds the session, not its shared
        # subscription; ingest must subscribe again on its own.
        services.mosquitto.save_store()
        services.mosquitto.kill()
        assert wait_for(lambda: "mqtt_disconnected" in _healthz(port)[1], 20), _healthz(port)
        assert _healthz(port)[0] == 503
        services.mosquitto.start()
        assert wait_for(lambda: _healthz(port) == (200, "ok\n"), 30), _healthz(port)
        assert service.stats()["mqtt_session_present"] == 1
        pub = LoadPublisher("127.0.0.1", services.mosquitto.port, f"pub2-{unique_name}")
        for m in messages[200:]:
            pub.publish(m.topic, m.payload)
        assert pub.flush(30)
        assert wait_for(lambda: service.metrics.received_messages >= 400, 30)
        assert service.wait_drained(60)
    finally:
        pub.close()
        service.stop()
    expected = expected_readings(messages)
    assert stored_counts(services, settings.influx.database) == {
        asset: len(r) for asset, r in expected.items()
    }
