"""Shared builders for the unit tests: a small fleet, a fixed clock and payload helpers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from coldchain.fleet import Asset, Compartment, Fleet, SensorSpec

NOW = datetime(2026, 11, 23, 18, 0, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp()) * 1000
TOPIC = "coldchain/v1/devices/dev-1/telemetry"

TRUCK = Asset(
    id="truck-1",
    kind="vehicle",
    devices=("dev-1",),
    compartments=(
        Compartment(
            id="front",
            profile="chilled",
            sensors=(SensorSpec(id="t-front-air"), SensorSpec(id="t-front-prod", probe="product")),
        ),
        Compartment(id="rear", profile="frozen", sensors=(SensorSpec(id="t-rear-air"),)),
    ),
)
STORE = Asset(
    id="store-1",
    kind="store",
    devices=("gw-1", "gw-2"),
    compartments=(Compartment(id="zone-a", profile="pharma", sensors=(SensorSpec(id="s-a"),)),),
)


def fleet() -> Fleet:
    return Fleet([TRUCK, STORE])


def iso(offset_s: float = 0.0) -> str:
    """Device time ``offset_s`` seconds after NOW, as an RFC 3339 UTC string."""
    return (NOW + timedelta(seconds=offset_s)).isoformat().replace("+00:00", "Z")


def sample(offset_s: float = 0.0, seq: int = 1, **extra: Any) -> dict[str, Any]:
    return {"ts": iso(offset_s), "seq": seq, **extra}


def single(device_id: str = "dev-1", **fields: Any) -> dict[str, Any]:
    return {"v": 1, "device_id": device_id, **sample(**fields)}


def batch(samples: list[dict[str, Any]], device_id: str = "dev-1") -> dict[str, Any]:
    return {"v": 1, "device_id": device_id, "samples": samples}


def dumps(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()
