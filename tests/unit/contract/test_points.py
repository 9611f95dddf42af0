"""``PointEncoder``: samples -> line protocol per the InfluxDB schema."""

# mypy: allow-untyped-calls

from __future__ import annotations

import json
from typing import Any

from influxdb_client.client.write.point import Point
from influxdb_client.domain.write_precision import WritePrecision

from coldchain.contract import PointEncoder, Sample, ts_ms
from coldchain.fleet import Asset, Compartment, Fleet, SensorSpec
from tests.unit.support import NOW_MS, TRUCK, fleet, sample


def samples(*raw: dict[str, Any]) -> list[Sample]:
    return [Sample.model_validate_json(json.dumps(r)) for r in raw]


def test_temperature_lines_carry_asset_compartment_sensor_probe() -> None:
    s = samples(sample(0, 7, temps_c={"t-front-prod": 3.25, "t-rear-air": -18.0}))
    lines = PointEncoder(fleet()).encode("dev-1", TRUCK, s, NOW_MS + 1500)
    assert lines == [
        f"temperature,asset=truck-1,compartment=front,probe=product,sensor=t-front-prod"
        f" temp_c=3.25 {NOW_MS}",
        f"temperature,asset=truck-1,compartment=rear,probe=air,sensor=t-rear-air"
        f" temp_c=-18 {NOW_MS}",
        f"device,asset=truck-1,device=dev-1 receive_lag_s=1.5,samples=1i,seq=7i {NOW_MS}",
    ]


def test_same_as_point_for_every_measurement() -> None:
    raw = sample(
        0,
        3,
        temps_c={"t-front-air": 2.5},
        position={"lat": 52.5, "lon": 13.25, "speed_kmh": 0.0, "fix": "2d"},
        compartments={
            "front": {"door_open": True, "setpoint_c": 2.0, "mode": "defrost", "alarm_code": 17},
            "rear": {"return_air_c": -19.5},
        },
        power={"source": "battery", "battery_pct": 55.5},
        signal_dbm=-80,
    )
    lines = PointEncoder(fleet()).encode("dev-1", TRUCK, samples(raw), NOW_MS + 250)

    def p(m: str, tags: dict[str, str], fields: dict[str, Any]) -> str:
        point = Point(m).time(NOW_MS, WritePrecision.MS)
        for k, v in tags.items():
            point.tag(k, v)
        for k, v in fields.items():
            point.field(k, v)
        return str(point.to_line_protocol())

    a = {"asset": "truck-1"}
    assert lines == [
        p(
            "temperature",
            a | {"compartment": "front", "sensor": "t-front-air", "probe": "air"},
            {"temp_c": 2.5},
        ),
        p("position", a, {"lat": 52.5, "lon": 13.25, "speed_kmh": 0.0, "fix": "2d"}),
        p("door", a | {"compartment": "front"}, {"open": True}),
        p(
            "reefer",
            a | {"compartment": "front"},
            {"setpoint_c": 2.0, "mode": "defrost", "alarm_code": 17},
        ),
        p("reefer", a | {"compartment": "rear"}, {"return_air_c": -19.5}),
        p(
            "device",
            a | {"device": "dev-1"},
            {
                "seq": 3,
                "receive_lag_s": 0.25,
                "samples": 1,
                "battery_pct": 55.5,
                "power_source": "battery",
                "signal_dbm": -80,
            },
        ),
    ]


def test_device_line_uses_the_newest_sample_whatever_the_order() -> None:
    """Backlogs arrive out of order: seq, lag and time come from the newest sample."""
    s = samples(sample(-10, 5), sample(-60, 4), sample(-30, 6))
    lines = PointEncoder(fleet()).encode("dev-1", TRUCK, s, NOW_MS)
    assert lines == [
        f"device,asset=truck-1,device=dev-1 receive_lag_s=10,samples=3i,seq=5i {NOW_MS - 10_000}"
    ]
    assert ts_ms(s[0]) == NOW_MS - 10_000


def test_door_closed_and_empty_compartment_state() -> None:
    s = samples(sample(0, 1, compartments={"rear": {"door_open": False}, "front": {}}))
    lines = PointEncoder(fleet()).encode("dev-1", TRUCK, s, NOW_MS)
    assert lines[0] == f"door,asset=truck-1,compartment=rear open=false {NOW_MS}"
    assert len(lines) == 2  # no reefer line for a compartment without reefer values


def test_series_keys_are_escaped() -> None:
    """Ids cannot hold separators, but the profile-free tag path still escapes what it gets."""
    asset = Asset(
        id="a.b_c-d",
        kind="store",
        devices=("d.1",),
        compartments=(Compartment(id="z", profile="p", sensors=(SensorSpec(id="s"),)),),
    )
    lines = PointEncoder(Fleet([asset])).encode("d.1", asset, samples(sample(temps_c={"s": 1})), 0)
    assert lines[0].startswith("temperature,asset=a.b_c-d,compartment=z,probe=air,sensor=s ")


def test_unregistered_sensor_drops_empty_tags() -> None:
    lines = PointEncoder(fleet()).encode("dev-1", TRUCK, samples(sample(temps_c={"x": 1.5})), 0)
    assert lines[0] == f"temperature,asset=truck-1,sensor=x temp_c=1.5 {NOW_MS}"


def test_no_samples_no_lines() -> None:
    assert PointEncoder(fleet()).encode("dev-1", TRUCK, [], NOW_MS) == []
