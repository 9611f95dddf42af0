"""Telemetry samples -> InfluxDB points (line protocol), per the schema in docs/architecture.md.

Series keys depend only on registered ids, so they are escaped once and cached.
"""

from __future__ import annotations

from coldchain.contract.checks import ts_ms
from coldchain.contract.telemetry import Sample
from coldchain.fleet import Asset, Fleet
from coldchain.lineprotocol import format_fields, series_key

__all__ = ["PointEncoder"]


class PointEncoder:
    """Encodes validated samples of registered devices. Not thread-safe (one per stage)."""

    def __init__(self, fleet: Fleet) -> None:
        self._fleet = fleet
        self._series: dict[tuple[str, ...], str] = {}

    def _key(self, measurement: str, **tags: str) -> str:
        cache_key = (measurement, *tags.values())
        key = self._series.get(cache_key)
        if key is None:
            key = self._series[cache_key] = series_key(measurement, tags)
        return key

    def encode(
        self, device_id: str, asset: Asset, samples: list[Sample], received_ms: int
    ) -> list[str]:
        """Lines for the samples plus one ``device`` line (seq, receive lag) per message."""
        lines: list[str] = []
        aid = asset.id
        newest: Sample | None = None
        newest_ms = -1
        for sample in samples:
            t = ts_ms(sample)
            if t > newest_ms:
                newest, newest_ms = sample, t
            for sensor_id, temp_c in sample.temps_c.items():
                comp_id, probe = self._fleet.sensor(aid, sensor_id) or ("", "")
                key = self._key(
                    "temperature", asset=aid, compartment=comp_id, sensor=sensor_id, probe=probe
                )
                lines.append(f"{key} {format_fields({'temp_c': temp_c})} {t}")
            pos = sample.position
            if pos is not None:
                body = format_fields(
                    {
                        "lat": pos.lat,
                        "lon": pos.lon,
                        "speed_kmh": pos.speed_kmh,
                        "heading_deg": pos.heading_deg,
                        "fix": pos.fix,
                        "hdop": pos.hdop,
                    }
                )
                lines.append(f"{self._key('position', asset=aid)} {body} {t}")
            for comp_id, state in sample.compartments.items():
                if state.door_open is not None:
                    key = self._key("door", asset=aid, compartment=comp_id)
                    lines.append(f"{key} open={'true' if state.door_open else 'false'} {t}")
                body = format_fields(
                    {
                        "setpoint_c": state.setpoint_c,
                        "mode": state.mode,
                        "supply_air_c": state.supply_air_c,
                        "return_air_c": state.return_air_c,
                        "alarm_code": state.alarm_code,
                    }
                )
                if body:
                    lines.append(
                        f"{self._key('reefer', asset=aid, compartment=comp_id)} {body} {t}"
                    )
        if newest is not None:
            power = newest.power
            body = format_fields(
                {
                    "seq": newest.seq,
                    "receive_lag_s": (received_ms - newest_ms) / 1000.0,
                    "samples": len(samples),
                    "battery_pct": power.battery_pct if power else None,
                    "power_source": power.source if power else None,
                    "signal_dbm": newest.signal_dbm,
                }
            )
            lines.append(f"{self._key('device', asset=aid, device=device_id)} {body} {newest_ms}")
        return lines
