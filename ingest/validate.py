"""Stage 2, validate: a decoded message against the registry and the clock.

Guarantee: returns the samples that may be stored and one rejection per sample that may not;
one bad sample never rejects its neighbours. An unregistered device rejects the message.
"""

from __future__ import annotations

from dataclasses import dataclass

from coldchain.contract import BatchMessage, Limits, Sample, check_sample
from coldchain.exceptions import TelemetryRejected
from coldchain.fleet import Asset, Fleet
from ingest.decode import Decoded

__all__ = ["Validated", "validate"]


@dataclass(frozen=True, slots=True)
class Validated:
    device_id: str
    asset: Asset
    samples: list[Sample]
    rejected: list[tuple[TelemetryRejected, Sample]]


def validate(decoded: Decoded, fleet: Fleet, now_ms: int, limits: Limits) -> Validated:
    asset = fleet.asset_of(decoded.device_id)
    if asset is None:
        raise TelemetryRejected(
            "unknown_device",
            "device is not registered",
            device_id=decoded.device_id,
            field="device_id",
            value=decoded.device_id,
        )
    batch = isinstance(decoded.message, BatchMessage)
    accepted: list[Sample] = []
    rejected: list[tuple[TelemetryRejected, Sample]] = []
    for i, sample in enumerate(decoded.message.samples_list()):
        problem = check_sample(
            sample, i if batch else -1, decoded.device_id, asset, fleet, now_ms, limits
        )
        if problem is None:
            accepted.append(sample)
        else:
            rejected.append((problem, sample))
    if not batch and rejected:
        # A single-sample message is rejected whole: report it as such.
        return Validated(decoded.device_id, asset, [], rejected)
    return Validated(decoded.device_id, asset, accepted, rejected)
