"""Ground truth: what the simulator really did, for tests to hold the system's findings against.

Written as one JSON document (``GroundTruth.to_json``)::

    {"scenario", "seed", "start", "end", "sample_interval_s",
     "faults":   [{kind, asset_id, compartment_id, sensor_id, device_id, start, end, params}],
     "doors":    [{asset_id, compartment_id, start, end, cause}],
     "defrosts": [{asset_id, compartment_id, start, end}],
     "custody":  [{ts, action, shipment_id, asset_id, compartment_id, actor, device_id}],
     "temperatures": {asset_id: {compartment_id:
                       {"t": [iso...], "air_c": [...], "product_c": [...], "load_c": [...],
                        "setpoint_c": [...]}}},
     "devices":  {device_id: {asset_id, samples, telemetry_messages, batch_messages,
                              backlog_samples, duplicate_messages, events}}}

Times are true (simulated) UTC, not device clocks: a skewed device's ``ts`` differs from them by
exactly the fault's ``offset_s``. Temperatures are the model's air and product nodes at each
sample instant, before probe bias, noise and faults: ``air_c`` what a perfect air probe reads,
``product_c`` what a perfect product probe reads, ``load_c`` the bulk product's temperature.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from simulators.device import DeviceCounters, format_ts

__all__ = ["GroundTruth", "TruthRecorder"]


@dataclass
class _Series:
    t_s: list[float] = field(default_factory=list)
    air_c: list[float] = field(default_factory=list)
    product_c: list[float] = field(default_factory=list)
    load_c: list[float] = field(default_factory=list)
    setpoint_c: list[float] = field(default_factory=list)


class TruthRecorder:
    """Collects truth while the simulation runs; ``result()`` once the stream is exhausted."""

    def __init__(self, scenario_name: str, seed: int, start: datetime, duration_s: float) -> None:
        self.scenario_name = scenario_name
        self.seed = seed
        self.start = start
        self.duration_s = duration_s
        self.faults: list[dict[str, Any]] = []
        self.doors: list[dict[str, Any]] = []
        self.defrosts: list[dict[str, Any]] = []
        self.custody: list[dict[str, Any]] = []
        self.series: dict[str, dict[str, _Series]] = {}
        self.devices: dict[str, dict[str, Any]] = {}
        self.shipments: list[dict[str, Any]] = []
        self.sample_interval_s = 0.0

    def iso(self, t_s: float) -> str:
        return format_ts(self.start, t_s)

    def temperature(
        self,
        asset_id: str,
        comp_id: str,
        t_s: float,
        air_c: float,
        product_c: float,
        load_c: float,
        sp_c: float,
    ) -> None:
        s = self.series.setdefault(asset_id, {}).setdefault(comp_id, _Series())
        s.t_s.append(t_s)
        s.air_c.append(round(air_c, 3))
        s.product_c.append(round(product_c, 3))
        s.load_c.append(round(load_c, 3))
        s.setpoint_c.append(sp_c)

    def device(self, asset_id: str, device_id: str, counters: DeviceCounters) -> None:
        self.devices[device_id] = {
            "asset_id": asset_id,
            "samples": counters.samples,
            "telemetry_messages": counters.telemetry_messages,
            "batch_messages": counters.batch_messages,
            "backlog_samples": counters.backlog_samples,
            "duplicate_messages": counters.duplicate_messages,
            "events": counters.events,
        }

    def result(self) -> GroundTruth:
        temps: dict[str, dict[str, dict[str, list[Any]]]] = {}
        for asset_id, comps in sorted(self.series.items()):
            temps[asset_id] = {
                cid: {
                    "t": [self.iso(t) for t in s.t_s],
                    "air_c": s.air_c,
                    "product_c": s.product_c,
                    "load_c": s.load_c,
                    "setpoint_c": s.setpoint_c,
                }
                for cid, s in comps.items()
            }
        return GroundTruth(
            {
                "scenario": self.scenario_name,
                "seed": self.seed,
                "start": self.iso(0.0),
                "end": self.iso(self.duration_s),
                "sample_interval_s": self.sample_interval_s,
                "shipments": self.shipments,
                "faults": self.faults,
                "doors": sorted(self.doors, key=lambda d: (d["start"], d["asset_id"])),
                "defrosts": self.defrosts,
                "custody": sorted(self.custody, key=lambda c: (c["ts"], c["shipment_id"])),
                "temperatures": temps,
                "devices": dict(sorted(self.devices.items())),
            }
        )


class GroundTruth:
    """The finished ground-truth document (plain JSON-able dicts and lists)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def to_json(self) -> str:
        return json.dumps(self.data, indent=1, sort_keys=False)

    def write(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    @classmethod
    def read(cls, path: str | Path) -> GroundTruth:
        return cls(json.loads(Path(path).read_text(encoding="utf-8")))

    @property
    def faults(self) -> list[dict[str, Any]]:
        return list(self.data["faults"])

    @property
    def custody(self) -> list[dict[str, Any]]:
        return list(self.data["custody"])

    def series(self, asset_id: str, compartment_id: str) -> dict[str, list[Any]]:
        result: dict[str, list[Any]] = self.data["temperatures"][asset_id][compartment_id]
        return result
