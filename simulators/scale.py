"""A synthetic fleet of thousands of devices for scale mode: the same physics and message shapes
as the library scenarios, without faults, custody or door events (pure, no I/O).
"""

from __future__ import annotations

import random
from typing import Any

from simulators.scenario import Scenario, parse_scenario

__all__ = ["scale_scenario"]

_ROUTES = (
    ("jieyang", "shantou"),
    ("shantou", "guangzhou"),
    ("guangzhou", "shenzhen"),
    ("shenzhen", "guangzhou"),
    ("nantong", "shanghai"),
    ("shanghai", "nantong"),
)
_STORE_CITIES = ("guangzhou", "shenzhen", "shanghai", "shantou")


def scale_scenario(
    n_devices: int,
    *,
    duration_s: float,
    sample_interval_s: float = 10.0,
    store_every: int = 10,
    seed: int = 1,
) -> Scenario:
    """``n_devices`` devices: every ``store_every``-th a cold store, the rest two-compartment
    trucks spread over the routes with staggered departures."""
    if n_devices < 1:
        raise ValueError(f"n_devices must be >= 1, got {n_devices}")
    rng = random.Random(f"scale/{seed}")
    trucks: list[dict[str, Any]] = []
    stores: list[dict[str, Any]] = []
    for i in range(n_devices):
        if store_every > 0 and i % store_every == store_every - 1:
            stores.append(
                {
                    "id": f"scale-store-{i:05d}",
                    "city": _STORE_CITIES[i % len(_STORE_CITIES)],
                    "zones": [
                        {
                            "id": "frozen",
                            "kind": "frozen",
                            "profile": "frozen",
                            "setpoint_c": -25,
                            "door_traffic_per_h": 0,
                        },
                        {
                            "id": "chilled",
                            "kind": "chilled",
                            "profile": "chilled",
                            "door_traffic_per_h": 0,
                        },
                    ],
                }
            )
            continue
        origin, dest = _ROUTES[i % len(_ROUTES)]
        trucks.append(
            {
                "id": f"scale-truck-{i:05d}",
                "compartments": [
                    {"id": "front", "profile": "frozen"},
                    {"id": "rear", "profile": "chilled"},
                ],
                "route": {
                    "depart": round(rng.uniform(0.0, min(1800.0, duration_s / 2)), 1),
                    "cruise_speed_kmh": round(rng.uniform(70.0, 88.0), 1),
                    "stops": [{"city": origin, "dwell": 600}, {"city": dest, "dwell": 1800}],
                },
            }
        )
    return parse_scenario(
        {
            "name": f"scale-{n_devices}",
            "seed": seed,
            "duration": duration_s,
            "sample_interval": sample_interval_s,
            "trucks": trucks,
            "stores": stores,
            "door_events": False,
            "status_messages": False,
        },
        f"scale_scenario({n_devices})",
    )
