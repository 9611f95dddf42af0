"""The telemetry spine end to end: load generator -> mosquitto -> ingest -> influxd.

Every accepted reading must be in InfluxDB exactly once; duplicates, hostile payloads, a killed
ingester and an InfluxDB outage must change nothing about that.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from coldchain.contract import device_topic
from deploy.launcher import Services
from ingest.service import IngestService
from simulators.loadgen import LoadMessage, LoadPublisher, SeededLoad, make_fleet
from tests.harness import (
    expected_readings,
    settings_env,
    spine_settings,
    stored_counts,
    stored_points,
    wait_for,
)

pytestmark = pytest.mark.e2e


def _now_ms() -> int:
    return int(time.time() * 1000)


def test_seeded_fleet_lands_exactly_once_despite_duplicates(
    services: Services, unique_name: str, tmp_path: Path
) -> None:
    fleet = make_fleet(6)
    settings = spine_settings(services, unique_name, tmp_path)
    service = IngestService(settings, fleet)
    service.start()
    pub = LoadPublisher("127.0.0.1", services.mosquitto.port, f"pub-{unique_name}")
    try:
        load = SeededLoad(fleet, seed=7, interval_ms=5_000)
        messages = list(load.messages(60, _now_ms() - 3_600_000, batch_every=7, batch_size=12))
        for m in messages:
            pub.publish(m.topic, m.payload)
        # Redelivery as a device or the broker would do it: every 5th message again.
        for m in messages[::5]:
            pub.publish(m.topic, m.payload)
        assert pub.flush(30)
        assert wait_for(lambda: service.metrics.received_messages >= pub.sent, 30)
        assert service.wait_drained(30)
    finally:
        pub.close()
        service.stop()

    expected = expected_readings(messages)
    counts = stored_counts(services, settings.influx.database)
    assert counts == {asset: len(r) for asset, r in expected.items()}
    for asset in ("load-truck-0000", "load-truck-0005"):
        assert stored_points(services, settings.influx.database, asset) == expected[asset]
    stats = service.stats()
    assert stats["dead_letters_total"] == 0
    assert stats["received_messages"] == pub.sent
    assert stats["spool_depth_messages"] == 0


def _iso(epoch_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_s))


def _hostile(device: str, ts_iso: str) -> list[tuple[str, bytes, str]]:
    """(topic, payload, expected reason) for payloads that must be dead-lettered."""
    good = {"v": 1, "device_id": device, "ts": ts_iso, "seq": 1, "temps_c": {"c1-air": -18.5}}

    def with_(**kw: object) -> bytes:
        return json.dumps({**good, **kw}).encode()

    topic = device_topic(device)
    return [
        (topic, b"{not json", "malformed_json"),
        (topic, with_(temps_c={"c1-air": "cold"}), "wrong_type"),
        (topic, with_(seq="1"), "wrong_type"),
        (topic, with_(note="x" * 100_000), "unknown_field"),
        (topic, json.dumps(good).replace("-18.5", "NaN").encode(), "not_finite"),
        (topic, with_(temps_c={"c1-air": 400.0}), "out_of_range"),
        (topic, with_(position={"lat": 123.0, "lon": 10.0}), "out_of_range"),
        (topic, with_(ts="2099-01-01T00:00:00Z"), "future_timestamp"),
        (topic, with_(temps_c={"nope": 1.0}), "unknown_sensor"),
        (topic, with_(device_id="load-dev-0001"), "device_mismatch"),
        (
            device_topic("ghost-7"),
            with_(device_id="ghost-7"),
            "unknown_device",
        ),
        (topic, b'{"v":1,"device_id":"' + b"\xff\xfe" * 10 + b'"}', "invalid_utf8"),
        (topic, b"[" * 10 + b"1" + b"]" * 10, "not_an_object"),
        (topic, b"\xef\xbb\xbf" + with_(), "bad_encoding"),
        # Over ingest's 4 MiB limit, under the broker's max_packet_size (4 MiB + 64 KiB).
        (topic, b"{" + b" " * (4 * 1024 * 1024 + 1000) + b"}", "payload_too_large"),
    ]


def test_hostile_payloads_are_dead_lettered_while_good_ones_land(
    services: Services, unique_name: str, tmp_path: Path
) -> None:
    fleet = make_fleet(2)
    settings = spine_settings(services, unique_name, tmp_path)
    service = IngestService(settings, fleet)
    service.start()
    pub = LoadPublisher("127.0.0.1", services.mosquitto.port, f"pub-{unique_name}")
    device = "load-dev-0000"
    ts_iso = _iso(time.time())
    hostile = _hostile(device, ts_iso)
    good = list(SeededLoad(fleet, seed=3).messages(len(hostile), _now_ms() - 600_000))
    # A backlog batch with one bad sample among good ones: only that sample is dead-lettered.
    batch = {
        "v": 1,
        "device_id": device,
        "samples": [
            {"ts": _iso(time.time() - 60 * i), "seq": 900 + i, "temps_c": {"c2-air": 3.0 + i}}
            if i != 2
            else {"ts": "2099-01-01T00:00:00Z", "seq": 902, "temps_c": {"c2-air": 9.9}}
            for i in range(5)
        ],
    }
    try:
        for i, (topic, payload, _) in enumerate(hostile):
            pub.publish(good[2 * i].topic, good[2 * i].payload)
            pub.publish(topic, payload)
            pub.publish(good[2 * i + 1].topic, good[2 * i + 1].payload)
        pub.publish(device_topic(device), json.dumps(batch).encode())
        assert pub.flush(60)
        assert wait_for(lambda: service.metrics.received_messages >= pub.sent, 60)
        assert service.wait_drained(30)
        letters = service.dead_letters()
    finally:
        pub.close()
        service.stop()

    reasons = [dl["reason"] for dl in letters]
    assert sorted(reasons) == sorted([h[2] for h in hostile] + ["future_timestamp"])
    by_reason = {dl["reason"]: dl for dl in letters}
    assert by_reason["unknown_device"]["device_id"] == "ghost-7"
    assert by_reason["out_of_range"]["field"] in ("temps_c.c1-air", "position.lat")
    assert by_reason["payload_too_large"]["payload_size"] > 4 * 1024 * 1024
    assert any(dl["field"] == "samples[2].ts" for dl in letters)

    expected = expected_readings(good)
    counts = stored_counts(services, settings.influx.database)
    assert counts["load-truck-0001"] == len(expected["load-truck-0001"])
    # Truck 0 also got the four good samples of the batch (c2-air), and the good probe of the
    # message whose only fault was its position (a bad lat costs the position, not c1-air).
    assert counts["load-truck-0000"] == len(expected["load-truck-0000"]) + 4 + 1
    assert service.stats()["received_messages"] == pub.sent


class _Paced:
    """Publishes messages at a steady rate in a background thread."""

    def __init__(self, pub: LoadPublisher, messages: list[LoadMessage], rate_per_s: float) -> None:
        self.pub, self.messages, self.rate = pub, messages, rate_per_s
        self.published = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        t0 = time.monotonic()
        for i, m in enumerate(self.messages):
            delay = t0 + i / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.pub.publish(m.topic, m.payload)
            self.published = i + 1

    def start(self) -> _Paced:
        self._thread.start()
        return self

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)


def _start_ingest_process(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    started = log.read_text().count("coldchain ingest:") if log.exists() else 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "ingest"],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
        cwd=Path(__file__).resolve().parents[2],
    )
    assert wait_for(lambda: log.read_text().count("coldchain ingest:") > started, 20), (
        log.read_text()
    )
    return proc


def test_ingester_killed_mid_stream_loses_nothing(
    services: Services, unique_name: str, tmp_path: Path
) -> None:
    fleet = make_fleet(10)
    settings = spine_settings(services, unique_name, tmp_path)
    settings.fleet_path.write_text(fleet.to_yaml())
    env = settings_env(settings)
    log = tmp_path / "ingest.log"
    messages = list(SeededLoad(fleet, seed=11).messages(400, _now_ms() - 10_000_000, batch_every=9))
    pub = LoadPublisher("127.0.0.1", services.mosquitto.port, f"pub-{unique_name}")
    proc = _start_ingest_process(env, log)
    try:
        paced = _Paced(pub, messages, rate_per_s=2_000).start()
        assert wait_for(lambda: paced.published > len(messages) // 3, 30)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed_at = paced.published
        time.sleep(0.5)
        proc = _start_ingest_process(env, log)
        paced.join(60)
        assert pub.flush(60)
        expected = expected_readings(messages)
        want = {asset: len(r) for asset, r in expected.items()}
        wait_for(lambda: stored_counts(services, settings.influx.database) == want, 60, 0.5)
    finally:
        pub.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert 0 < killed_at < len(messages), "the kill must land mid-stream"
    assert stored_counts(services, settings.influx.database) == want
    assert (
        stored_points(services, settings.influx.database, "load-truck-0003")
        == expected["load-truck-0003"]
    )


def test_influx_outage_grows_the_spool_then_drains_losing_nothing(
    fresh_services: Services, unique_name: str, tmp_path: Path
) -> None:
    services = fresh_services
    fleet = make_fleet(8)
    settings = spine_settings(services, unique_name, tmp_path)
    service = IngestService(settings, fleet)
    service.start()
    messages = list(SeededLoad(fleet, seed=5).messages(300, _now_ms() - 10_000_000, batch_every=6))
    pub = LoadPublisher("127.0.0.1", services.mosquitto.port, f"pub-{unique_name}")
    try:
        paced = _Paced(pub, messages, rate_per_s=1_500).start()
        assert wait_for(lambda: service.metrics.written_messages > 100, 20)
        services.influxd.stop()
        assert wait_for(lambda: service.metrics.write_errors > 0, 20)
        depth_before = service.metrics.spool_depth_messages
        assert wait_for(lambda: service.metrics.spool_depth_messages > depth_before + 300, 20)
        peak_depth = service.metrics.spool_depth_messages
        services.influxd.start()
        paced.join(60)
        assert pub.flush(60)
        assert wait_for(lambda: service.metrics.received_messages >= pub.sent, 30)
        assert service.wait_drained(60)
    finally:
        pub.close()
        service.stop()
    expected = expected_readings(messages)
    assert stored_counts(services, settings.influx.database) == {
        asset: len(r) for asset, r in expected.items()
    }
    assert peak_depth > 300
    assert service.stats()["spool_depth_messages"] == 0
