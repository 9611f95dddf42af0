"""Checks that need more than the payload: the registry and the clock.

Schema checks live in the models; these are per sample, so one bad sample of a 500-sample
backlog is dead-lettered alone while the other 499 land.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from coldchain.contract.telemetry import Sample
from coldchain.exceptions import TelemetryRejected
from coldchain.fleet import Asset, Fleet

__all__ = ["Limits", "check_sample", "ts_ms"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class Limits:
    max_future_skew_s: float = 300.0
    max_sample_age_s: float = 30 * 86400.0


def ts_ms(sample: Sample) -> int:
    """Device time in integer epoch milliseconds (the InfluxDB write precision)."""
    # Integer arithmetic: float timestamps lose the millisecond for dates far from 1970.
    return (sample.ts - _EPOCH) // _MS


def check_sample(
    sample: Sample,
    index: int,
    device_id: str,
    asset: Asset,
    fleet: Fleet,
    now_ms: int,
    limits: Limits,
) -> TelemetryRejected | None:
    """None if the sample may be stored, else why not (field path relative to the message)."""
    prefix = f"samples.{index}." if index >= 0 else ""
    t = ts_ms(sample)
    if t > now_ms + limits.max_future_skew_s * 1000.0:
        return TelemetryRejected(
            "future_timestamp",
            f"device time is {(t - now_ms) / 1000.0:.0f} s ahead of the ingest clock",
            device_id=device_id,
            field=prefix + "ts",
            value=sample.ts.isoformat(),
        )
    if t < now_ms - limits.max_sample_age_s * 1000.0:
        return TelemetryRejected(
            "stale_timestamp",
            f"device time is older than {limits.max_sample_age_s:.0f} s",
            device_id=device_id,
            field=prefix + "ts",
            value=sample.ts.isoformat(),
        )
    for sensor_id in sample.temps_c:
        if fleet.sensor(asset.id, sensor_id) is None:
            return TelemetryRejected(
                "unknown_sensor",
                f"sensor is not registered on asset {asset.id}",
                device_id=device_id,
                field=f"{prefix}temps_c.{sensor_id}",
                value=sensor_id,
            )
    for comp_id in sample.compartments:
        if not fleet.has_compartment(asset.id, comp_id):
            return TelemetryRejected(
                "unknown_compartment",
                f"compartment is not registered on asset {asset.id}",
                device_id=device_id,
                field=f"{prefix}compartments.{comp_id}",
                value=comp_id,
            )
    return None
