"""Data gaps per compartment and device clocks, live through real mosquitto and influxd.

Ingest runs on a controlled clock (100 s, resp. 2 s, after device time), stepped message by
message, so detection times are known to be on the ingest clock and receive times are exact.
docs/rules.md sections 4.6, 4.10 and 13 give the worked examples these follow.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from coldchain.contract import device_topic
from coldchain.fleet import Asset, Compartment, Fleet, SensorSpec
from deploy.launcher import Services
from ingest.service import IngestService
from registry import open_registry
from simulators.loadgen import LoadPublisher
from tests.harness import spine_settings, subscribe_alerts, wait_for

pytestmark = pytest.mark.e2e

MIN = 60_000


class _Clock:
    """The ingest clock, set by the test."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


class _Alerts:
    def __init__(self, port: int, name: str) -> None:
        self.items: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._c = subscribe_alerts(port, f"alerts-{name}", self._on_message)

    def _on_message(self, client: object, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.items.append(json.loads(msg.payload))

    def changes(self) -> list[tuple[str, str, str, str]]:
        with self._lock:
            return [(a["compartment_id"], a["rule"], a["change"], a["id"]) for a in self.items]

    def close(self) -> None:
        self._c.disconnect()
        self._c.loop_stop()


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def _truck(asset_id: str, comps: dict[str, str]) -> Asset:
    return Asset(
        id=asset_id,
        kind="vehicle",
        devices=(f"{asset_id}-tcu",),
        compartments=tuple(
            Compartment(
                id=c,
                profile=p,
                sensors=(SensorSpec(id=f"{c}-air", probe="air"), SensorSpec(id=f"{c}-prod")),
            )
            for c, p in comps.items()
        ),
    )


GS = _truck("truck-gs-01", {"front": "frozen", "middle": "pharma_2_8", "rear": "chilled"})
NT = _truck("truck-nt-02", {"main": "frozen"})
NORMAL = {
    "front": (-21.0, -20.0),
    "middle": (5.0, 5.2),
    "rear": (2.5, 3.0),
    "main": (-21.0, -20.0),
}


def _temps(comps: list[str], step: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for c in comps:
        air, prod = NORMAL[c]
        out[f"{c}-air"] = round(air + 0.1 * (step % 3), 2)
        out[f"{c}-prod"] = round(prod + 0.1 * (step % 2), 2)
    return out


def _payload(device: str, ts: int, seq: int, temps: dict[str, float], gps: bool) -> bytes:
    body: dict[str, Any] = {"v": 1, "device_id": device, "ts": _iso(ts), "seq": seq}
    if temps:
        body["temps_c"] = temps
    if gps:
        body["position"] = {"lat": 31.9, "lon": 120.9, "speed_kmh": 62.0, "fix": "3d"}
    return json.dumps(body).encode()


def _grid_base(now_ms: int) -> int:
    return now_ms - now_ms % MIN - 2 * 3_600_000  # two hours ago, on a whole minute


def test_dead_compartments_on_talking_devices_get_live_gaps_on_the_ingest_clock(
    services: Services, unique_name: str, tmp_path: Path
) -> None:
    base = _grid_base(int(time.time() * 1000))
    lag = 100_000  # the ingest clock runs 100 s after device time: not on the 30 s grid
    clock = _Clock(base + lag)
    settings = spine_settings(services, unique_name, tmp_path)
    service = IngestService(settings, Fleet([GS, NT]), clock_ms=clock)
    service.start()
    alerts = _Alerts(services.mosquitto.port, unique_name)
    pub = LoadPublisher("127.0.0.1", services.mosquitto.port, f"pub-{unique_name}")
    sent = 0
    try:
        for h in range(0, 77):  # every 30 s of device time, 0 .. 38 min
            t = base + h * 30_000
            clock.ms = t + lag
            # gs-01: front and middle always; the rear probes only at 0 and again at 33 min.
            comps = ["front", "middle"] + (["rear"] if h in (0, 66) else [])
            pub.publish(device_topic("truck-gs-01-tcu"), _payload(
                "truck-gs-01-tcu", t, h, _temps(comps, h), gps=True))  # fmt: skip
            # nt-02: positions all along; probes until 5 min and again at 38 min.
            nt_temps = _temps(["main"], h) if h <= 10 or h == 76 else {}
            pub.publish(device_topic("truck-nt-02-tcu"), _payload(
                "truck-nt-02-tcu", t, h, nt_temps, gps=True))  # fmt: skip
            sent += 2
            assert wait_for(lambda n=sent: _evaluated(service) >= n, 30)
            if h == 40:  # 20 min: both gaps must be open now, while the probes are silent
                assert wait_for(lambda: len(_open_gaps(settings.registry_url)) == 2, 30), (
                    service.stats()
                )
        assert pub.flush(30)
        assert service.wait_drained(60), service.stats()
        time.sleep(1.0)  # alerts are QoS 1 on their way
    finally:
        pub.close()
        alerts.close()
        service.stop()

    with open_registry(settings.registry_url) as reg:
        found = [r.excursion for r in reg.find_excursions()]
    by_place = {(e.asset_id, e.compartment_id, e.rule): e for e in found}
    assert set(by_place) == {("truck-gs-01", "rear", "gap"), ("truck-nt-02", "main", "gap")}, found
    for (_, _, _), e in by_place.items():
        assert e.status == "closed" and not e.detected_late
        # detected on the ingest clock: device grid + 100 s, after the gap began
        assert (e.detected_ms - lag - base) % 30_000 == 0, e
        assert e.start_ms + lag < e.detected_ms < e.end_ms + lag, e  # type: ignore[operator]
    rear = by_place[("truck-gs-01", "rear", "gap")]
    assert (rear.start_ms, rear.end_ms) == (base + 10 * MIN, base + 33 * MIN)
    main = by_place[("truck-nt-02", "main", "gap")]
    assert (main.start_ms, main.end_ms) == (base + 15 * MIN, base + 38 * MIN)
    got = sorted((c[0], c[2]) for c in alerts.changes())
    assert got == [("main", "closed"), ("main", "opened"), ("rear", "closed"), ("rear", "opened")]


def _evaluated(service: IngestService) -> int:
    """Messages the rules have taken (so the clock may move on: detection times are exact)."""
    return int(service.stats()["rules_evaluated"])  # type: ignore[call-overload]


def _open_gaps(url: str) -> list[object]:
    with open_registry(url) as reg:
        return [r for r in reg.find_excursions(status="open") if r.excursion.kind == "data_gap"]


def test_clock_skew_is_device_evidence_its_correction_no_gap_and_rewrites_are_recorded(
    services: Services, unique_name: str, tmp_path: Path
) -> None:
    base = _grid_base(int(time.time() * 1000))
    clock = _Clock(base)
    settings = spine_settings(services, unique_name, tmp_path)
    service = IngestService(settings, Fleet([GS]), clock_ms=clock)
    service.start()
    alerts = _Alerts(services.mosquitto.port, unique_name)
    pub = LoadPublisher("127.0.0.1", services.mosquitto.port, f"pub-{unique_name}")
    comps = ["front", "middle", "rear"]
    try:
        for r in range(0, 51):  # one sample a minute, received 2 s after it was sent
            # The device clock runs 10 min slow from receive minute 10 to 39: device times
            # 0..9 come again (with other values) and 39 -> 40 is a forward jump of 10 min.
            device_min = r - 10 if 10 <= r < 40 else r
            clock.ms = base + r * MIN + 2_000
            temps = {k: v + 0.05 * (r // 10) for k, v in _temps(comps, r).items()}
            pub.publish(
                device_topic("truck-gs-01-tcu"),
                _payload("truck-gs-01-tcu", base + device_min * MIN, 1000 + r, temps, gps=False),
            )
            assert wait_for(lambda n=r + 1: _evaluated(service) >= n, 30)
        assert pub.flush(30)
        assert service.wait_drained(90), service.stats()
        time.sleep(1.0)
        stats = service.stats()
    finally:
        pub.close()
        alerts.close()
        service.stop()

    with open_registry(settings.registry_url) as reg:
        found = [r.excursion for r in reg.find_excursions(asset_id="truck-gs-01")]
        rewrites = reg.find_rewrites(asset_id="truck-gs-01")
    # No data gap for the correction, and nothing else but the clock evidence.
    assert [(e.kind, e.compartment_id) for e in found] == [("clock_skew", "truck-gs-01-tcu")]
    skew = found[0]
    assert (skew.start_ms, skew.end_ms, skew.status) == (base, base + 40 * MIN, "closed")
    # The estimate is the least delayed message: 600 s slow plus the 2 s it took to arrive.
    assert "602 s behind" in skew.detail
    assert skew.detected_ms == base + 25 * MIN + 2_000  # 15 min into the run, ingest clock
    # The ten re-used device times, each with both values.
    assert [rw.ts_ms for rw in rewrites] == [base + m * MIN for m in range(10)]
    for m, rw in enumerate(rewrites):
        assert (rw.old_seq, rw.new_seq, rw.device_id) == (1000 + m, 1010 + m, "truck-gs-01-tcu")
        assert rw.changes  # probe values differ between the two sends
        assert all(old != new for old, new in rw.changes.values())
    assert stats["rules_rewrites"] == 10 and stats["rules_clock_jumps"] == 1
    res = services.influxd.query(
        'SELECT "jump_ms", "offset_ms" FROM "clock" WHERE "asset" = \'truck-gs-01\'',
        settings.influx.database,
    )
    rows = [v for s in res["results"][0]["series"] for v in s["values"]]  # type: ignore[index]
    assert [(row[1], row[2]) for row in rows] == [(600_000, -2_000)]
    assert sorted(c[2] for c in alerts.changes() if c[1] == "clock_skew") == ["closed", "opened"]
