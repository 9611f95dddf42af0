"""Checks that need more than the payload: the registry and the clock.

Schema checks live in the models (and ``salvage``); these run per sample and cost only their
unit: a device time outside the window rejects its sample, an unregistered probe its value, an
unregistered compartment its state. One bad sample of a 5,000-sample backlog is dead-lettered
alone while the other 4,999 land.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from coldchain.contract.telemetry import Sample
from coldchain.exceptions import TelemetryRejected
from coldchain.fleet import Asset, Fleet

__all__ = ["Limits", "check_sample", "screen_sample", "ts_ms"]

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


def screen_sample(
    sample: Sample,
    index: int,
    device_id: str,
    asset: Asset,
    fleet: Fleet,
    now_ms: int,
    limits: Limits,
) -> tuple[Sample | None, Sequence[TelemetryRejected]]:
    """(what of the sample may be stored, one rejection per unit that may not).

    ``index`` is the sample's position in its batch's ``samples`` (-1 for a single sample), for
    field paths such as ``samples[17].ts``. A device time outside the accepted window rejects
    the sample (None); a probe not registered on ``asset`` drops that value, a compartment not
    registered drops that compartment's state; the rest of the sample is kept (unchanged, the
    same object, when nothing is wrong).
    """
    t = ts_ms(sample)
    if t > now_ms + limits.max_future_skew_s * 1000.0:
        problem = TelemetryRejected(
            "future_timestamp",
            f"device time is {(t - now_ms) / 1000.0:.0f} s ahead of the ingest clock",
            device_id=device_id,
            field=_prefix(index) + "ts",
            value=sample.ts.isoformat(),
        )
        return None, [problem]
    if t < now_ms - limits.max_sample_age_s * 1000.0:
        problem = TelemetryRejected(
            "stale_timestamp",
            f"device time is older than {limits.max_sample_age_s:.0f} s",
            device_id=device_id,
            field=_prefix(index) + "ts",
            value=sample.ts.isoformat(),
        )
        return None, [problem]
    aid = asset.id
    registered = fleet.sensor
    for sensor_id in sample.temps_c:
        if registered(aid, sensor_id) is None:
            return _without_unregistered(sample, _prefix(index), device_id, asset, fleet)
    for comp_id in sample.compartments:
        if not fleet.has_compartment(aid, comp_id):
            return _without_unregistered(sample, _prefix(index), device_id, asset, fleet)
    return sample, ()


def _prefix(index: int) -> str:
    return f"samples[{index}]." if index >= 0 else ""


def _without_unregistered(
    sample: Sample, prefix: str, device_id: str, asset: Asset, fleet: Fleet
) -> tuple[Sample, list[TelemetryRejected]]:
    problems: list[TelemetryRejected] = []
    temps: dict[str, float] = {}
    for sensor_id, temp_c in sample.temps_c.items():
        if fleet.sensor(asset.id, sensor_id) is None:
            problems.append(
                TelemetryRejected(
                    "unknown_sensor",
                    f"sensor is not registered on asset {asset.id}",
                    device_id=device_id,
                    field=f"{prefix}temps_c.{sensor_id}",
                    value=temp_c,
                )
            )
        else:
            temps[sensor_id] = temp_c
    states = {}
    for comp_id, state in sample.compartments.items():
        if fleet.has_compartment(asset.id, comp_id):
            states[comp_id] = state
        else:
            problems.append(
                TelemetryRejected(
                    "unknown_compartment",
                    f"compartment is not registered on asset {asset.id}",
                    device_id=device_id,
                    field=f"{prefix}compartments.{comp_id}",
                    value=comp_id,
                )
            )
    return sample.model_copy(update={"temps_c": temps, "compartments": states}), problems


def check_sample(
    sample: Sample,
    index: int,
    device_id: str,
    asset: Asset,
    fleet: Fleet,
    now_ms: int,
    limits: Limits,
) -> TelemetryRejected | None:
    """None if all of the sample may be stored, else its first problem (``index``: position in
    a batch, -1 for a single sample). Ingest uses ``screen_sample``, which keeps the rest."""
    _, problems = screen_sample(sample, index, device_id, asset, fleet, now_ms, limits)
    return problems[0] if problems else None
