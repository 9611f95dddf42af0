"""SIGKILL of ingest must not lose an excursion nor invent a data gap (issue 8, failure 4).

docs/rules.md section 13 ("Restart") is the worked example. A real ``coldchain ingest``
process on real mosquitto and influxd: a checkpoint is written (another asset's samples and a
change), a chilled truck's minutes 0-39 are acknowledged, ingest is killed 0.3 s later, minutes
40-94 wait in the broker, ingest restarts with the same client id and spool. The truck's range
excursion [30, 55] must be raised - one alert per lifecycle change - and no data gap reported;
both when the truck was never in a checkpoint and when an older state of it was.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from coldchain.contract import device_topic
from coldchain.fleet import Asset, Compartment, Fleet, SensorSpec
from deploy.launcher import Services, free_port
from ingest.spool import Spool
from registry import open_registry
from simulators.loadgen import LoadPublisher
from tests.e2e.ingest_process import unlabelled
from tests.harness import settings_env, spine_settings, wait_for

pytestmark = pytest.mark.e2e

MIN = 60_000


def _asset(asset_id: str, profile: str) -> Asset:
    return Asset(
        id=asset_id,
        kind="vehicle",
        devices=(f"{asset_id}-tcu",),
        compartments=(
            Compartment(
                id="main",
                profile=profile,
                sensors=(SensorSpec(id="main-air", probe="air"), SensorSpec(id="main-prod")),
            ),
        ),
    )


FLEET = Fleet([_asset("truck-a", "frozen"), _asset("truck-b", "chilled")])


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def _msg(asset: str, ts: int, seq: int, temp: float) -> tuple[str, bytes]:
    device = f"{asset}-tcu"
    body = {
        "v": 1,
        "device_id": device,
        "ts": _iso(ts),
        "seq": seq,
        "temps_c": {"main-air": round(temp + 0.3, 2), "main-prod": temp},
    }
    return device_topic(device), json.dumps(body).encode()


def _truck_b_temp(minute: int) -> float:
    """0-29 at ~3 degC, 30-39 at 4.6-6.3, 40-54 still above 4, then 2.8 (product probe)."""
    if minute < 30:
        return 3.0 + 0.1 * (minute % 3)
    if minute < 40:
        return round(4.6 + (minute - 30) * (6.3 - 4.6) / 9, 2)
    if minute < 55:
        return 5.0 - 0.05 * (minute - 40)
    return 2.8


class _Alerts:
    def __init__(self, port: int, name: str) -> None:
        self.items: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        ready = threading.Event()
        self._c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"alerts-{name}"[:60])
        self._c.on_connect = lambda c, *_: c.subscribe("coldchain/v1/alerts/#", qos=1)
        self._c.on_subscribe = lambda *_: ready.set()
        self._c.on_message = self._on_message
        self._c.connect("127.0.0.1", port)
        self._c.loop_start()
        assert ready.wait(10)

    def _on_message(self, client: object, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.items.append(json.loads(msg.payload))

    def of(self, asset: str) -> list[tuple[str, str, str]]:
        with self._lock:
            return [(a["id"], a["kind"], a["change"]) for a in self.items if a["asset_id"] == asset]

    def close(self) -> None:
        self._c.disconnect()
        self._c.loop_stop()


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


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        found = unlabelled(resp.read().decode())
    if name not in found:
        raise AssertionError(f"no metric {name}")
    return found[name]


def _metric_or(port: int, name: str, default: float) -> float:
    try:
        return _metric(port, name)
    except OSError:
        return default


def _checkpoint(url: str) -> dict[str, Any]:
    with open_registry(url) as reg:
        return reg.load_checkpoint("rules-engine") or {}


def _checkpointed_ts(url: str, asset: str) -> int:
    for entry in _checkpoint(url).get("compartments", []):
        if entry["asset"] == asset:
            return int(entry["state"]["ts"])
    return -1


@pytest.mark.parametrize("truck_checkpointed", [False, True], ids=["never", "earlier"])
def test_sigkill_after_acks_loses_no_excursion_and_invents_no_gap(
    services: Services, unique_name: str, tmp_path: Path, truck_checkpointed: bool
) -> None:
    settings = spine_settings(services, unique_name, tmp_path)
    settings.fleet_path.write_text(FLEET.to_yaml())
    port = free_port()
    env = settings_env(settings) | {"COLDCHAIN_METRICS_PORT": str(port)}
    url = settings.registry_url
    log = tmp_path / "ingest.log"
    now = int(time.time() * 1000)
    base = now - now % MIN - 100 * MIN  # truck-b's minute 0, 100 min ago
    pub = LoadPublisher("127.0.0.1", services.mosquitto.port, f"pub-{unique_name}")
    alerts = _Alerts(services.mosquitto.port, unique_name)
    sent = 0

    def publish(asset: str, minute: int, temp: float) -> None:
        nonlocal sent
        pub.publish(*_msg(asset, base + minute * MIN, minute, temp))
        sent += 1

    def acked() -> bool:
        return _metric_or(port, "acked_messages", 0) >= sent

    proc = _start_ingest_process(env, log)
    try:
        # 21 samples of another asset; the last breaks its hard limit: a change, and with it a
        # checkpoint (the idle-then-checkpoint of the issue, without waiting 10 s for it).
        for m in range(21):
            publish("truck-a", m, -20.0 if m < 20 else -5.0)
        assert wait_for(lambda: _checkpoint(url).get("fed_through", 0) >= 21, 30), log.read_text()
        if truck_checkpointed:
            for m in range(20):
                publish("truck-b", m, _truck_b_temp(m))
            assert wait_for(acked, 30)
            publish("truck-a", 21, -20.0)  # truck-a back in range: a change, a checkpoint
            assert wait_for(lambda: _checkpointed_ts(url, "truck-b") == base + 19 * MIN, 30)
        for m in range(20 if truck_checkpointed else 0, 40):
            publish("truck-b", m, _truck_b_temp(m))
        assert pub.flush(30)
        assert wait_for(acked, 30)
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        # What the restart has to make up for: truck-b's samples acknowledged after the last
        # checkpoint (the journal names them; shown if an assertion below fails).
        fed = int(_checkpoint(url).get("fed_through", 0))
        spool = Spool(settings.spool.path)
        try:
            after = spool.journal_since(fed)
        finally:
            spool.close()

        for m in range(40, 95):  # sits in the broker until ingest is back
            publish("truck-b", m, _truck_b_temp(m))
        assert pub.flush(30)
        proc = _start_ingest_process(env, log)

        def settled() -> bool:
            with open_registry(url) as reg:
                done = [
                    r
                    for r in reg.find_excursions(asset_id="truck-b")
                    if r.excursion.rule == "range" and r.excursion.status == "closed"
                ]
            return (
                bool(done)
                and _metric(port, "acked_messages") >= 55
                and _metric(port, "rules_recomputes_pending") == 0
                and _metric(port, "rules_assets_held") == 0
                and _metric(port, "rules_queue_depth") == 0
                and _metric(port, "spool_depth_messages") == 0
            )

        assert wait_for(settled, 120, 0.5), log.read_text()[-3000:]
        time.sleep(1.0)  # alerts are QoS 1 on their way
    finally:
        pub.close()
        alerts.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)

    with open_registry(url) as reg:
        found = [r.excursion for r in reg.find_excursions(asset_id="truck-b")]
    assert [(e.kind, e.rule) for e in found] == [("range", "range")], (found, after)
    [exc] = found
    assert (exc.start_ms, exc.end_ms, exc.status) == (base + 30 * MIN, base + 55 * MIN, "closed")
    sent_alerts = alerts.of("truck-b")
    # Raised and announced; never the same (excursion, change) twice; no data gap, ever.
    assert "closed" in [c for i, _, c in sent_alerts if i == exc.id], sent_alerts
    assert len(sent_alerts) == len(set(sent_alerts)), sent_alerts
    assert {k for _, k, _ in sent_alerts} == {"range"}, sent_alerts
