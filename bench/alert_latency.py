"""Alert latency: the reading that completes a rule's delay -> the MQTT alert, end to end.

Each trial uses a fresh truck whose chilled compartment has been out of range (6 degC against
0..4) for just under the range rule's delay: those readings go in first, as a backlog, and are
evaluated. Then the one reading that completes the delay is published, and the clock runs
until the ``opened`` alert for it arrives at an MQTT subscriber: broker -> ingest (decode,
validate, spool commit, ack) -> rules thread -> registry upsert -> alert publish -> broker ->
subscriber. The baseline is the broker round trip alone (publish -> subscriber) for the same
payload, measured in the same run.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

# bench/ingest.py would shadow the ingest package: the project root must come first.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coldchain.contract import device_topic
from coldchain.rules import load_presets
from coldchain.settings import InfluxSettings, MqttSettings, Settings, SpoolSettings
from deploy.launcher import Services
from ingest.service import IngestService
from registry import upgrade
from simulators.loadgen import LoadPublisher, make_fleet

__all__ = ["measure"]


def _iso(ms: int) -> str:
    secs, rest = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{rest:03d}Z"


def _sample(seq: int, ts_ms: int, temp_c: float) -> dict[str, Any]:
    return {"ts": _iso(ts_ms), "seq": seq, "temps_c": {"c2-air": temp_c, "c2-prod": temp_c}}


class _Watcher:
    """Records the arrival time of each message on a topic filter."""

    def __init__(self, port: int, topic: str) -> None:
        self.arrivals: dict[str, float] = {}
        self.payloads: list[dict[str, Any]] = []
        self._ready = threading.Event()
        self._c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"watch-{time.time()}")
        self._c.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self._c.on_subscribe = lambda *_: self._ready.set()
        self._c.on_message = self._on_message
        self._c.connect("127.0.0.1", port)
        self._c.loop_start()
        assert self._ready.wait(10)

    def _on_message(self, client: object, userdata: object, msg: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        body = json.loads(msg.payload)
        self.payloads.append(body)
        self.arrivals.setdefault(f"{msg.topic}|{body.get('rule', body.get('seq'))}", now)

    def close(self) -> None:
        self._c.disconnect()
        self._c.loop_stop()


def _q(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    qs = (
        statistics.quantiles(ordered, n=100, method="inclusive")
        if len(ordered) > 1
        else ordered * 99
    )
    return {
        "p50_ms": round(qs[49], 2),
        "p99_ms": round(qs[98], 2),
        "max_ms": round(ordered[-1], 2),
    }


def measure(trials: int = 30) -> dict[str, Any]:
    profile = load_presets()["chilled"]
    delay_min = round(next(r.delay_min for r in profile.rules if r.kind == "range"))
    fleet = make_fleet(trials + 1)
    with (
        tempfile.TemporaryDirectory(prefix="coldchain-alerts-") as tmp,
        Services(Path(tmp) / "services") as services,
    ):
        root = Path(tmp)
        settings = Settings(
            fleet_path=root / "fleet.yaml",
            registry_url=f"sqlite:///{root / 'registry.sqlite3'}",
            mqtt=MqttSettings(port=services.mosquitto.port, client_id="bench-alerts"),
            influx=InfluxSettings(url=services.influxd.url, database="bench_alerts"),
            spool=SpoolSettings(path=root / "spool.sqlite3"),
        )
        upgrade(settings.registry_url)
        service = IngestService(settings, fleet)
        service.start()
        alerts = _Watcher(services.mosquitto.port, "coldchain/v1/alerts/#")
        pub = LoadPublisher("127.0.0.1", services.mosquitto.port, "bench-alerts-pub")
        latencies: list[float] = []
        try:
            for k in range(trials):
                asset = f"load-truck-{k:04d}"
                device = f"load-dev-{k:04d}"
                now = int(time.time() * 1000)
                t0 = now - delay_min * 60_000
                # Out of range since t0, one reading a minute, stopping one minute short.
                backlog = [_sample(i + 1, t0 + i * 60_000, 6.0) for i in range(delay_min)]
                body = {"v": 1, "device_id": device, "samples": backlog}
                pub.publish(device_topic(device), json.dumps(body).encode())
                assert pub.flush(10) and service.wait_drained(30)
                key = f"coldchain/v1/alerts/{asset}|range"
                assert key not in alerts.arrivals, "the delay completed too early"
                last = {"v": 1, "device_id": device, **_sample(delay_min + 1, now, 6.0)}
                sent = time.perf_counter()
                pub.publish(device_topic(device), json.dumps(last).encode())
                deadline = time.monotonic() + 10
                while key not in alerts.arrivals:
                    assert time.monotonic() < deadline, f"no range alert for {asset}"
                    time.sleep(0.0005)
                latencies.append((alerts.arrivals[key] - sent) * 1000.0)
            # Baseline: the broker round trip alone, same payload size, same machine, same run.
            echo = _Watcher(services.mosquitto.port, "bench/echo/#")
            round_trips: list[float] = []
            for i in range(200):
                sent = time.perf_counter()
                pub.publish("bench/echo/x", json.dumps({**last, "seq": i}).encode())
                key = f"bench/echo/x|{i}"
                while key not in echo.arrivals:
                    time.sleep(0.0002)
                round_trips.append((echo.arrivals[key] - sent) * 1000.0)
            echo.close()
        finally:
            alerts.close()
            pub.close()
            service.stop()
    return {
        "trials": trials,
        "rule": f"chilled.range (delay {delay_min} min)",
        "alert": _q(latencies),
        "baseline_broker_round_trip": _q(round_trips),
        "target_p99_ms": 1000.0,
        "meets_target": _q(latencies)["p99_ms"] < 1000.0,
    }
