"""Reading telemetry back from InfluxDB: the rules engine's batch mode and reports.

``read_samples`` rebuilds the contract's ``Sample`` objects of one asset over a window from the
stored points, so the batch evaluator gets exactly the input the streaming one got: one code
path (samples -> observations) for both.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from coldchain.contract import CompartmentState, Position, Sample
from coldchain.trace import control_series
from timeseries.client import InfluxClient

__all__ = ["quote_ident", "quote_str", "read_clock_jumps", "read_control_series", "read_samples"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Fix = Literal["none", "2d", "3d"]
_FIXES: dict[Any, Fix] = {"none": "none", "2d": "2d", "3d": "3d"}


def quote_str(value: str) -> str:
    """An InfluxQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_ident(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _window(asset_id: str, from_ms: int, to_ms: int) -> str:
    return (
        f"WHERE {quote_ident('asset')} = {quote_str(asset_id)}"
        f" AND time >= {from_ms}ms AND time <= {to_ms}ms"
    )


def read_samples(client: InfluxClient, asset_id: str, from_ms: int, to_ms: int) -> list[Sample]:
    """The asset's samples in [from_ms, to_ms], in device-time order (temperatures, doors,
    reefer mode and setpoint, speed and GNSS fix: what the rules read)."""
    where = _window(asset_id, from_ms, to_ms)
    temps: dict[int, dict[str, float]] = defaultdict(dict)
    comps: dict[int, dict[str, dict[str, Any]]] = defaultdict(lambda: defaultdict(dict))
    speeds: dict[int, tuple[float | None, Fix]] = {}
    q = (
        f'SELECT "temp_c" FROM "temperature" {where} GROUP BY "sensor";'
        f'SELECT "open" FROM "door" {where} GROUP BY "compartment";'
        f'SELECT "mode", "setpoint_c" FROM "reefer" {where} GROUP BY "compartment";'
        f'SELECT "speed_kmh", "fix" FROM "position" {where}'
    )
    for series in client.query(q):
        for rec in series.records():
            t = int(rec["time"])
            if series.name == "temperature":
                temps[t][series.tags["sensor"]] = float(rec["temp_c"])
            elif series.name == "door":
                comps[t][series.tags["compartment"]]["door_open"] = bool(rec["open"])
            elif series.name == "reefer":
                state = comps[t][series.tags["compartment"]]
                if rec.get("mode") is not None:
                    state["mode"] = rec["mode"]
                if rec.get("setpoint_c") is not None:
                    state["setpoint_c"] = float(rec["setpoint_c"])
            elif series.name == "position":
                v = rec.get("speed_kmh")
                fix = rec.get("fix")
                speeds[t] = (None if v is None else float(v), _FIXES.get(fix, "3d"))
    out = []
    for t in sorted(temps.keys() | comps.keys() | speeds.keys()):
        # model_construct: these values passed validation on the way in.
        out.append(
            Sample.model_construct(
                ts=_EPOCH + timedelta(milliseconds=t),
                seq=0,
                temps_c=temps.get(t, {}),
                position=Position.model_construct(speed_kmh=speeds[t][0], fix=speeds[t][1])
                if t in speeds
                else None,
                compartments={
                    c: CompartmentState.model_construct(**kw) for c, kw in comps.get(t, {}).items()
                },
                power=None,
                signal_dbm=None,
            )
        )
    return out


def read_clock_jumps(
    client: InfluxClient, asset_id: str, from_ms: int, to_ms: int
) -> list[tuple[int, int]]:
    """Forward jumps of the asset's device clocks in [from_ms, to_ms], as the rules engine
    wrote them live (``clock`` points): ``(device time after the jump, jump ms)`` in order."""
    q = f'SELECT "jump_ms" FROM "clock" {_window(asset_id, from_ms, to_ms)}'
    out = []
    for series in client.query(q):
        for rec in series.records():
            if rec.get("jump_ms") is not None:
                out.append((int(rec["time"]), int(rec["jump_ms"])))
    return sorted(out)


def read_control_series(
    client: InfluxClient,
    asset_id: str,
    compartment_id: str,
    from_ms: int,
    to_ms: int,
    plausible_c: tuple[float, float] | None = None,
) -> list[tuple[int, float]]:
    """The compartment's product temperature over time, ``(ts_ms, temp_c)`` in order: the mean
    of its product probes at each instant, or of its air probes where it has no product probe
    (the same "control probe" choice the rules make), without values outside ``plausible_c``
    (``coldchain.trace.control_series``)."""
    q = (
        f'SELECT "temp_c" FROM "temperature" {_window(asset_id, from_ms, to_ms)}'
        f" AND {quote_ident('compartment')} = {quote_str(compartment_id)}"
        ' GROUP BY "probe"'
    )
    by_probe: dict[str, dict[int, list[float]]] = {}
    for series in client.query(q):
        per_ts = by_probe.setdefault(series.tags.get("probe", ""), defaultdict(list))
        for t, temp in series.values:
            per_ts[int(t)].append(float(temp))
    return control_series(by_probe, plausible_c)
