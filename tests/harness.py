"""Test harness helpers: settings pointing at the launcher's services, InfluxDB read-backs."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import paho.mqtt.client as mqtt

from coldchain.settings import (
    InfluxSettings,
    MqttSettings,
    Settings,
    SpoolSettings,
)
from deploy.launcher import Services
from registry import upgrade
from simulators.loadgen import LoadMessage


def spine_settings(services: Services, name: str, root: Path, **spool: object) -> Settings:
    """Settings for one ingest process on the test services, isolated by ``name``; its
    registry database is created."""
    settings = Settings(
        fleet_path=root / "fleet.yaml",
        registry_url=f"sqlite:///{root / 'registry.sqlite3'}",
        mqtt=MqttSettings(
            port=services.mosquitto.port, client_id=f"ingest-{name}"[:64], share_group=name
        ),
        influx=InfluxSettings(url=services.influxd.url, database=name, retry_max_s=1.0),
        spool=SpoolSettings(path=root / "spool.sqlite3", **spool),  # type: ignore[arg-type]
    )
    upgrade(settings.registry_url)
    return settings


def settings_env(settings: Settings) -> dict[str, str]:
    """The same settings as ``COLDCHAIN_*`` environment variables, for a subprocess."""
    return {
        "COLDCHAIN_FLEET_PATH": str(settings.fleet_path),
        "COLDCHAIN_REGISTRY_URL": settings.registry_url,
        "COLDCHAIN_MQTT__PORT": str(settings.mqtt.port),
        "COLDCHAIN_MQTT__CLIENT_ID": settings.mqtt.client_id,
        "COLDCHAIN_MQTT__SHARE_GROUP": settings.mqtt.share_group,
        "COLDCHAIN_INFLUX__URL": settings.influx.url,
        "COLDCHAIN_INFLUX__DATABASE": settings.influx.database,
        "COLDCHAIN_INFLUX__RETRY_MAX_S": str(settings.influx.retry_max_s),
        "COLDCHAIN_SPOOL__PATH": str(settings.spool.path),
    }


def expected_readings(messages: Iterable[LoadMessage]) -> dict[str, dict[tuple[str, int], float]]:
    """asset -> {(sensor, ts_ms): temp_c}: distinct readings, as InfluxDB must hold them."""
    out: dict[str, dict[tuple[str, int], float]] = {}
    for m in messages:
        per_asset = out.setdefault(m.asset_id, {})
        for sensor, ts, temp in m.readings:
            per_asset[(sensor, ts)] = temp
    return out


def stored_counts(services: Services, database: str) -> Counter[str]:
    """asset -> number of temperature points stored."""
    res = services.influxd.query(
        'SELECT count("temp_c") FROM "temperature" GROUP BY "asset"', database
    )
    counts: Counter[str] = Counter()
    for result in res.get("results", []):  # type: ignore[union-attr]
        for series in result.get("series", []):
            counts[series["tags"]["asset"]] = int(series["values"][0][1])
    return counts


def stored_points(services: Services, database: str, asset: str) -> dict[tuple[str, int], float]:
    res = services.influxd.query(
        f'SELECT "temp_c", "sensor" FROM "temperature" WHERE "asset" = \'{asset}\'', database
    )
    out: dict[tuple[str, int], float] = {}
    for result in res.get("results", []):  # type: ignore[union-attr]
        for series in result.get("series", []):
            cols = series["columns"]
            for row in series["values"]:
                rec = dict(zip(cols, row, strict=True))
                out[(rec["sensor"], rec["time"])] = rec["temp_c"]
    return out


def wait_for(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()


def subscribe_alerts(
    port: int, client_id: str, on_message: Callable[[mqtt.Client, object, mqtt.MQTTMessage], None]
) -> mqtt.Client:
    """A QoS 1 subscriber to every alert (``coldchain/v1/alerts/#``) on the loopback broker at
    ``port``, subscribed again on every connection; returned once the broker confirmed the
    subscription (within 10 s). The caller disconnects it and stops its loop."""
    ready = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id[:60])
    client.on_connect = lambda c, *_: c.subscribe("coldchain/v1/alerts/#", qos=1)
    client.on_subscribe = lambda *_: ready.set()
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert ready.wait(10), "the alert subscription was not confirmed"
    return client
