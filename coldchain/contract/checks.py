"""Checks that need more than the payload: the registry and the clock.

Schema checks live in the models (and ``salvage``); these run per sample and cost only their
unit: a device time outside the window rejects its sample, an unregistered probe its value, an
unregistered compartment its state. One bad sample of a 5,000-sample backlog is dead-lettered
alone while the other 4,999 land.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from coldchain.contract.telemetry import Sample
from coldchain.exceptions import TelemetryRejected
from coldchain.fleet import Asset, Fleet

__all__ = ["Limits", "check_sample", "screen_sample", "ts_ms"]


@dataclass(frozen=True, slots=True)
class Limits:
    max_future_skew_s: float = 300.0
    max_sample_age_s: float = 30 * 86400.0


def ts_ms(sample: Sample) -> int:
    """Device time in integer epoch milliseconds (the InfluxDB write precision), floored;
    computed once per sample (``Sample.ts_ms``)."""
    return sample.ts_ms


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
    t = sample.ts_ms
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
    sensors, compartments = _registered(fleet, asset.id)
    # Set comparisons in C: the common sample names only registered ids.
    if sample.temps_c.keys() <= sensors and sample.compartments.keys() <= compartments:
        return sample, ()
    return _without_unregistered(sample, _prefix(index), device_id, asset, fleet)


# The ids registered on each asset of the last fleet seen (a fleet is immutable; a reload
# brings a new one): one set comparison per sample instead of one lookup per value.
_ids_of: tuple[Fleet | None, dict[str, tuple[frozenset[str], frozenset[str]]]] = (None, {})


def _registered(fleet: Fleet, asset_id: str) -> tuple[frozenset[str], frozenset[str]]:
    """(sensor ids, compartment ids) registered on ``asset_id`` in ``fleet``."""
    global _ids_of
    cached_fleet, by_asset = _ids_of
    if cached_fleet is not fleet:
        by_asset = {}
        _ids_of = (fleet, by_asset)
    ids = by_asset.get(asset_id)
    if ids is None:
        asset = fleet.assets.get(asset_id)
        comps = asset.compartments if asset is not None else ()
        sensors = frozenset(s.id for c in comps for s in c.sensors)
        ids = by_asset[asset_id] = (sensors, frozenset(c.id for c in comps))
    return ids


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
