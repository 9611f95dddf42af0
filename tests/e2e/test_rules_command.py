"""The scale-out commands as an operator runs them: ``coldchain ingest --rules forward`` and
``coldchain rules`` as subprocesses (settings from ``COLDCHAIN_*`` only), on real mosquitto,
influxd and the launcher's PostgreSQL.

Two chilled trucks, one in each of the 2 partitions, send a range excursion (6 degC for 25
minutes, device time, an hour ago): the worker owning both partitions raises it for each
(excursion and ``opened`` alert in the registry). SIGTERM: the worker exits 0, each partition's
checkpoint (``rules-partition-<k>``) is in the registry. The trucks go back in range while it
is down (the broker queues for its persistent sessions); started again, it resumes from the
checkpoints and closes each excursion: one excursion per truck, never two, one alert per
(excursion, change).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coldchain.contract import device_topic
from coldchain.fleet import Asset, Compartment, Fleet, SensorSpec
from coldchain.rules import partition_of
from coldchain.settings import InfluxSettings, MqttSettings, Settings, SpoolSettings
from deploy.launcher import Services
from ingest.rules_worker import partition_checkpoint_key
from registry import open_registry
from simulators.loadgen import LoadPublisher
from tests.e2e.faults_support.probes import discard_session
from tests.harness import settings_env, wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
MIN = 60_000
PARTITIONS = 2
TRUCKS = ("truck-b", "van-1")  # partitions 0 and 1 of 2
OPENED_BY = 32  # minutes sent before the SIGTERM: the range excursion is open by then
LAST = 50  # minutes sent in all: back in range from 35, closed 10 min later


def _asset(asset_id: str) -> Asset:
    sensors = (SensorSpec(id="main-air", probe="air"), SensorSpec(id="main-prod"))
    return Asset(
        id=asset_id,
        kind="vehicle",
        devices=(f"{asset_id}-tcu",),
        compartments=(Compartment(id="main", profile="chilled", sensors=sensors),),
    )


def _temp_c(minute: int) -> float:
    """Chilled (0..4 degC, 20 min delay, 10 min clear delay): out of range over [10, 35)."""
    wobble = 0.1 * (minute % 3)  # never a stuck sensor
    return (6.0 if 10 <= minute < 35 else 3.0) + wobble


def _message(asset: str, ts_ms: int, seq: int) -> tuple[str, bytes]:
    device = f"{asset}-tcu"
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts_ms / 1000)) + ".000Z"
    temp = _temp_c(seq)
    body = {
        "v": 1,
        "device_id": device,
        "ts": iso,
        "seq": seq,
        "temps_c": {"main-air": round(temp + 0.3, 2), "main-prod": round(temp, 2)},
    }
    return device_topic(device), json.dumps(body).encode()


class _Command:
    """``coldchain <args>`` with ``env``; stderr to ``log``, stdout kept (its final stats)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, banner: str) -> None:
        self.args, self.env, self.log, self.banner = args, env, log, banner
        self.proc: subprocess.Popen[bytes] | None = None
        self._seen = 0

    def launch(self) -> _Command:
        self.log.touch()
        self._seen = self.log.read_text().count(self.banner)
        base = {k: v for k, v in os.environ.items() if not k.startswith("COLDCHAIN_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", *self.args],
            env=base | self.env,
            stdout=subprocess.PIPE,
            stderr=self.log.open("ab"),
            cwd=ROOT,
        )
        return self

    def wait_ready(self) -> _Command:
        def ready() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
            return self.log.read_text().count(self.banner) > self._seen

        assert wait_for(ready, 60, 0.05), self.log.read_text()[-3000:]
        return self

    def sigterm(self) -> tuple[int, dict[str, object]]:
        """SIGTERM, then (exit status, the stats it printed as JSON on stdout)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        lines = out.decode().strip().splitlines()
        return self.proc.returncode, json.loads(lines[-1]) if lines else {}

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=10)


def test_ingest_forward_and_rules_commands_raise_stop_and_resume(
    services: Services, pg_registry_url: str, unique_name: str, tmp_path: Path
) -> None:
    assert sorted(partition_of(t, PARTITIONS) for t in TRUCKS) == [0, 1]
    settings = Settings(
        fleet_path=tmp_path / "fleet.yaml",
        registry_url=pg_registry_url,
        mqtt=MqttSettings(port=services.mosquitto.port, client_id=f"ingest-{unique_name}"[:64]),
        influx=InfluxSettings(url=services.influxd.url, database=unique_name, retry_max_s=1.0),
        spool=SpoolSettings(path=tmp_path / "spool.sqlite3"),
    )
    settings.fleet_path.write_text(Fleet([_asset(t) for t in TRUCKS]).to_yaml())
    env = settings_env(settings) | {"COLDCHAIN_RULES__PARTITIONS": str(PARTITIONS)}
    prefix = f"{unique_name}-rules"[:50]
    ingest = _Command(
        ["ingest", "--rules", "forward"], env, tmp_path / "ingest.log", "coldchain ingest:"
    )
    worker = _Command(
        ["rules", "--partitions", "all", "--client-id-prefix", prefix],
        env | {"COLDCHAIN_MQTT__CLIENT_ID": f"{unique_name}-unused"},
        tmp_path / "rules.log",
        "coldchain rules:",
    )
    now = int(time.time() * 1000)
    base = now - now % MIN - 60 * MIN  # minute 0, an hour ago
    pub = LoadPublisher("127.0.0.1", services.mosquitto.port, f"pub-{unique_name}"[:60])

    def send(minutes: range) -> None:
        for m in minutes:
            for truck in TRUCKS:
                pub.publish(*_message(truck, base + m * MIN, m))
        assert pub.flush(30)

    def ranges() -> dict[str, list[tuple[str, int, int | None, str]]]:
        with open_registry(pg_registry_url) as reg:
            found = [r.excursion for r in reg.find_excursions()]
        out: dict[str, list[tuple[str, int, int | None, str]]] = {t: [] for t in TRUCKS}
        for e in found:
            out[e.asset_id].append((e.rule, e.start_ms, e.end_ms, e.status))
        return out

    def outbox_keys() -> list[str]:
        with open_registry(pg_registry_url) as reg:
            return [o.key for o in reg.outbox_entries()]

    start = (base + 10 * MIN, None, "open")
    try:
        ingest.launch()
        worker.launch()
        ingest.wait_ready()
        worker.wait_ready()
        send(range(OPENED_BY + 1))
        opened = {t: [("range", *start)] for t in TRUCKS}
        assert wait_for(lambda: ranges() == opened, 60, 0.25), (ranges(), worker.log.read_text())
        with open_registry(pg_registry_url) as reg:
            ids = {r.excursion.asset_id: r.excursion.id for r in reg.find_excursions()}
        assert wait_for(lambda: {f"{i}:opened" for i in ids.values()} <= set(outbox_keys()), 60)

        status, stats = worker.sigterm()
        assert status == 0, worker.log.read_text()[-3000:]
        assert stats.get("rules_partition_0_received") and stats.get("rules_partition_1_received")
        with open_registry(pg_registry_url) as reg:
            saved = reg.load_checkpoints("rules-partition-")
        assert set(saved) == {partition_checkpoint_key(k) for k in range(PARTITIONS)}, saved

        send(range(OPENED_BY + 1, LAST + 1))  # queued by the broker for the stopped worker
        worker.launch().wait_ready()
        closed = {t: [("range", base + 10 * MIN, base + 35 * MIN, "closed")] for t in TRUCKS}
        assert wait_for(lambda: ranges() == closed, 60, 0.25), (ranges(), worker.log.read_text())
        expected = {f"{i}:{change}" for i in ids.values() for change in ("opened", "closed")}
        assert wait_for(lambda: expected <= set(outbox_keys()), 60)
        keys = outbox_keys()
        assert len(keys) == len(set(keys)) and set(keys) == expected, keys

        assert worker.sigterm()[0] == 0, worker.log.read_text()[-3000:]
        assert ingest.sigterm()[0] == 0, ingest.log.read_text()[-3000:]
    finally:
        pub.close()
        worker.kill()
        ingest.kill()
        for cid in [settings.mqtt.client_id] + [f"{prefix}-{k}" for k in range(PARTITIONS)]:
            discard_session(services.mosquitto.port, cid)
