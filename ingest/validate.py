"""Stage 2, validate: decoded samples against the registry and the clock.

Guarantee: returns what may be stored and one rejection per unit that may not (decode's and its
own): a device time outside the window rejects its sample, an unregistered probe its value, an
unregistered compartment its state; one bad unit never rejects its neighbours. An unregistered
device rejects the message (raises ``TelemetryRejected``).
"""

from __future__ import annotations

from typing import NamedTuple

from coldchain.contract import Limits, Sample, screen_sample
from coldchain.exceptions import TelemetryRejected
from coldchain.fleet import Asset, Fleet
from ingest.decode import Decoded

__all__ = ["Validated", "validate"]


class Validated(NamedTuple):
    """What of one message may be stored (``samples``) and one rejection per unit that may not.
    (A NamedTuple: one is made per message on the hot path; a frozen dataclass costs ~0.5 us
    more.)"""

    device_id: str
    asset: Asset
    samples: list[Sample]
    rejected: list[TelemetryRejected]


def validate(decoded: Decoded, fleet: Fleet, now_ms: int, limits: Limits) -> Validated:
    device_id = decoded.device_id
    asset = fleet.asset_of(device_id)
    if asset is None:
        raise TelemetryRejected(
            "unknown_device",
            "device is not registered",
            device_id=device_id,
            field="device_id",
            value=device_id,
        )
    accepted: list[Sample] = []
    rejected = list(decoded.rejected)
    positions = decoded.positions
    for k, sample in enumerate(decoded.samples):
        index = -1 if positions is None else positions[k]
        kept, problems = screen_sample(sample, index, device_id, asset, fleet, now_ms, limits)
        if kept is not None:
            accepted.append(kept)
        if problems:
            rejected.extend(problems)
    return Validated(device_id, asset, accepted, rejected)
