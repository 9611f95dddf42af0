"""A seeded load generator: a synthetic fleet and contract-valid telemetry, fast.

Not a simulator (no physics, no faults): it exists to drive the spine at a known rate and to know
exactly what was sent, so tests and benchmarks can check that every accepted reading landed once.
Payloads are ~200 bytes (one sample, two probes, a position) like a real reefer's.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from coldchain.contract import device_topic
from coldchain.fleet import Asset, Compartment, Fleet, SensorSpec

__all__ = ["LoadMessage", "LoadPublisher", "SeededLoad", "make_fleet"]

_SETPOINT_C = {"frozen": -20.0, "chilled": 2.0, "pharma_2_8": 5.0, "controlled_room": 20.0}


def make_fleet(n_assets: int, *, compartments: int = 2, prefix: str = "load") -> Fleet:
    """``n_assets`` trucks, one device each, each compartment with an air and a product probe."""
    assets = []
    for i in range(n_assets):
        comps = tuple(
            Compartment(
                id=f"c{c + 1}",
                profile="frozen" if c == 0 else "chilled",
                sensors=(
                    SensorSpec(id=f"c{c + 1}-air", probe="air"),
                    SensorSpec(id=f"c{c + 1}-prod", probe="product"),
                ),
            )
            for c in range(compartments)
        )
        assets.append(
            Asset(
                id=f"{prefix}-truck-{i:04d}",
                kind="vehicle",
                devices=(f"{prefix}-dev-{i:04d}",),
                compartments=comps,
            )
        )
    return Fleet(assets)


@dataclass(frozen=True, slots=True)
class LoadMessage:
    topic: str
    payload: bytes
    asset_id: str
    # (sensor_id, ts_ms, temp_c) of every reading in the message: what must land in InfluxDB.
    readings: tuple[tuple[str, int, float], ...]


@dataclass
class SeededLoad:
    """Deterministic telemetry for a fleet: the same seed gives the same messages."""

    fleet: Fleet
    seed: int = 1
    interval_ms: int = 10_000
    sensors_per_message: int = 2
    _rng: random.Random = field(init=False, repr=False)
    _setpoint: dict[tuple[str, str], float] = field(init=False, repr=False)
    _assets: list[Asset] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._assets = list(self.fleet.assets.values())
        self._setpoint = {
            (a.id, s.id): _SETPOINT_C.get(c.profile, 5.0)
            for a in self.fleet.assets.values()
            for c in a.compartments
            for s in c.sensors
        }

    def _sample(
        self, asset: Asset, seq: int, ts_ms: int
    ) -> tuple[dict[str, object], list[tuple[str, int, float]]]:
        rng = self._rng
        sensors = [s.id for c in asset.compartments for s in c.sensors][: self.sensors_per_message]
        # Around each compartment's setpoint, mostly inside its profile's range, as a working
        # reefer reads: the rules engine then does its normal work, not an alarm storm.
        temps = {
            s: round(self._setpoint[(asset.id, s)] + rng.uniform(-1.5, 1.5), 2) for s in sensors
        }
        body: dict[str, object] = {
            "ts": _iso(ts_ms),
            "seq": seq,
            "temps_c": temps,
            "position": {
                "lat": round(23.0 + rng.random(), 6),
                "lon": round(113.0 + rng.random(), 6),
                "speed_kmh": round(rng.uniform(0, 90), 1),
            },
        }
        return body, [(s, ts_ms, t) for s, t in temps.items()]

    def live(self, index: int, seq: int, ts_ms: int) -> LoadMessage:
        """One single-sample message of the ``index``-th device (round-robin over the fleet)
        at device time ``ts_ms``: for steady live load where device time is publish time."""
        asset = self._assets[index % len(self._assets)]
        body, readings = self._sample(asset, seq, ts_ms)
        payload = {"v": 1, "device_id": asset.devices[0], **body}
        return LoadMessage(
            device_topic(asset.devices[0]),
            json.dumps(payload, separators=(",", ":")).encode(),
            asset.id,
            tuple(readings),
        )

    def messages(
        self, per_device: int, start_ms: int, *, batch_every: int = 0, batch_size: int = 10
    ) -> Iterator[LoadMessage]:
        """``per_device`` single-sample messages per device, round-robin over devices.

        With ``batch_every`` = k > 0, every k-th message of a device is instead a backlog batch of
        ``batch_size`` samples (a device that lost coverage and uploads late).
        """
        devices = [(d, a) for a in self.fleet.assets.values() for d in a.devices]
        seqs = dict.fromkeys((d for d, _ in devices), 0)
        for i in range(per_device):
            for device_id, asset in devices:
                if batch_every and (i + 1) % batch_every == 0:
                    samples: list[dict[str, object]] = []
                    readings: list[tuple[str, int, float]] = []
                    for _ in range(batch_size):
                        seqs[device_id] += 1
                        ts = start_ms + seqs[device_id] * self.interval_ms
                        body, r = self._sample(asset, seqs[device_id], ts)
                        samples.append(body)
                        readings.extend(r)
                    payload = {"v": 1, "device_id": device_id, "samples": samples}
                else:
                    seqs[device_id] += 1
                    ts = start_ms + seqs[device_id] * self.interval_ms
                    body, readings = self._sample(asset, seqs[device_id], ts)
                    payload = {"v": 1, "device_id": device_id, **body}
                yield LoadMessage(
                    device_topic(device_id),
                    json.dumps(payload, separators=(",", ":")).encode(),
                    asset.id,
                    tuple(readings),
                )


def _iso(ts_ms: int) -> str:
    secs, ms = divmod(ts_ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{ms:03d}Z"


class LoadPublisher:
    """One paho connection publishing for many devices (tests and benchmarks run anonymous).

    ``publish`` returns once the message is queued; ``flush`` waits for every PUBACK.
    """

    def __init__(self, host: str, port: int, client_id: str, max_inflight: int = 100) -> None:
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311
        )
        self._client.max_inflight_messages_set(max_inflight)
        self._max_outstanding = max_inflight
        self._client.max_queued_messages_set(0)
        self._acked = 0
        self._sent = 0
        self._cv = threading.Condition()
        self._client.on_publish = self._on_publish
        self._client.connect(host, port, keepalive=60)
        self._client.loop_start()

    def _on_publish(
        self, client: object, userdata: object, mid: int, rc: object, p: object
    ) -> None:
        with self._cv:
            self._acked += 1
            self._cv.notify_all()

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        # Keep what is unacknowledged to the in-flight window: packet ids are 16-bit (beyond
        # 65,535 outstanding they repeat and acks match the wrong message), and paho scans every
        # queued message on each PUBACK, so a long queue makes publishing quadratic.
        if self._sent - self._acked >= self._max_outstanding:
            with self._cv:
                self._cv.wait_for(lambda: self._sent - self._acked < self._max_outstanding, 60)
        self._client.publish(topic, payload, qos=qos)
        self._sent += 1

    def flush(self, timeout_s: float = 60.0) -> bool:
        with self._cv:
            return self._cv.wait_for(lambda: self._acked >= self._sent, timeout_s)

    @property
    def sent(self) -> int:
        return self._sent

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
