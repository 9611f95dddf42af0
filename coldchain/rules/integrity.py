"""Conflicting rewrites: the same device, series and device time again with another value or
``seq`` (docs/rules.md section 13, docs/telemetry.md "Conflicting rewrites").

InfluxDB keeps the newest write of a point, which is what makes redelivery safe; it also lets a
device rewrite history without a trace. ``RewriteWatch`` remembers each device's recent samples
(the order in which ingest takes them) and tells an exact redelivery - harmless, dropped before
the engine - from a conflicting rewrite, which it returns as a ``Rewrite`` holding both values.
Pure: no I/O; the caller records the evidence.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from coldchain.contract.checks import ts_ms
from coldchain.contract.telemetry import Sample

__all__ = ["Rewrite", "RewriteWatch", "sample_values"]

Value = float | int | bool | str


_T = TypeVar("_T")
_REEFER_FIELDS = ("setpoint_c", "mode", "supply_air_c", "return_air_c", "alarm_code")
_POSITION_SERIES = tuple(
    (name, sys.intern("position/" + name))
    for name in ("lat", "lon", "speed_kmh", "heading_deg", "fix", "hdop")
)
# Series names by id, built once (ids are the registered ones ingest let through; bounded
# anyway): one lookup per value instead of a concatenation and an intern.
_TEMP_SERIES: dict[str, str] = {}
_DOOR_SERIES: dict[str, str] = {}
_REEFER_SERIES: dict[str, tuple[tuple[str, str], ...]] = {}
_MAX_NAMES = 100_000
# A sample's seq inside RewriteWatch's record of its values: no series name is empty.
_SEQ = ""


def sample_values(sample: Sample) -> dict[str, Value]:
    """Every stored value of a sample by series: ``temp/<sensor>``, ``door/<compartment>``,
    ``reefer/<compartment>/<field>``, ``position/<field>`` (what InfluxDB keys by time)."""
    out: dict[str, Value] = {}
    temp_series = _TEMP_SERIES
    for sensor, temp in sample.temps_c.items():
        name = temp_series.get(sensor)
        if name is None:
            name = _remember(temp_series, sensor, sys.intern("temp/" + sensor))
        out[name] = temp
    for comp, state in sample.compartments.items():
        if state.door_open is not None:
            name = _DOOR_SERIES.get(comp)
            if name is None:
                name = _remember(_DOOR_SERIES, comp, sys.intern("door/" + comp))
            out[name] = state.door_open
        reefer = _REEFER_SERIES.get(comp)
        if reefer is None:
            names = tuple((f, sys.intern(f"reefer/{comp}/{f}")) for f in _REEFER_FIELDS)
            reefer = _remember(_REEFER_SERIES, comp, names)
        for field_name, name in reefer:
            v = getattr(state, field_name)
            if v is not None:
                out[name] = v
    pos = sample.position
    if pos is not None:
        for field_name, name in _POSITION_SERIES:
            v = getattr(pos, field_name)
            if v is not None:
                out[name] = v
    return out


def _remember(names: dict[str, _T], key: str, value: _T) -> _T:
    if len(names) >= _MAX_NAMES:
        names.clear()
    names[key] = value
    return value


@dataclass(frozen=True, slots=True)
class Rewrite:
    """Evidence of one conflicting rewrite of a device's sample at device time ``ts_ms``.

    ``changes``: series -> (old value, new value), for every series present in both samples
    whose value differs (may be empty when only ``seq`` differs). ``kept`` names the value the
    stored record keeps: ``"new"`` (InfluxDB keeps the newest write). ``detected_ms``: ingest
    clock. ``id``: deterministic from the content, so recording it twice is idempotent.
    """

    device_id: str
    asset_id: str
    ts_ms: int
    old_seq: int
    new_seq: int
    changes: dict[str, tuple[Value, Value]]
    detected_ms: int
    kept: str = "new"
    id: str = field(default="")

    def __post_init__(self) -> None:
        if not self.id:
            body = json.dumps(
                [
                    self.device_id,
                    self.ts_ms,
                    self.old_seq,
                    self.new_seq,
                    sorted(self.changes.items()),
                ],
                separators=(",", ":"),
            )
            object.__setattr__(self, "id", hashlib.sha256(body.encode()).hexdigest()[:24])


class RewriteWatch:
    """The last ``max_samples`` samples of each device (device time -> seq and values).

    ``check`` returns the samples still to evaluate (exact redeliveries removed) and the
    conflicting rewrites found. Memory is bounded per device; older samples are not compared.
    """

    def __init__(self, max_samples: int = 128) -> None:
        self.max_samples = max_samples
        # device -> device time -> the sample's values with its seq under _SEQ. One flat dict
        # of atomic values per sample, which CPython's collector does not track: a (seq,
        # values) tuple was tracked (it holds a dict), 64k of them for 500 devices, and every
        # full collection walked them all, stopping ingest's threads (bench/ingest.py).
        self._seen: dict[str, OrderedDict[int, dict[str, Value]]] = {}

    def check(
        self, device_id: str, asset_id: str, samples: Iterable[Sample], now_ms: int
    ) -> tuple[list[Sample], list[Rewrite]]:
        seen = self._seen.get(device_id)
        if seen is None:
            seen = self._seen[device_id] = OrderedDict()
        kept: list[Sample] = []
        found: list[Rewrite] = []
        for s in samples:
            t = ts_ms(s)
            values = sample_values(s)
            old = seen.get(t)
            if old is None:
                values[_SEQ] = s.seq
                seen[t] = values
                if len(seen) > self.max_samples:
                    seen.popitem(last=False)
                kept.append(s)
                continue
            old_seq = int(old[_SEQ])
            changes = {
                k: (old[k], v) for k, v in values.items() if k in old and _differs(old[k], v)
            }
            if not changes and old_seq == s.seq and values.keys() <= old.keys():
                continue  # an exact redelivery: already evaluated
            if changes or old_seq != s.seq:
                found.append(Rewrite(device_id, asset_id, t, old_seq, s.seq, changes, now_ms))
            # The stored record now holds the union, the newer value winning (InfluxDB).
            merged = old | values
            merged[_SEQ] = s.seq
            seen[t] = merged
            kept.append(s)
        return kept, found


def _differs(a: Value, b: Value) -> bool:
    # 25 and 25.0 are the same reading (JSON does not tell them apart); True and 1 are not.
    return isinstance(a, bool) is not isinstance(b, bool) or a != b
