"""Geography and motion: real distances, a plausible drive, GPS noise and fix loss."""

from __future__ import annotations

import itertools
import json
import random
import statistics
from collections.abc import Callable

import pytest

from simulators import GroundTruth, SimMessage
from simulators.routes import (
    CITIES,
    GpsReceiver,
    LatLon,
    Route,
    bearing_deg,
    destination,
    haversine_km,
    road_path,
)

Runner = Callable[[str], tuple[list[SimMessage], GroundTruth]]


def test_city_distances_are_real() -> None:
    # Straight-line distances between the city centres, to within a few km.
    assert haversine_km(CITIES["guangzhou"], CITIES["shenzhen"]) == pytest.approx(104, abs=5)
    assert haversine_km(CITIES["jieyang"], CITIES["shantou"]) == pytest.approx(38, abs=4)
    assert haversine_km(CITIES["nantong"], CITIES["shanghai"]) == pytest.approx(100, abs=5)
    road = Route(road_path("shantou", "guangzhou")).length_km
    # The corridor polyline cuts the road's curves: ~370 km against ~430 km of expressway.
    assert 340 <= road <= 440


def test_destination_inverts_bearing_and_distance() -> None:
    a = CITIES["guangzhou"]
    b = destination(a, 123.0, 50.0)
    assert haversine_km(a, b) == pytest.approx(50.0, rel=1e-6)
    assert bearing_deg(a, b) == pytest.approx(123.0, abs=1e-6)


def test_gps_noise_is_metres_and_fixes_get_lost() -> None:
    gps = GpsReceiver(random.Random(5), loss_probability=0.01)
    here = LatLon(23.0, 113.0)
    readings = [gps.read(here, 60.0) for _ in range(5000)]
    errors_m = [
        haversine_km(here, LatLon(r.lat, r.lon)) * 1000
        for r in readings
        if r.lat is not None and r.lon is not None and r.fix == "3d"
    ]
    assert 2.0 < statistics.median(errors_m) < 10.0
    assert max(errors_m) < 40.0
    lost = sum(r.fix == "none" for r in readings)
    assert 30 < lost < 300
    assert all(r.lat is None for r in readings if r.fix == "none")


def test_track_speed_and_heading_agree_with_positions(library_run: Runner) -> None:
    msgs, _ = library_run("normal_day")
    fixes = [
        json.loads(m.payload)["position"]
        for m in msgs
        if m.device_id == "truck-jy-01-tcu" and m.kind == "telemetry"
    ]
    speed_err, heading_err = [], []
    for prev, cur in itertools.pairwise(fixes):
        if prev["fix"] == "none" or cur["fix"] == "none":
            continue
        a, b = LatLon(prev["lat"], prev["lon"]), LatLon(cur["lat"], cur["lon"])
        mean_speed = (prev["speed_kmh"] + cur["speed_kmh"]) / 2
        if mean_speed > 30:
            speed_err.append(haversine_km(a, b) * 60 - mean_speed)  # 60 s between fixes
            heading_err.append((bearing_deg(a, b) - cur["heading_deg"] + 180) % 360 - 180)
    assert len(speed_err) > 200  # hours of driving
    assert abs(statistics.mean(speed_err)) < 2.0
    assert statistics.median(abs(e) for e in speed_err) < 3.0
    assert statistics.median(abs(e) for e in heading_err) < 3.0
    speeds = [f["speed_kmh"] for f in fixes if f["fix"] != "none"]
    assert max(speeds) <= 100.0  # a loaded reefer at the Chinese expressway truck limit
    assert any(f["fix"] == "none" for f in fixes)
    # Stops: parked at both ends with zero speed.
    assert speeds[0] == 0.0 and speeds[-1] == 0.0
