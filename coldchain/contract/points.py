"""Telemetry samples -> InfluxDB points (line protocol), per the schema in docs/architecture.md.

This is the ingest hot path, so field sets are written out by hand in sorted key order instead
of going through ``lineprotocol.format_fields``; the output is the same byte for byte (tests pin
it against influxdb-client's ``Point``). Series keys depend only on registered ids, so they are
escaped once and cached. The contract already guarantees finite numbers and plain-identifier
strings, which is why values need no escaping here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from coldchain.contract.telemetry import Position, Sample
from coldchain.fleet import Asset, Fleet
from coldchain.lineprotocol import series_key

__all__ = ["PointEncoder"]


# A position's optional float fields in line protocol order (sorted keys), with their labels.
_POSITION_FIELDS = tuple(
    (name, f",{name}=") for name in ("hdop", "heading_deg", "lat", "lon", "speed_kmh")
)


def _f(value: float) -> str:
    text = str(value)
    return text[:-2] if text.endswith(".0") else text


class PointEncoder:
    """Encodes validated samples of registered devices. Not thread-safe (one per stage)."""

    def __init__(self, fleet: Fleet) -> None:
        self._fleet = fleet
        # Series key prefixes by their registered ids, escaped once: the hot loop only looks
        # them up (one dict lookup each, no keyword arguments, no tuple built per point).
        self._temps: dict[str, dict[str, str]] = {}  # asset -> sensor -> "<key> temp_c="
        self._position: dict[str, str] = {}  # asset -> "<key> fix="
        self._door: dict[tuple[str, str], str] = {}  # (asset, compartment) -> key
        self._reefer: dict[tuple[str, str], str] = {}
        self._device: dict[tuple[str, str], str] = {}  # (asset, device) -> "<key> "

    def _temperature(self, asset_id: str, sensor_id: str) -> str:
        comp_id, probe = self._fleet.sensor(asset_id, sensor_id) or ("", "")
        key = series_key(
            "temperature",
            {"asset": asset_id, "compartment": comp_id, "sensor": sensor_id, "probe": probe},
        )
        prefix = self._temps.setdefault(asset_id, {})[sensor_id] = key + " temp_c="
        return prefix

    def encode(
        self, device_id: str, asset: Asset, samples: Sequence[Sample], received_ms: int
    ) -> list[str]:
        """Lines for the samples plus one ``device`` line (seq, receive lag) per message."""
        lines: list[str] = []
        append = lines.append
        aid = asset.id
        temps = self._temps.get(aid) or {}
        newest: Sample | None = None
        newest_ms = -1
        for sample in samples:
            t = sample.ts_ms
            if t > newest_ms:
                newest, newest_ms = sample, t
            stamp = f" {t}"  # the timestamp as text once per sample, not once per line
            for sensor_id, temp_c in sample.temps_c.items():
                prefix = temps.get(sensor_id) or self._temperature(aid, sensor_id)
                text = str(temp_c)
                if text[-2:] == ".0":
                    text = text[:-2]
                append(prefix + text + stamp)
            pos = sample.position
            if pos is not None:
                append(self._position_line(aid, pos) + stamp)
            if sample.compartments:
                self._compartments(aid, sample, t, append)
        if newest is not None:
            key = self._device.get((aid, device_id))
            if key is None:
                tags = {"asset": aid, "device": device_id}
                key = self._device[(aid, device_id)] = series_key("device", tags) + " "
            text = key
            power = newest.power
            if power is not None:
                if power.battery_pct is not None:
                    text += f"battery_pct={_f(power.battery_pct)},"
                if power.source is not None:
                    text += f'power_source="{power.source}",'
            lag_s = _f((received_ms - newest_ms) / 1000.0)
            text += f"receive_lag_s={lag_s},samples={len(samples)}i,seq={newest.seq}i"
            if newest.signal_dbm is not None:
                text += f",signal_dbm={newest.signal_dbm}i"
            append(f"{text} {newest_ms}")
        return lines

    def _position_line(self, aid: str, pos: Position) -> str:
        key = self._position.get(aid)
        if key is None:
            key = self._position[aid] = series_key("position", {"asset": aid}) + " fix="
        # Concatenation: cheaper than a list and a join for a handful of fields; the float
        # formatting inline (what _f does) saves a call per field.
        text = f'{key}"{pos.fix}"'
        for name, label in _POSITION_FIELDS:
            v = getattr(pos, name)
            if v is not None:
                f = str(v)
                text += label + (f[:-2] if f[-2:] == ".0" else f)
        return text

    def _compartments(
        self, aid: str, sample: Sample, t: int, append: Callable[[str], None]
    ) -> None:
        for comp_id, state in sample.compartments.items():
            if state.door_open is not None:
                key = self._door.get((aid, comp_id))
                if key is None:
                    tags = {"asset": aid, "compartment": comp_id}
                    key = self._door[(aid, comp_id)] = series_key("door", tags)
                append(f"{key} open={'true' if state.door_open else 'false'} {t}")
            fields = []
            if state.alarm_code is not None:
                fields.append(f"alarm_code={state.alarm_code}i")
            if state.mode is not None:
                fields.append(f'mode="{state.mode}"')
            if state.return_air_c is not None:
                fields.append(f"return_air_c={_f(state.return_air_c)}")
            if state.setpoint_c is not None:
                fields.append(f"setpoint_c={_f(state.setpoint_c)}")
            if state.supply_air_c is not None:
                fields.append(f"supply_air_c={_f(state.supply_air_c)}")
            if fields:
                key = self._reefer.get((aid, comp_id))
                if key is None:
                    tags = {"asset": aid, "compartment": comp_id}
                    key = self._reefer[(aid, comp_id)] = series_key("reefer", tags)
                append(f"{key} {','.join(fields)} {t}")
