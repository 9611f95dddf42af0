"""Telemetry samples -> InfluxDB points (line protocol), per the schema in docs/architecture.md.

This is the ingest hot path, so field sets are written out by hand in sorted key order instead
of going through ``lineprotocol.format_fields``; the output is the same byte for byte (tests pin
it against influxdb-client's ``Point``). Series keys depend only on registered ids, so they are
escaped once and cached. The contract already guarantees finite numbers and plain-identifier
strings, which is why values need no escaping here.
"""

from __future__ import annotations

from coldchain.contract.checks import ts_ms
from coldchain.contract.telemetry import Sample
from coldchain.fleet import Asset, Fleet
from coldchain.lineprotocol import series_key

__all__ = ["PointEncoder"]


def _f(value: float) -> str:
    text = str(value)
    return text[:-2] if text.endswith(".0") else text


class PointEncoder:
    """Encodes validated samples of registered devices. Not thread-safe (one per stage)."""

    def __init__(self, fleet: Fleet) -> None:
        self._fleet = fleet
        self._series: dict[tuple[str, ...], str] = {}
        self._temp_prefix: dict[tuple[str, str], str] = {}

    def _key(self, measurement: str, **tags: str) -> str:
        cache_key = (measurement, *tags.values())
        key = self._series.get(cache_key)
        if key is None:
            key = self._series[cache_key] = series_key(measurement, tags)
        return key

    def _temperature(self, asset_id: str, sensor_id: str) -> str:
        prefix = self._temp_prefix.get((asset_id, sensor_id))
        if prefix is None:
            comp_id, probe = self._fleet.sensor(asset_id, sensor_id) or ("", "")
            key = self._key(
                "temperature", asset=asset_id, compartment=comp_id, sensor=sensor_id, probe=probe
            )
            prefix = self._temp_prefix[(asset_id, sensor_id)] = key + " temp_c="
        return prefix

    def encode(
        self, device_id: str, asset: Asset, samples: list[Sample], received_ms: int
    ) -> list[str]:
        """Lines for the samples plus one ``device`` line (seq, receive lag) per message."""
        lines: list[str] = []
        append = lines.append
        aid = asset.id
        newest: Sample | None = None
        newest_ms = -1
        for sample in samples:
            t = ts_ms(sample)
            if t > newest_ms:
                newest, newest_ms = sample, t
            for sensor_id, temp_c in sample.temps_c.items():
                append(f"{self._temperature(aid, sensor_id)}{_f(temp_c)} {t}")
            pos = sample.position
            if pos is not None:
                fields = [f'fix="{pos.fix}"']
                if pos.hdop is not None:
                    fields.append(f"hdop={_f(pos.hdop)}")
                if pos.heading_deg is not None:
                    fields.append(f"heading_deg={_f(pos.heading_deg)}")
                if pos.lat is not None:
                    fields.append(f"lat={_f(pos.lat)}")
                if pos.lon is not None:
                    fields.append(f"lon={_f(pos.lon)}")
                if pos.speed_kmh is not None:
                    fields.append(f"speed_kmh={_f(pos.speed_kmh)}")
                append(f"{self._key('position', asset=aid)} {','.join(fields)} {t}")
            for comp_id, state in sample.compartments.items():
                if state.door_open is not None:
                    key = self._key("door", asset=aid, compartment=comp_id)
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
                    key = self._key("reefer", asset=aid, compartment=comp_id)
                    append(f"{key} {','.join(fields)} {t}")
        if newest is not None:
            fields = []
            power = newest.power
            if power is not None and power.battery_pct is not None:
                fields.append(f"battery_pct={_f(power.battery_pct)}")
            if power is not None and power.source is not None:
                fields.append(f'power_source="{power.source}"')
            fields.append(f"receive_lag_s={_f((received_ms - newest_ms) / 1000.0)}")
            fields.append(f"samples={len(samples)}i")
            fields.append(f"seq={newest.seq}i")
            if newest.signal_dbm is not None:
                fields.append(f"signal_dbm={newest.signal_dbm}i")
            key = self._key("device", asset=aid, device=device_id)
            append(f"{key} {','.join(fields)} {newest_ms}")
        return lines
