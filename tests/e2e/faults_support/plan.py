"""The fault suite's load: a deterministic set of QoS 1 messages with known excursions.

Device time runs from a fixed anchor (UTC midnight seven days before the plan is built, so the
same anchor serves a whole test session and every run compares exactly; inside the contract's
30-day window for telemetry and custody events) in steps of one minute. At each step every
active device publishes one sample with all four probes (frozen ``c1``, chilled ``c2``, air and
product), so no asset is ever silent in device time and no data gap can come from the data:
the rules' wall-clock silence clock (docs/rules.md section 13) needs ten minutes of quiet to
open a gap, far beyond any fault here, so baseline and fault runs see the same excursions.

What the data holds, by step as a fraction of the run (``S`` steps; one compartment each):

| asset | data (degC, from a fraction of S) | rules hit |
|---|---|---|
| truck 0, c2 | 5.2 for 40 min from 0.10; 9.5 for 4 min from 0.25 | range; hard_high |
| truck 1, c2 | 6.0 for 70 min from 0.30: open, escalated, across the fault | range |
| truck 2, c1 | -16 for 45 min from 0.60 | frozen range |
| truck 3, c2 | -3 for 3 min from 0.80 | hard_low |
| truck 4, c2 | custody scans (load/unload), several after 0.40 | custody |
| truck 5, c2 | joins at 0.38 at 5.5 for 30 min: not in any checkpoint yet | range |

Everything else is noise of +-0.4 degC around -20 / 2 degC: no sensor-fault rule can fire (two
probes of different kinds per compartment, never a frozen value).
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass

from coldchain.contract import device_topic
from coldchain.fleet import Fleet
from simulators.loadgen import make_fleet

__all__ = ["STEP_MS", "Plan", "Planned", "anchor_ms", "build_plan", "shipment_id"]

STEP_MS = 60_000
_BASE_C = {"c1": -20.0, "c2": 2.0}
# (asset index, compartment, start fraction, minutes, degC, the rule it breaks)
_EXCURSIONS = (
    (0, "c2", 0.10, 40, 5.2, "range"),
    (0, "c2", 0.25, 4, 9.5, "hard_high"),
    (1, "c2", 0.30, 70, 6.0, "range"),
    (2, "c1", 0.60, 45, -16.0, "range"),
    (3, "c2", 0.80, 3, -3.0, "hard_low"),
    (5, "c2", 0.38, 30, 5.5, "range"),
)
ESCALATED = (1, "c2", "range")  # 2 degC over for 30 min: 60 degree-minutes, chilled escalates
_LATE_ASSET, _LATE_FROM = 5, 0.38
_CUSTODY_ASSET = 4
# (shipment number, action, fraction)
_SCANS = (
    (1, "load", 0.05),
    (2, "load", 0.41),
    (3, "load", 0.43),
    (1, "unload", 0.45),
    (4, "load", 0.47),
    (2, "unload", 0.50),
    (5, "load", 0.55),
    (3, "unload", 0.70),
    (4, "unload", 0.90),
)
MIN_STEPS = 400


@dataclass(frozen=True, slots=True)
class Planned:
    """One message: what the publisher sends and what it must become."""

    topic: str
    payload: bytes
    # (asset, sensor, ts_ms, temp_c) of every reading: what InfluxDB must hold once acknowledged
    readings: tuple[tuple[str, str, int, float], ...] = ()
    # (shipment, action, asset, compartment, ts_ms): what the registry must hold
    custody: tuple[str, str, str, str, int] | None = None


@dataclass(frozen=True)
class Plan:
    fleet: Fleet
    start_ms: int
    steps: int
    messages: list[Planned]
    shipments: tuple[str, ...]

    def fault_index(self, fraction: float = 0.4) -> int:
        """The message index at which a fault is injected."""
        return int(len(self.messages) * fraction)

    @property
    def tail_index(self) -> int:
        """The last 5 % of the messages are published only once the run settled after the
        fault: they show that ingest receives again."""
        return int(len(self.messages) * 0.95)

    def expected_excursions(self) -> set[tuple[str, str, str, int]]:
        """(asset, compartment, rule, start_ms) of the scripted excursions, and only those."""
        assets = self.asset_ids
        return {
            (assets[a], comp, rule, self.start_ms + int(frac * self.steps) * STEP_MS)
            for a, comp, frac, _, _, rule in _EXCURSIONS
        }

    @property
    def escalated(self) -> tuple[str, str, str]:
        """(asset, compartment, rule) of the one excursion that escalates."""
        a, comp, rule = ESCALATED
        return self.asset_ids[a], comp, rule

    @property
    def asset_ids(self) -> list[str]:
        return list(self.fleet.assets)


def anchor_ms(now_s: float | None = None) -> int:
    """UTC midnight seven days ago, in epoch ms: a fixed past epoch for one session."""
    now = time.time() if now_s is None else now_s
    return (int(now) // 86_400 - 7) * 86_400_000


def _iso(ts_ms: int) -> str:
    secs, ms = divmod(ts_ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{ms:03d}Z"


def shipment_id(n: int) -> str:
    return f"flt-shp-{n}"


def build_plan(steps: int, devices: int = 6, start_ms: int | None = None, seed: int = 8) -> Plan:
    """``steps`` minutes of ``devices`` trucks (at least 6: the roles above), plus the scans.

    Raises ValueError when the run is too short for the scripted excursions to fit.
    """
    if steps < MIN_STEPS or devices < 6:
        raise ValueError(f"need at least {MIN_STEPS} steps and 6 devices")
    start = anchor_ms() if start_ms is None else start_ms
    fleet = make_fleet(devices, prefix="flt")
    assets = list(fleet.assets.values())
    rng = random.Random(seed)
    windows: dict[tuple[int, str], list[tuple[int, int, float]]] = {}
    for a, comp, frac, minutes, temp, _ in _EXCURSIONS:
        k0 = int(frac * steps)
        windows.setdefault((a, comp), []).append((k0, k0 + minutes, temp))
    late_from = int(_LATE_FROM * steps)
    scans: dict[int, list[tuple[int, str]]] = {}
    for n, action, frac in _SCANS:
        scans.setdefault(int(frac * steps), []).append((n, action))
    seqs = [0] * devices
    event_seqs = [0] * devices
    messages: list[Planned] = []
    for k in range(steps):
        ts = start + k * STEP_MS
        for a, asset in enumerate(assets):
            if a == _LATE_ASSET and k < late_from:
                continue
            temps: dict[str, float] = {}
            for compartment in asset.compartments:
                level, spread = _BASE_C[compartment.id], 0.4
                for k0, k1, temp in windows.get((a, compartment.id), ()):
                    if k0 <= k < k1:
                        level, spread = temp, 0.2
                for sensor in compartment.sensors:
                    temps[sensor.id] = round(level + rng.uniform(-spread, spread), 2)
            seqs[a] += 1
            device = asset.devices[0]
            body = {"v": 1, "device_id": device, "ts": _iso(ts), "seq": seqs[a], "temps_c": temps}
            messages.append(
                Planned(
                    device_topic(device),
                    json.dumps(body, separators=(",", ":")).encode(),
                    tuple((asset.id, s, ts, t) for s, t in temps.items()),
                )
            )
        for n, action in scans.get(k, ()):
            asset = assets[_CUSTODY_ASSET]
            device = asset.devices[0]
            event_seqs[_CUSTODY_ASSET] += 1
            scan_ts = ts + STEP_MS // 2
            event = {
                "v": 1,
                "device_id": device,
                "ts": _iso(scan_ts),
                "seq": event_seqs[_CUSTODY_ASSET],
                "type": "custody",
                "action": action,
                "shipment_id": shipment_id(n),
                "asset_id": asset.id,
                "compartment_id": "c2",
                "actor": "dock-7",
            }
            messages.append(
                Planned(
                    device_topic(device, "events"),
                    json.dumps(event, separators=(",", ":")).encode(),
                    custody=(shipment_id(n), action, asset.id, "c2", scan_ts),
                )
            )
    shipments = tuple(sorted({shipment_id(n) for n, _, _ in _SCANS}))
    return Plan(fleet, start, steps, messages, shipments)
